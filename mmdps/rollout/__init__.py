"""Rollout engines behind one interface: HF ``generate`` everywhere, vLLM where installed.

:func:`make_engine` is the one way to build an engine (the trainer, ``mmdps eval`` and the demo all call
it); the trainer only sees :class:`RolloutEngine`. The engine modules are imported on first use, so
importing this package never pulls in vLLM.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Mapping
from typing import Any

from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams

__all__ = ["Completion", "RolloutEngine", "SamplingParams", "make_engine", "engine_options", "check_engine_options",
           "ENGINES"]

ENGINES = ("hf", "vllm")


def _engine_class(name: str) -> type[RolloutEngine]:
    if name == "hf":
        from mmdps.rollout.hf import HFEngine

        return HFEngine
    if name == "vllm":
        from mmdps.rollout.vllm import VLLMEngine

        return VLLMEngine
    raise ValueError(f"unknown rollout engine {name!r}; choose one of {', '.join(ENGINES)}")


def engine_options(name: str) -> list[str]:
    """The keyword options engine ``name`` takes (for vLLM: ``vllm.LLM``'s own names where they exist,
    such as ``tensor_parallel_size`` and ``gpu_memory_utilization``)."""
    params = inspect.signature(_engine_class(name).__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def check_engine_options(name: str, options: Mapping[str, Any]) -> None:
    """A ``ValueError`` naming the options engine ``name`` does not take (with close matches) and the valid
    ones; ``model_path`` is the factory's own."""
    valid = engine_options(name)
    unknown = sorted(set(options) - set(valid) - {"model_path"})
    if unknown:
        hints = [f"{key!r}: did you mean {close[0]!r}?" for key in unknown
                 if (close := difflib.get_close_matches(key, valid, n=1, cutoff=0.6))]
        raise ValueError(f"engine {name!r}: unknown option(s) {', '.join(map(repr, unknown))}"
                         f"{' (' + ' '.join(hints) + ')' if hints else ''}; valid options: {', '.join(valid)}")


def make_engine(name: str, model: Any = None, processor: Any = None, *, model_path: str | os.PathLike | None = None,
                **options: Any) -> RolloutEngine:
    """Build a rollout engine.

    Args:
        name: ``"hf"`` (:class:`mmdps.rollout.hf.HFEngine`: generates with ``model`` itself) or ``"vllm"``
            (:class:`mmdps.rollout.vllm.VLLMEngine`: a colocated vLLM engine that loads ``model_path``).
        model: the policy. Required for ``hf``. For ``vllm``, the engine syncs its weights from it at once
            (the checkpoint on disk may be stale: resume, PEFT, resized embeddings); without it (evaluating
            a saved checkpoint) vLLM's own copy is used as it is.
        processor: the processor (VL) or tokenizer (text) prompts are encoded with. For ``vllm`` it
            defaults to the one saved in ``model_path``.
        model_path: ``vllm`` only: the checkpoint folder (default ``model.name_or_path``).
        options: the engine's keyword options (:func:`engine_options`); an unknown one is a
            ``ValueError`` naming it and the valid ones (:func:`check_engine_options`).
    """
    check_engine_options(name, options)
    if name == "hf":
        from mmdps.rollout.hf import HFEngine

        if model is None or processor is None:
            raise ValueError("engine 'hf' generates with the policy itself: pass model and processor")
        return HFEngine(model, processor, **options)
    from mmdps.rollout.vllm import VLLMEngine

    model_path = model_path or getattr(model, "name_or_path", None)
    if not model_path:
        raise ValueError("engine 'vllm' needs model_path= (the checkpoint folder the policy was loaded from)")
    if processor is None:
        from mmdps.models.loading import load_processor

        processor = load_processor(model_path)
    engine = VLLMEngine(model_path, processor, **options)
    if model is not None:
        engine.sync_weights(model)
    return engine
