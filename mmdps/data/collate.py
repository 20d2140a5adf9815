"""Prompt encoding (chat template + processor) and the policy-forward batch (prompt + completion).

One :class:`PromptEncoder` serves rollout and training, so both see the same token ids and pixels:
images go through :func:`mmdps.data.images.resize_for_model` once and the processor is then told not
to resize again. A prompt that holds image tokens is never truncated (cutting image tokens silently
breaks the image-feature / image-token match); it raises instead.

:class:`PolicyBatch` holds one row per (prompt, completion) pair with the prompt left-padded and the
completion right-padded, so every completion starts at the same column and the forward pass can keep
only the last ``T + 1`` logits. For vision-language models it carries each sample's own patch rows
(``pixel_values``), ``image_grid_thw`` and ``mm_token_type_ids`` over prompt + completion (zeros on
the completion), and :meth:`PolicyBatch.micro_batches` slices the patch rows with the samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from PIL import Image

from mmdps.data.images import IMAGE_FACTOR, load_image, resize_for_model, smart_resize
from mmdps.data.item import Item


@dataclass
class EncodedPrompt:
    """One rendered and tokenised prompt.

    Attributes:
        input_ids: prompt token ids with image placeholders expanded (what the HF model sees).
        pixel_values: this sample's patch rows ``[P, D]`` (VL items), else ``None``.
        image_grid_thw: ``[num_images, 3]`` (VL items), else ``None``.
        mm_token_type_ids: 1 on image tokens, 0 elsewhere (VL models), else ``None``.
        text: the chat-template text of the prompt.
        item_id: the :class:`~mmdps.data.item.Item` id.
        engine_prompt_ids: the ids before image expansion, one ``<|image_pad|>`` per image (for vLLM).
        images: the resized PIL images, in prompt order.
    """

    input_ids: list[int]
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    mm_token_type_ids: list[int] | None = None
    text: str = ""
    item_id: int | None = None
    engine_prompt_ids: list[int] | None = None
    images: list[Image.Image] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def _image_processor_bounds(image_processor: Any) -> tuple[int | None, int | None, int]:
    """(min_pixels, max_pixels, factor) configured on a Qwen2-VL image processor."""
    size = getattr(image_processor, "size", None)
    get = (lambda key: size.get(key)) if isinstance(size, dict) else (lambda key: getattr(size, key, None))
    low = getattr(image_processor, "min_pixels", None) or get("shortest_edge")
    high = getattr(image_processor, "max_pixels", None) or get("longest_edge")
    factor = int(getattr(image_processor, "patch_size", 14)) * int(getattr(image_processor, "merge_size", 2))
    return low, high, factor


class PromptEncoder:
    """Render items with the model's chat template and tokenise them (with images for VL models).

    Args:
        processor: a Qwen2-VL-style processor (VL) or a tokenizer (text).
        max_prompt_length: longest prompt in tokens, image tokens included.
        min_pixels, max_pixels: image resize bounds; default to the image processor's own bounds.
        truncation: "error" (default) raises on an over-long prompt; "left" keeps its last
            ``max_prompt_length`` tokens, for text-only prompts (image prompts always raise).
    """

    def __init__(self, processor: Any, *, max_prompt_length: int = 1024, min_pixels: int | None = None,
                 max_pixels: int | None = None, truncation: str = "error"):
        if truncation not in ("error", "left"):
            raise ValueError(f"truncation must be 'error' or 'left', got {truncation!r}")
        if max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be positive, got {max_prompt_length}")
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", None) or processor
        self.image_processor = getattr(processor, "image_processor", None)
        self.max_prompt_length = max_prompt_length
        self.truncation = truncation
        self.factor = IMAGE_FACTOR
        if self.image_processor is not None:
            low, high, self.factor = _image_processor_bounds(self.image_processor)
            min_pixels = min_pixels or low
            max_pixels = max_pixels or high
        self.min_pixels = min_pixels or 4 * IMAGE_FACTOR * IMAGE_FACTOR
        self.max_pixels = max_pixels or 1024 * IMAGE_FACTOR * IMAGE_FACTOR
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})")
        vocab = self.tokenizer.get_vocab()
        self.image_token_id = vocab.get("<|image_pad|>")

    @property
    def is_vision_language(self) -> bool:
        return self.image_processor is not None

    # ------------------------------------------------------------------ encoding
    def encode(self, items: Sequence[Item]) -> list[EncodedPrompt]:
        """Encode each item; raises ``ValueError`` naming the item when it cannot be encoded."""
        return [self.encode_one(item) for item in items]

    def encode_one(self, item: Item) -> EncodedPrompt:
        messages, images = self._prepare_messages(item)
        if self.is_vision_language:
            text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        engine_ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if not self.is_vision_language:
            return self._fit(item, EncodedPrompt(input_ids=engine_ids, text=text, item_id=item.id,
                                                 engine_prompt_ids=engine_ids))
        encoded = self.processor(text=[text], images=images or None, do_resize=False, return_tensors="pt")
        prompt = EncodedPrompt(
            input_ids=encoded["input_ids"][0].tolist(),
            pixel_values=encoded.get("pixel_values") if images else None,
            image_grid_thw=encoded.get("image_grid_thw") if images else None,
            mm_token_type_ids=(encoded["mm_token_type_ids"][0].tolist() if "mm_token_type_ids" in encoded
                               else [int(t == self.image_token_id) for t in encoded["input_ids"][0].tolist()]),
            text=text, item_id=item.id, engine_prompt_ids=engine_ids, images=images)
        return self._fit(item, prompt)

    def prompt_lengths(self, items: Sequence[Item]) -> list[int]:
        """Each item's prompt length in tokens, image tokens included, without running the image
        processor: the text is tokenised with one placeholder per image, and each image adds the
        tokens its resized size gives (``(h / factor) * (w / factor)``, what the processor expands
        the placeholder to). For checking a whole dataset against ``max_prompt_length`` up front."""
        texts, extra = [], []
        for item in items:
            messages, sizes = self._prepare_messages(item, measure_only=True)
            template = self.processor if self.is_vision_language else self.tokenizer
            texts.append(template.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            extra.append(sum((h // self.factor) * (w // self.factor) - 1 for h, w in sizes))
        if not texts:
            return []
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(row) + more for row, more in zip(ids, extra, strict=True)]

    def prompt_problems(self, items: Sequence[Item]) -> dict[int, str]:
        """Index -> why that item's prompt cannot be used: longer than ``max_prompt_length`` (with
        ``truncation="error"``, or with images, which are never cut), or not encodable at all (an image
        the resize rule refuses, an image for a text model). Measured without running the model, so an
        evaluation can skip or refuse these before generating anything."""
        try:
            lengths: list[int | None] = list(self.prompt_lengths(items))
            errors: list[str | None] = [None] * len(items)
        except Exception:  # noqa: BLE001 - find the item(s) that fail, one at a time
            lengths, errors = [], []
            for item in items:
                try:
                    lengths.append(self.prompt_lengths([item])[0])
                    errors.append(None)
                except Exception as error:  # noqa: BLE001 - any failure makes this item unusable
                    lengths.append(None)
                    errors.append(f"{type(error).__name__}: {error}")
        problems: dict[int, str] = {}
        for index, (item, length, failure) in enumerate(zip(items, lengths, errors, strict=True)):
            if failure is not None:
                problems[index] = f"cannot be encoded ({failure})"
            elif length is not None and length > self.max_prompt_length and (self.truncation == "error"
                                                                             or item.images):
                problems[index] = f"{length} prompt tokens > max_prompt_length={self.max_prompt_length}"
        return problems

    def _prepare_messages(self, item: Item, measure_only: bool = False) -> tuple[list[dict], list[Any]]:
        """Load and resize the images, and give text models plain string contents. ``measure_only``
        returns the resized ``(height, width)`` of each image instead of resizing it."""
        images: list[Any] = []
        messages = []
        for message in item.messages:
            content = message.get("content")
            if isinstance(content, list):
                parts = []
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "image":
                        if not self.is_vision_language:
                            raise ValueError(f"item {item.id}: has an image but the model is text-only; "
                                             "use a vision-language model or a text task")
                        image = load_image(part.get("image"), where=f"item {item.id}")
                        if measure_only:
                            images.append(smart_resize(image.height, image.width, factor=self.factor,
                                                       min_pixels=self.min_pixels, max_pixels=self.max_pixels))
                        else:
                            images.append(resize_for_model(image, min_pixels=self.min_pixels,
                                                           max_pixels=self.max_pixels, factor=self.factor))
                        parts.append({"type": "image"})
                    elif isinstance(part, dict) and part.get("type") == "text":
                        parts.append({"type": "text", "text": part.get("text", "")})
                    else:
                        raise ValueError(f"item {item.id}: unsupported message part {part!r}")
                if not self.is_vision_language:  # text chat templates expect string contents
                    content = "".join(p["text"] for p in parts)
                else:
                    content = parts
            elif not isinstance(content, str):
                raise ValueError(f"item {item.id}: message content must be a string or a list of parts")
            messages.append({**message, "content": content})
        return messages, images

    def _fit(self, item: Item, prompt: EncodedPrompt) -> EncodedPrompt:
        length = len(prompt.input_ids)
        if length <= self.max_prompt_length:
            return prompt
        if prompt.images:
            raise ValueError(
                f"item {item.id}: prompt has {length} tokens ({sum(prompt.mm_token_type_ids or [])} of them image "
                f"tokens) > max_prompt_length={self.max_prompt_length}; prompts with images are never truncated: "
                "raise max_prompt_length or lower max_pixels")
        if self.truncation == "error":
            raise ValueError(f"item {item.id}: prompt has {length} tokens > max_prompt_length="
                             f"{self.max_prompt_length}; raise max_prompt_length or set truncation='left'")
        kept = prompt.input_ids[-self.max_prompt_length:]
        return replace(prompt, input_ids=kept, engine_prompt_ids=list(kept),
                       mm_token_type_ids=None if prompt.mm_token_type_ids is None else [0] * len(kept),
                       text=self.tokenizer.decode(kept))


# ---------------------------------------------------------------------- batches
def _left_pad(rows: Sequence[Sequence[int]], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, width - len(row):] = torch.as_tensor(row, dtype=torch.long)
    return out


def _right_pad(rows: Sequence[Sequence[int]], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def _vision_tensors(prompts: Sequence[EncodedPrompt]) -> dict[str, torch.Tensor]:
    """Concatenated patch rows and grids, plus per-sample row / image counts for slicing."""
    pixels, grids = [], []
    for p in prompts:
        if p.pixel_values is not None:
            assert p.image_grid_thw is not None  # the encoder sets both together
            pixels.append(p.pixel_values)
            grids.append(p.image_grid_thw)
    if not pixels:
        return {}
    return {
        "pixel_values": torch.cat(pixels),
        "image_grid_thw": torch.cat(grids),
        "pixel_rows": torch.tensor([0 if p.pixel_values is None else p.pixel_values.shape[0] for p in prompts]),
        "image_counts": torch.tensor([0 if p.image_grid_thw is None else p.image_grid_thw.shape[0] for p in prompts]),
    }


def build_prompt_batch(prompts: Sequence[EncodedPrompt], *, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-padded generation inputs: ``input_ids``, ``attention_mask`` and, for VL prompts,
    ``mm_token_type_ids``, ``pixel_values`` (all samples' rows in order) and ``image_grid_thw``."""
    if not prompts:
        raise ValueError("build_prompt_batch needs at least one prompt")
    width = max(len(p) for p in prompts)
    batch = {"input_ids": _left_pad([p.input_ids for p in prompts], width, pad_token_id),
             "attention_mask": _left_pad([[1] * len(p) for p in prompts], width, 0)}
    if any(p.mm_token_type_ids is not None for p in prompts):
        batch["mm_token_type_ids"] = _left_pad([p.mm_token_type_ids or [0] * len(p) for p in prompts], width, 0)
    vision = _vision_tensors(prompts)
    if vision:
        batch["pixel_values"], batch["image_grid_thw"] = vision["pixel_values"], vision["image_grid_thw"]
    return batch


