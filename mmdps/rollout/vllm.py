"""Rollouts with a colocated vLLM engine (optional extra, GPU only).

vLLM is imported lazily, and any failure (not only ``ImportError``: a broken torchvision raises
``RuntimeError``) becomes one clear message. The engine lives in the trainer's process
(``distributed_executor_backend="external_launcher"``), so weights are synced in place after each
optimizer step: PEFT adapters merged, parameter names cleaned of PEFT / FSDP / DDP / checkpointing
prefixes, streamed in buckets through ``apply_model(lambda m: m.load_weights(...))``, then the
prefix cache (and, for VL models, the encoder cache) is reset. docs/models_and_rollout.md gives the
reasons behind each rule ("Why the vLLM engine works this way").

Prompts are encoded by the same :class:`~mmdps.data.collate.PromptEncoder` as the HF engine; vLLM
gets the *unexpanded* ids (one ``<|image_pad|>`` per image, vLLM expands them itself) and the
already-resized images, and the vision placeholders are banned through ``logit_bias``.
"""

from __future__ import annotations

import os
import random
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mmdps.data.collate import PromptEncoder
from mmdps.data.item import Item
from mmdps.models.loading import get_tokenizer, vision_token_ids
from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams
from mmdps.rollout.hf import cut_completion

INSTALL_HINT = "install the [vllm] extra on a GPU machine: pip install 'mmdps[vllm]'"
BAN_BIAS = -100.0  # vLLM clamps logit_bias to +-100; -100 is zero probability in practice


class VLLMUnavailableError(ImportError):
    """vLLM cannot be imported (not installed, or installed against a broken torch / torchvision)."""


def import_vllm() -> tuple[Any, Any]:
    """``(vllm.LLM, vllm.SamplingParams)`` or :class:`VLLMUnavailableError` with the install hint."""
    try:
        from vllm import LLM
        from vllm import SamplingParams as VLLMSamplingParams
    except Exception as exc:  # noqa: BLE001 - RuntimeError from a broken torchvision, too
        raise VLLMUnavailableError(f"the vllm engine needs vLLM, which failed to import "
                                   f"({type(exc).__name__}: {exc}); {INSTALL_HINT}, or use engine 'hf'") from exc
    return LLM, VLLMSamplingParams


# ---------------------------------------------------------------------- weight streaming
_WRAPPER_FRAGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def clean_parameter_name(name: str) -> str | None:
    """The plain HF name of a (possibly wrapped) parameter, or ``None`` for adapter-only tensors.

    Strips FSDP1 / activation-checkpointing / ``torch.compile`` fragments, DDP's ``module.``, PEFT's
    ``base_model.model.``, ``.base_layer`` and ``modules_to_save.default.``; drops ``lora_*`` and
    ``original_module`` tensors (they are merged or superseded).
    """
    for fragment in _WRAPPER_FRAGMENTS:
        name = name.replace(fragment, "")
    name = name.removeprefix("module.").removeprefix("base_model.model.")
    parts = name.split(".")
    if any(part.startswith("lora_") or part == "original_module" for part in parts):
        return None
    return name.replace(".base_layer.", ".").replace("modules_to_save.default.", "")


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_adapter")


@contextmanager
def merged_adapter(model: Any) -> Iterator[Any]:
    """Merge a PEFT model's adapters for the block (no-op for plain models), unmerge afterwards."""
    if not _is_peft(model):
        yield model
        return
    with torch.no_grad():
        model.merge_adapter()
    try:
        yield model
    finally:
        with torch.no_grad():
            model.unmerge_adapter()


def inference_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(clean HF name, full tensor)`` for every parameter, in ``named_parameters`` order (the same
    on every rank). Call inside :func:`merged_adapter` for PEFT models. FSDP2 ``DTensor``s are
    gathered one at a time with ``full_tensor()``."""
    for name, parameter in model.named_parameters():
        clean = clean_parameter_name(name)
        if clean is None:
            continue
        tensor = parameter.detach()
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        yield clean, tensor


def weight_buckets(pairs: Iterator[tuple[str, torch.Tensor]], bucket_bytes: int,
                   ) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Group pairs into lists of about ``bucket_bytes`` (a tensor larger than that goes alone)."""
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in pairs:
        bucket.append((name, tensor))
        size += tensor.numel() * tensor.element_size()
        if size >= bucket_bytes:
            yield bucket
            bucket, size = [], 0
    if bucket:
        yield bucket


