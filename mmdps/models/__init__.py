"""Policy models: loading (text and vision-language, LoRA), tiny offline models, completion log-probs.

Names are imported lazily so that ``import mmdps.models`` stays cheap until a model is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_tiny_model": "mmdps.models.tiny",
    "load_policy": "mmdps.models.loading",
    "load_processor": "mmdps.models.loading",
    "is_vision_language": "mmdps.models.loading",
    "get_tokenizer": "mmdps.models.loading",
    "apply_lora": "mmdps.models.loading",
    "enable_gradient_checkpointing": "mmdps.models.loading",
    "vision_token_ids": "mmdps.models.loading",
    "completion_logprobs": "mmdps.models.forward",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mmdps.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