@dataclass
class PolicyBatch:
    """Policy-forward inputs for N (prompt, completion) rows; see the module docstring.

    ``input_ids`` / ``attention_mask`` are ``[N, P + T]`` (prompt left-padded to P, completion
    right-padded to T); ``completion_ids`` / ``completion_mask`` are ``[N, T]`` and equal the last T
    columns. ``pixel_rows`` / ``image_counts`` ``[N]`` say how many patch rows and images of
    ``pixel_values`` / ``image_grid_thw`` belong to each row.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    mm_token_type_ids: torch.Tensor | None = None
    pixel_rows: torch.Tensor | None = None
    image_counts: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def completion_length(self) -> int:
        return self.completion_ids.shape[1]

    def to(self, device: torch.device | str) -> PolicyBatch:
        """A copy with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return PolicyBatch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})

    def select(self, start: int, stop: int) -> PolicyBatch:
        """Rows ``start:stop`` with exactly their own patch rows and image grids."""
        rows = {name: getattr(self, name)[start:stop] for name in
                ("input_ids", "attention_mask", "completion_ids", "completion_mask", "mm_token_type_ids")
                if getattr(self, name) is not None}
        if self.pixel_values is not None:
            pixel_rows, image_counts, grids = self.pixel_rows, self.image_counts, self.image_grid_thw
            assert pixel_rows is not None and image_counts is not None and grids is not None  # set with pixel_values
            pixel_start, pixel_stop = (int(pixel_rows[:i].sum()) for i in (start, stop))
            image_start, image_stop = (int(image_counts[:i].sum()) for i in (start, stop))
            rows["pixel_rows"] = pixel_rows[start:stop]
            rows["image_counts"] = image_counts[start:stop]
            if pixel_stop > pixel_start:
                rows["pixel_values"] = self.pixel_values[pixel_start:pixel_stop]
                rows["image_grid_thw"] = grids[image_start:image_stop]
        return PolicyBatch(**rows)

    def micro_batches(self, size: int) -> Iterator[PolicyBatch]:
        """Consecutive slices of at most ``size`` rows (gradient accumulation)."""
        if size < 1:
            raise ValueError(f"micro-batch size must be positive, got {size}")
        for start in range(0, len(self), size):
            yield self.select(start, min(start + size, len(self)))