def _stop_ids(model_path: str | os.PathLike, tokenizer: Any) -> list[int]:
    """EOS ids of the checkpoint's generation config (vLLM stops on all of them) and the tokenizer's."""
    from transformers import GenerationConfig

    ids = {tokenizer.eos_token_id}
    try:
        configured = GenerationConfig.from_pretrained(os.fspath(model_path)).eos_token_id
    except Exception:  # noqa: BLE001 - no generation_config.json: the tokenizer's EOS only
        configured = None
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(int(i) for i in ids if i is not None)


def _set_single_process_env() -> None:
    """external_launcher initialises torch.distributed from env://; a plain single process has none."""
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("localhost", 0))
            os.environ["MASTER_PORT"] = str(sock.getsockname()[1])
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "localhost")):
        os.environ.setdefault(key, value)


@contextmanager
def _preserved_rng() -> Iterator[None]:
    """vLLM re-seeds random / numpy / torch at start-up; keep the trainer's streams intact."""
    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


# ---------------------------------------------------------------------- engine
DEFAULT_MAX_NEW_TOKENS = 1024


def completion_budget(max_new_tokens: int | None, max_completion_length: int | None) -> int:
    """The engine's completion budget from ``max_new_tokens`` or its deprecated alias
    ``max_completion_length`` (a ``FutureWarning``); both with different values is an error."""
    if max_completion_length is None:
        return DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
    warnings.warn("the vllm engine option max_completion_length is deprecated: call it max_new_tokens (the config "
                  "key of the same meaning)", FutureWarning, stacklevel=3)
    if max_new_tokens is not None and max_new_tokens != max_completion_length:
        raise ValueError(f"the vllm engine got max_new_tokens={max_new_tokens} and its deprecated alias "
                         f"max_completion_length={max_completion_length}; give only max_new_tokens")
    return max_completion_length


