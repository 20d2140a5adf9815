"""A pure-Python stand-in for the slice of vLLM that :class:`~mmdps.rollout.vllm.VLLMEngine` uses.

vLLM only runs on GPUs, so the engine is unit-tested against this module:
``VLLMEngine(path, processor, llm_factory=FakeLLM, sampling_cls=FakeSamplingParams)``. Each rule
the stand-in enforces mirrors real vLLM 0.32/0.33 behaviour (docs/models_and_rollout.md, "Why the vLLM
engine works this way"):

- ``generate`` refuses to run while anything is asleep, and after ``sleep(level=2)`` until weights
  were loaded again (real vLLM would produce gibberish);
- a prompt must hold exactly one ``<|image_pad|>`` per image and no pre-expanded runs, and fit in
  ``max_model_len``;
- ``load_weights`` accepts only the names and full shapes of the checkpoint's ``state_dict`` (so
  PEFT / FSDP / checkpointing name leaks and TP-shard-shaped tensors fail) and bumps
  ``weight_version``;
- sampling is seeded and deterministic, depends on ``weight_version`` (so tests see whether a sync
  happened), treats ``logit_bias <= -100`` as a ban, and stops at EOS (``"stop"``) or
  ``max_tokens`` (``"length"``).

Every call is appended to ``FakeLLM.calls`` so tests can assert the order of a sync cycle.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# Chance of ending the completion at each step: long enough to see both stops and truncations.
EOS_PROBABILITY = 0.15


@dataclass
class FakeLogprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class FakeCompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, FakeLogprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class FakeRequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput]
    finished: bool = True


@dataclass
class FakeSamplingParams:
    """vLLM 0.32's ``SamplingParams`` fields that matter here, with its defaults."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    max_tokens: int | None = 16
    stop_token_ids: list[int] | None = None
    logprobs: int | None = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    logit_bias: dict[int, float] | None = None
    allowed_token_ids: list[int] | None = None
    flat_logprobs: bool = False


