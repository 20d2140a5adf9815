"""Rollouts with transformers' ``generate``: the default engine, on CPU and GPU.

The engine shares the trainer's model, so ``sync_weights`` has nothing to do. Prompts are encoded
by a :class:`~mmdps.data.collate.PromptEncoder` (exposed as ``engine.encoder`` so the trainer builds
its policy batches from the very same ids and pixels), left-padded, and sampled ``k`` times each with
``num_return_sequences``. Sampling uses a fresh ``GenerationConfig`` built from
:class:`~mmdps.rollout.base.SamplingParams` only: a checkpoint's own defaults (Qwen's
``repetition_penalty``, ``top_k=20`` ...) would make the sampler's distribution differ from the one
the loss assumes.

Each sampled completion carries the sampler's log-probs (``Completion.logprobs``): the log-prob of
every sampled token under the distribution ``generate`` drew it from (temperature, top-k, top-p),
recorded step by step without keeping the ``[steps, N, V]`` scores ``output_scores`` would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mmdps.data.collate import EncodedPrompt, PromptEncoder, build_prompt_batch
from mmdps.data.item import Item
from mmdps.models.loading import get_tokenizer, is_vision_language, vision_token_ids
from mmdps.rollout.base import Completion, NonFiniteLogitsError, RolloutEngine, SamplingParams


def eos_token_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    """Every id that ends a completion: the generation config's EOS ids and the tokenizer's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    listed = configured if isinstance(configured, (list, tuple)) else [configured]
    ids = [int(i) for i in listed if i is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    if not ids:
        raise ValueError("the model has no EOS token id (set generation_config.eos_token_id or the tokenizer's)")
    return ids


def cut_completion(token_ids: Sequence[int], stop_ids: set[int], banned_ids: set[int]) -> tuple[list[int], str]:
    """Cut a generated row at its first stop id (kept, so the trainer learns to stop).

    A banned (vision placeholder) id should never be sampled; if one slips through anyway the row is
    cut before it and reported as truncated ("length"), so the trainer masks it instead of feeding
    an image token without image features to the model.
    """
    kept: list[int] = []
    for token in token_ids:
        if token in banned_ids:
            return kept, "length"
        kept.append(int(token))
        if token in stop_ids:
            return kept, "stop"
    return kept, "length"


def _finite_logits_guard():
    """A logits processor (run on the raw logits, before the sampling warpers) that raises
    :class:`NonFiniteLogitsError` on a NaN or +inf logit, or a row with no finite logit."""
    from transformers import LogitsProcessor

    class FiniteLogitsGuard(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            bad = torch.isnan(scores).any() | torch.isposinf(scores).any() | torch.isneginf(scores).all(-1).any()
            if bad:  # one device sync per token, as generate's own stopping check already costs
                raise NonFiniteLogitsError(f"the policy produced non-finite logits at generated token "
                                           f"{input_ids.shape[-1]} (NaN or inf)")
            return scores

    return FiniteLogitsGuard()


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for the block and restore the caller's RNG state afterwards."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class SampledLogprobs:
    """A ``generate`` logits processor that records the log-prob of each sampled token.

    Custom processors run before ``generate``'s own sampling warpers, so this one applies the same
    warpers (temperature, top-k, top-p, in ``generate``'s order) to a copy of the scores and keeps
    the resulting log-softmax of one step. The token drawn from step ``t`` appears in ``input_ids``
    at step ``t + 1``, where its log-prob is read; :meth:`finish` reads the last one.
    """

    def __init__(self, sampling: SamplingParams):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.warpers: list[Any] = []
        if sampling.temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_k > 0:
            self.warpers.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(sampling.top_p))
        self._last: torch.Tensor | None = None
        self._steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._last is not None:
            self._steps.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
        warped = scores
        for warper in self.warpers:
            warped = warper(input_ids, warped)
        self._last = torch.log_softmax(warped.float(), dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """``[rows, new_tokens]`` float32 log-probs of the generated tokens (the last read from ``sequences``)."""
        if self._last is not None:
            self._steps.append(self._last.gather(1, sequences[:, -1:]).squeeze(1))
            self._last = None
        if not self._steps:
            return torch.zeros(sequences.shape[0], 0)
        return torch.stack(self._steps, dim=1).cpu()


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class HFEngine(RolloutEngine):
    """Sample completions with ``model.generate``.

    Args:
        model: the policy (a transformers model or a peft wrapper of one); its device is used.
        processor: its processor (VL) or tokenizer (text).
        max_prompt_length, min_pixels, max_pixels: passed to the :class:`PromptEncoder`.
        generation_batch_size: prompts per ``generate`` call (``None``: all at once); each call
            generates ``generation_batch_size * k`` sequences.
        suppress_vision_tokens: never sample ``<|image_pad|>`` and the other vision placeholders.
        return_logprobs: record the sampler's log-prob of every sampled token (``Completion.logprobs``;
            not for greedy decoding).
    """

    def __init__(self, model: nn.Module, processor: Any, *, max_prompt_length: int = 1024,
                 min_pixels: int | None = None, max_pixels: int | None = None,
                 generation_batch_size: int | None = None, suppress_vision_tokens: bool = True,
                 truncation: str = "error", return_logprobs: bool = True):
        if generation_batch_size is not None and generation_batch_size < 1:
            raise ValueError(f"generation_batch_size must be positive or None, got {generation_batch_size}")
        self.model: Any = model  # a transformers model or its peft wrapper (generate is looked up by name)
        self.processor = processor
        self.tokenizer = get_tokenizer(processor)
        self.encoder = PromptEncoder(processor, max_prompt_length=max_prompt_length, min_pixels=min_pixels,
                                     max_pixels=max_pixels, truncation=truncation)
        if self.encoder.is_vision_language and not is_vision_language(model):
            raise ValueError("a vision-language processor was given with a text-only model")
        self.generation_batch_size = generation_batch_size
        self.return_logprobs = return_logprobs
        self.stop_ids = eos_token_ids(model, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else self.stop_ids[0])
        self.banned_ids = vision_token_ids(self.tokenizer) if suppress_vision_tokens else []

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generation_config(self, k: int, sampling: SamplingParams):
        """The ``GenerationConfig`` for one call: only what ``sampling`` says, nothing inherited."""
        from transformers import GenerationConfig

        if sampling.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive, got {sampling.max_new_tokens}")
        if sampling.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {sampling.temperature}")
        do_sample = sampling.temperature > 0
        # Unset fields would be filled from the checkpoint's generation_config, so every field that
        # changes the sampling distribution is set explicitly (neutral unless SamplingParams asks).
        # Greedy decoding applies no warpers: top_k / min_p stay None there (transformers warns otherwise).
        options: dict[str, Any] = dict(
            max_new_tokens=sampling.max_new_tokens, min_new_tokens=0, do_sample=do_sample, num_beams=1,
            num_return_sequences=k, eos_token_id=self.stop_ids, pad_token_id=self.pad_token_id, use_cache=True,
            temperature=sampling.temperature if do_sample else 1.0, top_p=sampling.top_p if do_sample else 1.0,
            top_k=sampling.top_k if do_sample else None, min_p=0.0 if do_sample else None, typical_p=1.0,
            epsilon_cutoff=0.0, eta_cutoff=0.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0)
        if self.banned_ids:
            options["suppress_tokens"] = list(self.banned_ids)
        return GenerationConfig(**options)

    def generate(self, items: Sequence[Item], k: int, sampling: SamplingParams) -> list[list[Completion]]:
        """``len(items) x k`` completions; token ids exclude the prompt and padding and end with the
        EOS id when the completion stopped (``finish_reason`` "stop"), else "length"."""
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        if not items:
            return []
        prompts = self.encoder.encode(items)
        size = self.generation_batch_size or len(prompts)
        results: list[list[Completion]] = []
        for chunk_index, start in enumerate(range(0, len(prompts), size)):
            seed = None if sampling.seed is None else sampling.seed + chunk_index
            results.extend(self._generate_chunk(prompts[start:start + size], k, sampling, seed))
        return results

    def generate_encoded(self, prompts: Sequence[EncodedPrompt], k: int, sampling: SamplingParams,
                         seed: int | None = None, logits_processor: Sequence[Any] = ()) -> torch.Tensor:
        """Raw ``generate`` output ``[len(prompts) * k, P + new]`` for already-encoded prompts
        (rows prompt-major: prompt 0's k samples first); ``logits_processor`` is passed to ``generate``."""
        encoded = build_prompt_batch(prompts, pad_token_id=self.pad_token_id)
        batch = {name: t.to(self.device) for name, t in encoded.items()}
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(next(self.model.parameters()).dtype)
        if not is_vision_language(self.model):
            batch.pop("mm_token_type_ids", None)
        from transformers import LogitsProcessorList

        config = self.generation_config(k, sampling)
        # The guard first: nothing downstream (sampling, log-prob recording) sees a NaN logit.
        processors = LogitsProcessorList([_finite_logits_guard(), *logits_processor])
        with _eval_mode(self.model), torch.no_grad(), _seeded(seed, self.device):
            return self.model.generate(**batch, generation_config=config, logits_processor=processors)

    def _generate_chunk(self, prompts: Sequence[EncodedPrompt], k: int, sampling: SamplingParams,
                        seed: int | None) -> list[list[Completion]]:
        # Greedy decoding is deterministic and generate() refuses num_return_sequences > 1 for it:
        # decode once per prompt and copy.
        copies = k if sampling.temperature == 0 else 1
        recorder = SampledLogprobs(sampling) if self.return_logprobs and sampling.temperature > 0 else None
        sequences = self.generate_encoded(prompts, k // copies, sampling, seed,
                                          logits_processor=[recorder] if recorder else [])
        prompt_width = max(len(p) for p in prompts)
        new_tokens = [row for row in sequences[:, prompt_width:].tolist() for _ in range(copies)]
        sampled = recorder.finish(sequences).tolist() if recorder else [None] * len(new_tokens)
        stop, banned = set(self.stop_ids), set(self.banned_ids)
        groups: list[list[Completion]] = []
        for i in range(len(prompts)):
            group = []
            for row, row_logprobs in zip(new_tokens[i * k:(i + 1) * k], sampled[i * k:(i + 1) * k], strict=True):
                token_ids, reason = cut_completion(row, stop, banned)
                text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
                logprobs = None if row_logprobs is None else row_logprobs[:len(token_ids)]
                group.append(Completion(text=text, token_ids=token_ids, finish_reason=reason, logprobs=logprobs))
            groups.append(group)
        return groups
