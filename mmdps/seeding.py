"""Seeding: :func:`seed_everything`, the one place the library seeds Python's, numpy's and torch's global
generators (the trainer and ``mmdps eval`` call it; everything else draws from its own seeded generator)."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy's global generator and torch (every CUDA device too, when torch is there)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # the numpy-only installs (a selector inside verl) have no torch
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
