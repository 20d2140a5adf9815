"""Rollout engines behind one interface: HF ``generate`` everywhere, vLLM where installed.

``make_engine("hf" | "vllm", model, processor, **kwargs)`` builds either; the trainer only sees
:class:`RolloutEngine`. The engine modules are imported on first use, so importing this package
never pulls in vLLM.
"""

from __future__ import annotations

from typing import Any

from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams

__all__ = ["Completion", "RolloutEngine", "SamplingParams", "make_engine", "ENGINES"]

ENGINES = ("hf", "vllm")


def make_engine(name: str, model: Any, processor: Any, **kwargs: Any) -> RolloutEngine:
    """Build a rollout engine for ``model``.

    Args:
        name: "hf" (:class:`mmdps.rollout.hf.HFEngine`, shares ``model``) or "vllm"
            (:class:`mmdps.rollout.vllm.VLLMEngine`, a colocated vLLM engine loaded from
            ``kwargs["model_path"]`` or ``model.name_or_path``, synced from ``model`` at once).
        kwargs: the engine's keyword arguments.
    """
    if name == "hf":
        from mmdps.rollout.hf import HFEngine

        return HFEngine(model, processor, **kwargs)
    if name == "vllm":
        from mmdps.rollout.vllm import VLLMEngine

        model_path = kwargs.pop("model_path", None) or getattr(model, "name_or_path", None)
        if not model_path:
            raise ValueError("engine 'vllm' needs model_path= (the checkpoint folder the policy was loaded from)")
        engine = VLLMEngine(model_path, processor, **kwargs)
        engine.sync_weights(model)  # the checkpoint on disk may be stale (resume, PEFT, resized embeddings)
        return engine
    raise ValueError(f"unknown rollout engine {name!r}; choose one of {', '.join(ENGINES)}")