def _checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {folder}")
    for file in files:
        with safe_open(os.fspath(file), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


# transformers 5 names VL parameters ``model.visual.*`` / ``model.language_model.*`` in memory but
# saves the legacy ``visual.*`` / ``model.*``; vLLM's Qwen-VL weight mapper accepts both.
_VL_ALIASES = (("model.visual.", "visual."), ("model.language_model.", "model."))


def _checkpoint_name(name: str) -> str:
    for new, legacy in _VL_ALIASES:
        if name.startswith(new):
            return legacy + name[len(new):]
    return name


class FakeModel:
    """The model vLLM's worker holds: only ``load_weights``."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.expected = shapes
        self.weight_version = 0
        self.loaded: dict[str, tuple[tuple[int, ...], Any]] = {}
        self.tensors: dict[str, Any] = {}  # copies of what was pushed (tiny test models only)

    def load_weights(self, weights) -> set[str]:
        names = set()
        for name, tensor in weights:
            expected = self.expected.get(_checkpoint_name(name))
            if expected is None:
                raise ValueError(f"FakeModel.load_weights: unknown parameter {name!r} (not in the checkpoint)")
            if tuple(tensor.shape) != expected:
                raise ValueError(f"FakeModel.load_weights: {name} has shape {tuple(tensor.shape)}, expected the "
                                 f"full tensor {expected}")
            self.loaded[name] = (tuple(tensor.shape), tensor.dtype)
            self.tensors[name] = tensor.detach().to("cpu", copy=True)
            names.add(name)
        self.weight_version += 1
        return names


class FakeLLM:
    """Stand-in for ``vllm.LLM`` (offline, colocated): same constructor keywords, same methods."""

    def __init__(self, model: str, *, tokenizer: str | None = None, max_model_len: int | None = None,
                 seed: int = 0, **kwargs: Any):
        from transformers import AutoTokenizer

        self.model_path = Path(model)
        self.kwargs = {"model": model, "tokenizer": tokenizer, "max_model_len": max_model_len, "seed": seed, **kwargs}
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or model)
        self.model = FakeModel(_checkpoint_shapes(self.model_path))
        self.seed = seed
        self.calls: list[tuple[str, Any]] = []
        self.asleep: set[str] = set()
        self.weights_discarded = False
        self._requests = 0
        worker = SimpleNamespace(model_runner=SimpleNamespace(model=self.model))
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=worker),
            model_config=SimpleNamespace(max_model_len=max_model_len or 2048),
            reset_encoder_cache=lambda: self.calls.append(("reset_encoder_cache", None)))
        vocab = self.tokenizer.get_vocab()
        self.image_pad_id = vocab.get("<|image_pad|>")
        self.eos_id = self.tokenizer.eos_token_id

    @property
    def max_model_len(self) -> int:
        return self.llm_engine.model_config.max_model_len

    def get_tokenizer(self):
        return self.tokenizer

    # ------------------------------------------------------------------ generation
    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, mm_processor_kwargs=None):
        self.calls.append(("generate", len(prompts)))
        if self.asleep:
            raise RuntimeError(f"generate while {sorted(self.asleep)} asleep: vLLM would never schedule it")
        if self.weights_discarded:
            raise RuntimeError("generate after sleep(level=2) without loading weights: vLLM returns gibberish")
        params = sampling_params or FakeSamplingParams()
        return [self._one(i, prompt, params) for i, prompt in enumerate(prompts)]

    def _check_prompt(self, ids: list[int], images: Sequence[Any]) -> None:
        pads = [i for i, t in enumerate(ids) if t == self.image_pad_id]
        if len(pads) != len(images):
            raise RuntimeError(f"{len(pads)} <|image_pad|> placeholders for {len(images)} images")
        if any(b == a + 1 for a, b in pairwise(pads)):
            raise RuntimeError("pre-expanded <|image_pad|> run in the prompt: vLLM would expand it again")
        if len(ids) > self.max_model_len:
            raise ValueError(f"prompt of {len(ids)} tokens > max_model_len {self.max_model_len}")

    def _one(self, index: int, prompt: dict[str, Any], params: FakeSamplingParams) -> FakeRequestOutput:
        ids = list(prompt["prompt_token_ids"])
        images = (prompt.get("multi_modal_data") or {}).get("image") or []
        images = images if isinstance(images, list) else [images]
        self._check_prompt(ids, images)
        self._requests += 1
        base_seed = params.seed if params.seed is not None else self.seed * 1_000_003 + self._requests
        banned = {t for t, bias in (params.logit_bias or {}).items() if bias <= -100}
        allowed = [t for t in range(len(self.tokenizer)) if t not in banned and t != self.eos_id]
        stops = set(params.stop_token_ids or []) | {self.eos_id}
        outputs = []
        for child in range(params.n):
            key = f"{base_seed + child}|{self.model.weight_version}|{ids}|{params.temperature}".encode()
            rng = random.Random(hashlib.sha256(key).hexdigest())
            tokens: list[int] = []
            finish = "length"
            while len(tokens) < (params.max_tokens or 16) and len(ids) + len(tokens) < self.max_model_len:
                if rng.random() < EOS_PROBABILITY:
                    tokens.append(self.eos_id)
                    finish = "stop"
                    break
                tokens.append(rng.choice(allowed))
                if tokens[-1] in stops:  # another configured stop id (e.g. <|endoftext|>)
                    finish = "stop"
                    break
            logprob = -math.log(len(allowed) + 1)
            logprobs = None if params.logprobs is None else [{t: FakeLogprob(logprob, rank=1)} for t in tokens]
            text = self.tokenizer.decode(tokens, skip_special_tokens=params.skip_special_tokens) \
                if params.detokenize else ""
            outputs.append(FakeCompletionOutput(
                index=child, text=text, token_ids=tokens, cumulative_logprob=logprob * len(tokens),
                logprobs=logprobs, finish_reason=finish, stop_reason=None))
        return FakeRequestOutput(request_id=str(index), prompt=None, prompt_token_ids=ids, outputs=outputs)

    # ------------------------------------------------------------------ weights and memory
    def apply_model(self, func: Callable[[Any], Any]) -> list[Any]:
        self.calls.append(("apply_model", None))
        result = [func(self.model)]
        self.weights_discarded = False
        return result

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None) -> list[Any]:
        self.calls.append(("collective_rpc", method if isinstance(method, str) else "callable"))
        worker = self.llm_engine.model_executor.driver_worker
        if callable(method):
            return [method(worker, *args, **(kwargs or {}))]
        return [getattr(worker, method)(*args, **(kwargs or {}))]

    def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        self.calls.append(("reset_prefix_cache", None))
        return True

    def sleep(self, level: int = 1, mode: str = "abort") -> None:
        self.calls.append(("sleep", level))
        if level >= 1:
            self.asleep |= {"weights", "kv_cache"}
        if level == 2:
            self.weights_discarded = True

    def wake_up(self, tags: list[str] | None = None) -> bool:
        self.calls.append(("wake_up", tuple(tags) if tags else None))
        if tags is None:
            self.asleep.clear()
        else:
            self.asleep -= set(tags)
        return True
