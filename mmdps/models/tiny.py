"""Tiny random-weight Qwen2 / Qwen2-VL / Qwen2.5-VL models, built fully offline.

The architectures are the real transformers classes, only shrunk (2 layers, hidden 64, a 2-block ViT
of width 32), so every code path of mmdps (chat template, processor, M-RoPE, vision tower, LoRA,
weight sync) runs on them in well under a second per step on a CPU. The tokenizer is either a
byte-level BPE trained on synthetic text with ``tokenizers`` (~0.2 s) or a bare byte-level one; it
carries the Qwen2-VL special tokens and the Qwen2-VL chat template. Same seed -> same weights and
the same tokenizer.

The command line is ``mmdps tiny-model`` (:mod:`mmdps.commands.tiny_model`).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

ARCHS = ("qwen2", "qwen2-vl", "qwen2.5-vl")

# Qwen2-VL's special tokens, in the order the real checkpoints number them.
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# The Qwen2-VL-Instruct chat template (text-only messages render exactly like Qwen2.5-Instruct's).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 112 * 112


def _train_bpe(vocab_size: int, seed: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE trained on synthetic math-flavoured text (deterministic for a seed)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    rng = random.Random(seed)
    syllables = [c + v + e for c in "bcdfghjklmnprstvwz" for v in "aeiou" for e in ("", "n")]
    words = ("the of and to is a triangle circle angle area radius answer find value sum think "
             "numbers equation use each once").split()
    words += ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(6000)]
    corpus = []
    for _ in range(6000):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        corpus.append(" ".join(rng.choice(words) for _ in range(12))
                      + f" {a} + {b} = {a + b}. <think> ({a}-{b})*2 </think> <answer>{a + b}</answer>"
                      + f" \\boxed{{{a + b}}}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def _byte_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The 256 byte symbols and no merges: a valid (if slow to read) Qwen2-style tokenizer."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = sorted(bytes_to_unicode().items())
    return {char: i for i, (_, char) in enumerate(symbols)}, []


def build_tokenizer(vocab: str = "bpe", vocab_size: int = 4000, seed: int = 0):
    """A ``Qwen2Tokenizer`` with the Qwen2-VL special tokens and chat template (``vocab``: "bpe" | "byte")."""
    from transformers import Qwen2Tokenizer

    if vocab == "bpe":
        tokens, merges = _train_bpe(vocab_size, seed)
    elif vocab == "byte":
        tokens, merges = _byte_vocab()
    else:
        raise ValueError(f"vocab must be 'bpe' or 'byte', got {vocab!r}")
    tokens = dict(tokens)
    for special in SPECIAL_TOKENS:
        tokens.setdefault(special, len(tokens))
    # transformers annotates merges as strings and unk_token as str; pairs and None (no unknown token) work.
    tokenizer = Qwen2Tokenizer(vocab=tokens, merges=merges,  # type: ignore[arg-type]
                               eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               unk_token=None, additional_special_tokens=SPECIAL_TOKENS[1:])  # type: ignore[arg-type]
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _text_config(tokenizer, hidden_size: int, num_layers: int, num_heads: int, mrope: bool) -> dict:
    if hidden_size % num_heads or (hidden_size // num_heads) % 4:
        raise ValueError(f"hidden_size ({hidden_size}) / num_heads ({num_heads}) must be a multiple of 4")
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in ("<|endoftext|>", "<|im_end|>")}
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    if mrope:  # the three M-RoPE sections (time, height, width) must add up to head_dim / 2
        half = hidden_size // num_heads // 2
        rope["mrope_section"] = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
    kv_heads = 2 if num_heads % 2 == 0 else 1
    return dict(vocab_size=(len(tokenizer) + 63) // 64 * 64, hidden_size=hidden_size,
                intermediate_size=2 * hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
                num_key_value_heads=kv_heads, max_position_embeddings=4096, bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True,
                rope_parameters=rope)


def _build_model(arch: str, tokenizer, hidden_size: int, num_layers: int, num_heads: int):
    import transformers as tf

    if arch == "qwen2":
        return tf.Qwen2ForCausalLM(tf.Qwen2Config(**_text_config(tokenizer, hidden_size, num_layers, num_heads, False)))
    text = _text_config(tokenizer, hidden_size, num_layers, num_heads, True)
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS}
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                  tie_word_embeddings=True)
    vision_width = 32
    vision: dict[str, Any]
    if arch == "qwen2-vl":
        vision = dict(depth=2, embed_dim=vision_width, hidden_size=hidden_size, num_heads=2, mlp_ratio=2,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
        return tf.Qwen2VLForConditionalGeneration(tf.Qwen2VLConfig(text_config=text, vision_config=vision, **common))
    vision = dict(depth=2, hidden_size=vision_width, intermediate_size=2 * vision_width, num_heads=2,
                  out_hidden_size=hidden_size, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                  window_size=112, fullatt_block_indexes=[1])
    return tf.Qwen2_5_VLForConditionalGeneration(tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common))


def build_processor(tokenizer, *, min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS):
    """A Qwen2-VL processor around ``tokenizer``; the image-only one when torchvision is missing."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from mmdps.models.loading import ImageOnlyQwen2VLProcessor

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    image_processor = Qwen2VLImageProcessorPil(size=size, patch_size=14, temporal_patch_size=2, merge_size=2)
    try:
        from transformers import Qwen2VLProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor(size=size, patch_size=14, temporal_patch_size=2, merge_size=2)
        return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                video_processor=video_processor, chat_template=CHAT_TEMPLATE)
    except Exception:  # noqa: BLE001 - without torchvision the video processor cannot be built
        return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                         chat_template=CHAT_TEMPLATE)


def build_tiny_model(arch: str, out_dir: str | os.PathLike, *, hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 4, vocab: str = "bpe", vocab_size: int = 4000, seed: int = 0,
                     min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS) -> Path:
    """Write a random-weight model, its tokenizer and chat template (and, for VL, its processor) to
    ``out_dir``, loadable offline with :func:`mmdps.models.loading.load_policy`.

    Args:
        arch: "qwen2" (text), "qwen2-vl" or "qwen2.5-vl".
        hidden_size, num_layers, num_heads: language-model size (the ViT is 2 blocks of width 32).
        vocab: "bpe" (byte-level BPE of ``vocab_size`` trained on synthetic text) or "byte" (270 tokens).
        seed: seeds the tokenizer corpus and the weights; the global RNG is left untouched.
        min_pixels, max_pixels: the image processor's resize bounds (VL only).
    """
    import torch

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab, vocab_size, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build_model(arch, tokenizer, hidden_size, num_layers, num_heads)
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = pad
    model.save_pretrained(out)
    if arch == "qwen2":
        tokenizer.save_pretrained(out)
    else:
        build_processor(tokenizer, min_pixels=min_pixels, max_pixels=max_pixels).save_pretrained(out)
    return out
