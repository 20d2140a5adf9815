"""The vision-language demo (``mmdps demo --vl``): a tiny Qwen2-VL learns to read images on the CPU, offline.

1. build a 1.4M-parameter Qwen2-VL from a config (language model 128 x 4 layers, ViT 64 x 2 blocks)
   with a byte-level tokenizer and a chat template that renders just the image and the question;
2. supervised warm-up on the visual pack (``mmdps.tasks.get("visual")``; by default its four digit
   levels, ``levels`` adds the geometry ones): the answer after each image question, through the
   trainer's own prompt encoder, batches and forward pass (:func:`mmdps.sft.supervised_warmup` with
   encoded image prompts);
3. evaluate a fixed held-out set per level, and the same questions with white images (the
   blank-image control: what the model gets right without reading the image);
4. GRPO through :class:`mmdps.trainer.GRPOTrainer` (uniform prompt sampling by default), evaluating
   along the way;
5. print per-level accuracy before / after with the blank control beside it, and a verdict that
   compares before and after on the same prompts; write ``demo.json`` and ``demo.png`` under ``--out``.

The recipe is the measured one of ``docs/demo.md`` ("The vision-language demo"); :data:`RECIPE` holds this
task's pieces for :func:`mmdps.demos.common.run_demo`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmdps.data.item import Item
from mmdps.demos.common import DemoSettings, Log, Recipe
from mmdps.demos.common import grpo_config as shared_grpo_config

# The visual pack's levels, as the reports name them.
LEVEL_NAMES = ("digit", "number", "sum", "max", "angle", "complement", "third")
LEVELS = tuple(f"L{index}: {name}" for index, name in enumerate(LEVEL_NAMES))
# The demo's default: the four digit levels (8 image tokens each). All seven do not fit in ten minutes on 2
# cores, and the tiny model barely learns the geometry levels in that time (docs/demo.md); ``--levels`` adds them.
DEFAULT_LEVELS = LEVEL_NAMES[:4]
# Renders the user's content only: the image placeholder, then the question (no system prompt, no
# role markers), so a prompt is 16-27 tokens and the answer follows it directly.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endif %}{% endfor %}"
)
MAX_PROMPT_LENGTH = 48
MIN_PIXELS = 56 * 56
MAX_PIXELS = 112 * 112


@dataclass
class VLDemoSettings(DemoSettings):
    """Every knob of the VL demo: the shared ones (:class:`mmdps.demos.common.DemoSettings`, the same model
    and GRPO knobs) with the VL recipe's defaults (docs/demo.md), the vision tower and the visual levels."""

    # vision tower
    vision_width: int = 64
    vision_depth: int = 2
    vision_heads: int = 4
    # data (levels: names or indices of the visual pack's levels)
    levels: tuple = DEFAULT_LEVELS
    sft_per_level: int = 2000
    # the VL recipe's values of the Countdown demo's knobs
    sft_steps: int = 2400
    selector: str = "uniform"
    selector_kwargs: dict = field(default_factory=dict)
    rl_steps: int = 300
    max_new_tokens: int = 4
    eval_every: int = 100

    def validate(self) -> None:
        super().validate()
        for name in ("vision_width", "vision_depth", "vision_heads", "sft_per_level"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        from mmdps.tasks.visual import resolve_levels

        resolve_levels(list(self.levels))

    @property
    def level_names(self) -> tuple[str, ...]:
        """The report names (``L0: digit`` ...) of the levels this run uses, in the pack's order."""
        from mmdps.tasks.visual import resolve_levels

        chosen = set(resolve_levels(list(self.levels)))
        return tuple(name for name, level in zip(LEVELS, LEVEL_NAMES, strict=True) if level in chosen)


# ---------------------------------------------------------------------- tokenizer, processor, model
def build_processor():
    """A Qwen2-VL processor around a byte-level tokenizer (270 tokens), with :data:`CHAT_TEMPLATE`;
    images between 56x56 and 112x112 pixels."""
    from mmdps.models.tiny import build_processor as build_qwen2_vl_processor
    from mmdps.models.tiny import build_tokenizer

    tokenizer = build_tokenizer("byte")
    tokenizer.chat_template = CHAT_TEMPLATE
    processor = build_qwen2_vl_processor(tokenizer, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    processor.chat_template = CHAT_TEMPLATE
    return processor


def build_model(tokenizer, settings: VLDemoSettings):
    """A random-weight ``Qwen2VLForConditionalGeneration`` (1.37M parameters at the defaults); the
    global RNG is left untouched."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|image_pad|>",
                                                             "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    half = settings.hidden_size // settings.num_heads // 2
    text = dict(vocab_size=(len(tokenizer) + 63) // 64 * 64, hidden_size=settings.hidden_size,
                intermediate_size=settings.intermediate_size, num_hidden_layers=settings.num_layers,
                num_attention_heads=settings.num_heads, num_key_value_heads=settings.num_heads,
                max_position_embeddings=256, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]})
    vision = dict(depth=settings.vision_depth, embed_dim=settings.vision_width, hidden_size=settings.hidden_size,
                  num_heads=settings.vision_heads, mlp_ratio=4, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|endoftext|>"]
    return model.eval()


# ---------------------------------------------------------------------- data
@dataclass
class VLDemoData:
    """The held-out set, its blank-image twin, the RL prompt pool and the SFT items (each from its own
    random stream of the visual pack)."""

    heldout: list[Item]
    blank: list[Item]
    pool: list[Item]
    sft: list[Item]


def make_data(settings: VLDemoSettings) -> VLDemoData:
    """Generate the sets; the held-out set (and its blank twin) does not depend on the seed, so runs
    with different seeds are scored on the same images."""
    from mmdps import tasks

    pack = tasks.get("visual")
    levels = list(settings.levels)
    per_heldout = settings.heldout_per_level * len(levels)
    return VLDemoData(
        heldout=pack.load(None, split="heldout", seed=0, num=per_heldout, levels=levels),
        blank=pack.load(None, split="heldout", seed=0, num=per_heldout, levels=levels, blank=True),
        pool=pack.load(None, split="train", seed=settings.seed, num=settings.pool_size, levels=levels),
        sft=pack.load(None, split="sft", seed=settings.seed, num=settings.sft_per_level * len(levels), levels=levels))


def sft_examples(items: Sequence[Item], processor) -> tuple[list, list[list[int]]]:
    """Encoded prompts (the rollout engine's own :class:`~mmdps.data.collate.PromptEncoder`, images
    included) and target ids (the answer, then the end-of-turn token)."""
    from mmdps.data.collate import PromptEncoder

    tokenizer = processor.tokenizer
    prompts = PromptEncoder(processor, max_prompt_length=MAX_PROMPT_LENGTH).encode(items)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    answers = tokenizer([str(item.ground_truth) for item in items], add_special_tokens=False)["input_ids"]
    return prompts, [ids + [eos] for ids in answers]


def describe_data(data: VLDemoData, settings: VLDemoSettings, seconds: float) -> str:
    return (f"data: {len(data.sft)} SFT items, {len(data.pool)} RL prompts, {len(data.heldout)} held-out and their "
            f"blank-image twins, generated in {seconds:.0f} s (levels {', '.join(settings.level_names)})")


def describe_model(model, tokenizer, sft_items: Sequence[Item], prompts: Sequence[Any],
                   encode_seconds: float) -> tuple[str, dict[str, Any]]:
    params = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for name, p in model.named_parameters() if "visual" in name)
    return (f"model: Qwen2-VL, {params / 1e6:.2f}M parameters ({vision / 1e6:.2f}M in the vision tower), vocabulary "
            f"{len(tokenizer)}; SFT on {len(prompts)} image questions (encoded in {encode_seconds:.0f} s)",
            {"parameters": params, "vision_parameters": vision, "encode_seconds": encode_seconds})


# ---------------------------------------------------------------------- GRPO
def grpo_config(settings: VLDemoSettings, model_dir: Path, output_dir: Path, *, selector: str | None = None,
                selector_kwargs: dict | None = None, max_steps: int | None = None):
    """The demos' trainer configuration on the visual pack: short image prompts within the image size bounds."""
    task = {"task": "visual", "task_template": None, "task_options": {"levels": list(settings.levels)},
            "max_prompt_length": MAX_PROMPT_LENGTH, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
    return shared_grpo_config(settings, model_dir, output_dir, selector=selector, selector_kwargs=selector_kwargs,
                              max_steps=max_steps, task=task)


# ---------------------------------------------------------------------- the report
def measured_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What RL changed, each accuracy beside the noise of its own change, so the demo never claims a gain its
    numbers do not show. Before and after score the same prompts, so the noise is the standard error of the
    mean per-prompt difference (a paired comparison); without per-prompt results, the binomial standard
    error of one greedy evaluation stands in for both."""
    n = max(int(before.get("prompts") or 1), 1)
    p = before["greedy"]
    fallback = math.sqrt(max(p * (1 - p), 1e-12) / n)
    parts, verdicts = [], []
    for key, name in (("greedy", "greedy"), ("sampled", "sampled (the T=1 accuracy GRPO maximises)")):
        change = after[key] - before[key]
        se = _paired_se(before, after, key) or fallback
        verdict = "beyond the noise" if abs(change) > 2 * se else "within the noise"
        verdicts.append((change, verdict))
        parts.append(f"{name} {100 * change:+.1f} points (standard error {100 * se:.1f}: {verdict})")
    if all(v == "beyond the noise" and c > 0 for c, v in verdicts):
        overall = "a gain beyond the noise in both"
    elif any(v == "beyond the noise" and c < 0 for c, v in verdicts):
        overall = "a loss beyond the noise"
    elif any(v == "beyond the noise" and c > 0 for c, v in verdicts):
        overall = "a gain beyond the noise in " + " and ".join(
            key for key, (c, v) in zip(("greedy", "sampled"), verdicts, strict=True) if v == "beyond the noise")
        overall += " accuracy only"
    else:
        overall = "no change beyond about two standard errors"
    return (f"What RL changed here ({n} held-out prompts, before and after on the same prompts): "
            f"{'; '.join(parts)}. In all: {overall}.")


def _paired_se(before: dict[str, Any], after: dict[str, Any], key: str) -> float | None:
    """Standard error of the mean per-prompt change of ``key``; None without per-prompt results."""
    b, a = (point.get("per_prompt", {}).get(key) for point in (before, after))
    if not b or not a or len(a) != len(b) or len(a) < 2:
        return None
    diffs = [y - x for x, y in zip(b, a, strict=True)]
    mean = sum(diffs) / len(diffs)
    variance = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return max(math.sqrt(variance / len(diffs)), 1e-12)


def print_summary(summary: dict[str, Any], out: Path, log: Log = print) -> None:
    """Per-level accuracy before and after GRPO, with the blank-image control beside each."""
    before, after = summary["before"], summary["after"]
    samples = summary["settings"]["eval_samples"]
    lines = ["", f"held-out accuracy, greedy / mean of {samples} samples at T=1 "
                 f"({sum(1 for _ in summary['curve'][0]['by_level'])} levels)",
             f"{'':24}{'before RL':>13}{'after RL':>13}   {'blank image before / after':>28}"
             f"{'from the image':>16}"]

    def row(name: str, b: dict, a: dict, bb: dict | None, ab: dict | None) -> str:
        blank = f"{bb['greedy']:.2f}/{bb['sampled']:.2f}  {ab['greedy']:.2f}/{ab['sampled']:.2f}" if bb and ab else ""
        # greedy accuracy after RL above what the same policy scores on white images: what it reads
        image = f"{100 * (a['greedy'] - ab['greedy']):+.0f} points" if ab else ""
        return (f"  {name:22}{b['greedy']:6.3f}/{b['sampled']:.3f}{a['greedy']:7.3f}/{a['sampled']:.3f}   "
                f"{blank:>28}{image:>16}")

    blank_b, blank_a = before.get("blank"), after.get("blank")
    lines.append(row("all levels", before, after, blank_b, blank_a))
    full_names = {name.split(":")[0]: name for name in LEVELS}
    for level in before["by_level"]:
        lines.append(row(full_names.get(level, level), before["by_level"][level], after["by_level"][level],
                         blank_b and blank_b["by_level"][level], blank_a and blank_a["by_level"][level]))
    times = summary["step_seconds"]
    lines += [f"rollouts spent: {summary['rollouts']:,} in {summary['rl_seconds']:.0f} s of GRPO "
              f"({times['step']:.2f} s/step: rollout {times['rollout']:.2f}, train {times['train']:.2f}); "
              f"SFT {summary['sft']['seconds']:.0f} s; total wall time {summary['total_seconds']:.0f} s "
              f"(CPU time {summary['cpu_seconds']:.0f} s)",
              measured_change(before, after),
              f"wrote {out / 'demo.json'} and {out / 'demo.png'}"]
    for line in lines:
        log(line)


RECIPE = Recipe(
    name="vl", title="Visual pack, tiny Qwen2-VL", settings=VLDemoSettings, build_processor=build_processor,
    build_model=build_model, make_data=make_data, sft_examples=sft_examples, grpo_config=grpo_config,
    level_names=lambda settings: settings.level_names, controls=lambda data: {"blank": data.blank},
    describe_data=describe_data, describe_model=describe_model, print_summary=print_summary,
    max_prompt_length=MAX_PROMPT_LENGTH, plot_controls={"blank": "blank image (control)"})