def build_policy_batch(prompts: Sequence[EncodedPrompt], completion_ids: Sequence[Sequence[int]], *,
                       pad_token_id: int) -> PolicyBatch:
    """One row per (prompt, completion) pair; repeat each prompt k times for k completions.

    The completion width T is at least 1 (an all-empty batch gets one masked column), so the
    forward pass always keeps a well-defined number of logits.
    """
    if len(prompts) != len(completion_ids):
        raise ValueError(f"got {len(prompts)} prompts but {len(completion_ids)} completions; "
                         "repeat each prompt once per completion")
    prompt_batch = build_prompt_batch(prompts, pad_token_id=pad_token_id)
    width = max(1, max((len(c) for c in completion_ids), default=0))
    completions = _right_pad(completion_ids, width, pad_token_id)
    completion_mask = _right_pad([[1] * len(c) for c in completion_ids], width, 0)
    vision = _vision_tensors(prompts)
    mm_types = prompt_batch.get("mm_token_type_ids")
    return PolicyBatch(
        input_ids=torch.cat([prompt_batch["input_ids"], completions], dim=1),
        attention_mask=torch.cat([prompt_batch["attention_mask"], completion_mask], dim=1),
        completion_ids=completions, completion_mask=completion_mask,
        pixel_values=vision.get("pixel_values"), image_grid_thw=vision.get("image_grid_thw"),
        mm_token_type_ids=None if mm_types is None else torch.cat([mm_types, torch.zeros_like(completions)], dim=1),
        pixel_rows=vision.get("pixel_rows"), image_counts=vision.get("image_counts"))