class VLLMEngine(RolloutEngine):
    """A colocated vLLM engine behind the :class:`RolloutEngine` interface.

    Args:
        model_path: the checkpoint folder the trainer loaded (vLLM reads config and tokenizer there;
            a tokenizer the trainer changed must be saved there first).
        processor: the trainer's processor (VL) or tokenizer (text); prompts are encoded with it.
        tensor_parallel_size: tensor-parallel size (divides the world size); vLLM's own name, as are
            the other ``vllm.LLM`` arguments below.
        gpu_memory_utilization: fraction of the GPU's total memory vLLM may use (weights + KV cache).
        max_prompt_length, max_new_tokens: size the context, ``max_model_len = max_prompt_length +
            max_new_tokens`` (image tokens count; the config keys of the same names, default 1024 each);
            no call may ask for more than ``max_new_tokens`` tokens. ``max_completion_length`` is a
            deprecated alias of ``max_new_tokens`` (a ``FutureWarning``).
        sleep_level: 0 keeps vLLM resident; 1 offloads weights and drops the KV cache during
            training; 2 also discards the weights (the next ``sync_weights`` restores them).
        seed: engine seed; vLLM re-seeds the process RNGs at start-up, which this class undoes.
        max_images: images per prompt (``limit_mm_per_prompt``).
        min_pixels, max_pixels: image bounds, shared with the encoder and vLLM's processor.
        dtype, enforce_eager, max_num_seqs, max_num_batched_tokens: passed to ``vllm.LLM``.
        return_logprobs: ask for the sampled tokens' log-probs (``Completion.logprobs``; tempered,
            after top-k / top-p and logit_bias: vLLM's ``processed_logprobs``).
        bucket_bytes: size of one ``load_weights`` call during sync.
        llm_factory, sampling_cls: stand-ins for ``vllm.LLM`` / ``vllm.SamplingParams`` (tests).
        llm_kwargs: extra ``vllm.LLM`` arguments (override the ones above).
    """

    def __init__(self, model_path: str | os.PathLike, processor: Any, *, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.3, max_prompt_length: int = 1024,
                 max_new_tokens: int | None = None, max_completion_length: int | None = None, sleep_level: int = 0,
                 seed: int = 0, max_images: int = 1, min_pixels: int | None = None, max_pixels: int | None = None,
                 dtype: str = "bfloat16", enforce_eager: bool = False, max_num_seqs: int = 256,
                 max_num_batched_tokens: int = 4096, return_logprobs: bool = True, bucket_bytes: int = 256 << 20,
                 truncation: str = "error", llm_factory: Callable[..., Any] | None = None,
                 sampling_cls: type | None = None, llm_kwargs: dict[str, Any] | None = None):
        if sleep_level not in (0, 1, 2):
            raise ValueError(f"sleep_level must be 0, 1 or 2, got {sleep_level}")
        max_new_tokens = completion_budget(max_new_tokens, max_completion_length)
        if llm_factory is None or sampling_cls is None:
            real_llm, real_sampling = import_vllm()
            if llm_factory is None:
                _set_single_process_env()
            llm_factory, sampling_cls = llm_factory or real_llm, sampling_cls or real_sampling
        self.processor = processor
        self.tokenizer = get_tokenizer(processor)
        self.encoder = PromptEncoder(processor, max_prompt_length=max_prompt_length, min_pixels=min_pixels,
                                     max_pixels=max_pixels, truncation=truncation)
        self.is_vision_language = self.encoder.is_vision_language
        self.max_new_tokens = max_new_tokens
        self.max_model_len = max_prompt_length + max_new_tokens
        self.sleep_level = sleep_level
        self.return_logprobs = return_logprobs
        self.bucket_bytes = bucket_bytes
        self.sampling_cls = sampling_cls
        self.banned_ids = vision_token_ids(self.tokenizer)
        self.stop_ids = _stop_ids(model_path, self.tokenizer)
        self.image_token_id = self.encoder.image_token_id
        kwargs: dict[str, Any] = dict(
            model=os.fspath(model_path), tokenizer=os.fspath(model_path), dtype=dtype,
            distributed_executor_backend="external_launcher", tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=self.max_model_len, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens, enable_sleep_mode=sleep_level > 0, seed=seed,
            enforce_eager=enforce_eager, logprobs_mode="processed_logprobs")
        if self.is_vision_language:
            kwargs.update(limit_mm_per_prompt={"image": max_images}, mm_processor_cache_gb=0,
                          mm_processor_kwargs={"min_pixels": self.encoder.min_pixels,
                                               "max_pixels": self.encoder.max_pixels})
        kwargs.update(llm_kwargs or {})
        with _preserved_rng():
            self.llm = llm_factory(**kwargs)
        self._asleep = False
        self._weights_stale = False  # True after sleep(level=2) until the next sync
        self.sync_count = 0

    # ------------------------------------------------------------------ generation
    def sampling_params(self, k: int, sampling: SamplingParams) -> Any:
        """The engine's ``SamplingParams`` for one call: ``n=k``, ``max_tokens`` set, vision ids banned."""
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        if sampling.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive, got {sampling.max_new_tokens}")
        if sampling.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {sampling.temperature}")
        return self.sampling_cls(
            n=k, temperature=sampling.temperature, top_p=sampling.top_p, top_k=max(sampling.top_k, 0),
            max_tokens=sampling.max_new_tokens, seed=sampling.seed, stop_token_ids=list(self.stop_ids),
            logprobs=0 if self.return_logprobs else None, detokenize=False,
            logit_bias={token: BAN_BIAS for token in self.banned_ids} or None)

    def requests(self, items: Sequence[Item], max_new_tokens: int) -> list[dict[str, Any]]:
        """vLLM prompts: unexpanded token ids (+ ``multi_modal_data`` for items with images).

        Raises ``ValueError`` naming the item when the prompt (image tokens expanded) plus
        ``max_new_tokens`` exceeds ``max_model_len``, before the engine is called.
        """
        requests = []
        for item, prompt in zip(items, self.encoder.encode(items), strict=True):
            if len(prompt) + max_new_tokens > self.max_model_len:
                raise ValueError(f"item {item.id}: prompt of {len(prompt)} tokens (image tokens expanded) + "
                                 f"max_new_tokens={max_new_tokens} > max_model_len={self.max_model_len} (the "
                                 f"engine's max_prompt_length + max_new_tokens={self.max_new_tokens}); raise "
                                 "max_prompt_length or max_new_tokens, or lower max_pixels")
            engine_ids = prompt.engine_prompt_ids
            assert engine_ids is not None  # the encoder always sets them
            request: dict[str, Any] = {"prompt_token_ids": list(engine_ids)}
            if prompt.images:
                pads = sum(1 for t in engine_ids if t == self.image_token_id)
                if pads != len(prompt.images):
                    raise ValueError(f"item {item.id}: {pads} <|image_pad|> placeholders for {len(prompt.images)} "
                                     "images; the chat template must emit one placeholder per image")
                request["multi_modal_data"] = {"image": list(prompt.images)}
            requests.append(request)
        return requests

    def generate(self, items: Sequence[Item], k: int, sampling: SamplingParams) -> list[list[Completion]]:
        if not items:
            return []
        params = self.sampling_params(k, sampling)
        requests = self.requests(items, sampling.max_new_tokens)
        self._ensure_ready()
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        if len(outputs) != len(items):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(items)} prompts")
        stop, banned = set(self.stop_ids), set(self.banned_ids)
        groups: list[list[Completion]] = []
        for item, output in zip(items, outputs, strict=True):
            children = sorted(output.outputs, key=lambda c: c.index)
            if len(children) != k:
                raise RuntimeError(f"item {item.id}: vLLM returned {len(children)} completions, expected {k}")
            group: list[Completion] = []
            for child in children:
                token_ids, reason = cut_completion(child.token_ids, stop, banned)
                if child.finish_reason != "stop":
                    reason = "length"  # length, abort, error: not a natural stop
                logprobs = None
                if self.return_logprobs and child.logprobs is not None:
                    logprobs = [float(child.logprobs[j][t].logprob) for j, t in enumerate(token_ids)]
                group.append(Completion(text=self.tokenizer.decode(token_ids, skip_special_tokens=True),
                                        token_ids=token_ids, finish_reason=reason, logprobs=logprobs))
            groups.append(group)
        return groups

    # ------------------------------------------------------------------ weights and memory
    def sync_weights(self, model: nn.Module) -> None:
        """Push ``model``'s current weights (PEFT merged, names cleaned) into vLLM and drop its caches."""
        if self._asleep:  # weights must be resident to be loaded; the KV cache can stay asleep
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # vLLM's allocator cannot see blocks cached by PyTorch
            self.llm.wake_up(["weights"])
        with merged_adapter(model):
            for bucket in weight_buckets(inference_weights(model), self.bucket_bytes):
                self.llm.apply_model(lambda vllm_model, pairs=bucket: vllm_model.load_weights(pairs))
        self.llm.reset_prefix_cache()
        if self.is_vision_language:  # a trained vision tower makes cached image embeddings stale
            self.llm.llm_engine.reset_encoder_cache()
        self._weights_stale = False
        self.sync_count += 1

    def sleep(self) -> None:
        """Free GPU memory for training (no-op with ``sleep_level=0``)."""
        if self.sleep_level == 0 or self._asleep:
            return
        self.llm.sleep(level=self.sleep_level)
        self._asleep = True
        self._weights_stale = self._weights_stale or self.sleep_level == 2

    def wake(self) -> None:
        """Make weights and KV cache resident again."""
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def _ensure_ready(self) -> None:
        if self._weights_stale:
            raise RuntimeError("vLLM discarded its weights in sleep(level=2); call sync_weights(model) before "
                               "generate")
        self.wake()

    def close(self) -> None:
        self.llm = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
