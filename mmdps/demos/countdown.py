"""The Countdown demo (``mmdps demo``): a ~1M-parameter Qwen2 learns Countdown in minutes, offline.

1. build a tiny Qwen2 (hidden 128, 4 layers, tied embeddings) with a character-level tokenizer;
2. supervised warm-up on generated worked solutions (``<answer>7*19+3</answer>``) until the model
   solves some but not all problems;
3. evaluate a fixed 400-prompt held-out set (greedy and k=8 samples at T=1);
4. GRPO with the DPS selector through :class:`mmdps.trainer.GRPOTrainer`, evaluating along the way;
5. print accuracy before/after and the rollouts spent; write ``demo.json`` and ``demo.png``.

The recipe (levels, sizes, learning rates) is the measured one of ``docs/demo.md``; :data:`RECIPE` holds
this task's pieces for :func:`mmdps.demos.common.run_demo`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdps.data.item import Item
from mmdps.demos.common import DemoSettings, Log, Recipe, renumber
from mmdps.demos.common import grpo_config as shared_grpo_config

# The four levels of the tiny Countdown split (tasks/countdown.py TINY_LEVELS): 2 numbers in 1-20,
# 3 in 1-9, 3 in 1-25, 4 in 1-9; + - * only.
LEVELS = ("L0: 2 nums 1-20", "L1: 3 nums 1-9", "L2: 3 nums 1-25", "L3: 4 nums 1-9")
# Unique SFT problems drawn per level (L0 / L1 have only ~600 / ~2000 distinct problems in all);
# levels are then balanced by repetition so that each one gets a quarter of the SFT batches.
SFT_PROBLEMS_PER_LEVEL = (500, 1_500, 6_000, 6_000)
# Tokens the model reads as one symbol, so that prompts stay ~15 tokens long.
ADDED_TOKENS = ("<answer>", "</answer>", "Numbers:", "Target:")
# Renders only the user's text: no system prompt, no role markers, no generation prefix (the answer
# starts with the <answer> token, which separates it well enough).
CHAT_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ message['content'] }}"
                 "{% endif %}{% endfor %}")
MAX_PROMPT_LENGTH = 64


# ---------------------------------------------------------------------- tokenizer and model
def build_tokenizer():
    """A character-level Qwen2 tokenizer: the 256 byte symbols and no merges, the Qwen2 special tokens,
    ``<answer>``, ``</answer>``, ``Numbers:`` and ``Target:`` as single tokens, and a chat template that
    renders only the user's text."""
    from mmdps.models.tiny import build_tokenizer as build_qwen2_tokenizer

    tokenizer = build_qwen2_tokenizer("byte")
    tokenizer.add_tokens(list(ADDED_TOKENS))  # not special: decode(skip_special_tokens=True) keeps them
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer, settings: DemoSettings):
    """A random-weight ``Qwen2ForCausalLM`` (about 1.1M parameters at the defaults); the global RNG is
    left untouched."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.pad_token_id
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=settings.hidden_size,
                         intermediate_size=settings.intermediate_size, num_hidden_layers=settings.num_layers,
                         num_attention_heads=settings.num_heads, num_key_value_heads=settings.num_heads,
                         max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=pad,
                         eos_token_id=eos, pad_token_id=pad)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    return model.eval()


def describe_model(model, tokenizer, sft_items: Sequence[Item], prompts: Sequence[Any],
                   encode_seconds: float) -> tuple[str, dict[str, Any]]:
    params = sum(p.numel() for p in model.parameters())
    return (f"model: Qwen2, {params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}; "
            f"SFT on {len(sft_items)} problems ({len(prompts)} balanced examples)", {"parameters": params})


# ---------------------------------------------------------------------- data
@dataclass
class DemoData:
    """The held-out set, the RL prompt pool and the SFT problems: pairwise disjoint."""

    heldout: list[Item]
    pool: list[Item]
    sft: list[Item]


def problem_key(truth: Mapping[str, Any]) -> tuple[int, tuple[int, ...]]:
    """What makes two Countdown problems the same: the target and the numbers as a multiset (``truth``: an
    item's ``ground_truth`` or a generated problem, both with ``target`` and ``numbers``)."""
    return int(truth["target"]), tuple(sorted(truth["numbers"]))


def _level_items(pack, level: int, num: int, seed: str, exclude: set) -> list[Item]:
    """Up to ``num`` distinct problems of one level that are not in ``exclude``."""
    from mmdps.tasks.countdown import TINY_LEVELS, generate_problems

    # The pack's generator refuses to return fewer problems than asked; small levels are exhausted
    # near a few hundred problems, so ask for what exists (shrinking until it succeeds).
    while True:
        try:
            problems = generate_problems(num, levels=TINY_LEVELS[level], seed=seed)
            break
        except ValueError:
            num = num * 2 // 3
    items = [make_item(pack, problem, level) for problem in problems]
    return [item for item in items if problem_key(item.ground_truth) not in exclude]


def make_item(pack, problem: Mapping[str, Any], level: int, *, id: int = 0, **metadata: Any) -> Item:
    """A Countdown item of the compact template from a generated problem; the level name is
    ``LEVELS[level]``'s short name, or ``"hard"`` beyond them; ``metadata`` adds fields."""
    from mmdps.tasks.countdown import countdown_question

    name = LEVELS[level].split(":")[0] if level < len(LEVELS) else "hard"
    return pack.make_item(id=id, question=countdown_question(problem["target"], problem["numbers"]),
                          ground_truth={"target": problem["target"], "numbers": problem["numbers"]},
                          metadata={"solution": problem["solution"], "difficulty": level, "problem_type": name,
                                    **metadata})


def make_data(settings: DemoSettings) -> DemoData:
    """Generate the three disjoint sets from the Countdown pack's ``tiny`` levels (seeded).

    The held-out set has ``heldout_per_level`` problems per level and does not depend on the seed, so
    runs with different seeds are scored on the same problems.
    """
    from mmdps import tasks

    pack = tasks.get("countdown", template="compact")
    heldout = []
    for level in range(len(LEVELS)):
        heldout += pack.load(None, split="tiny", levels=[level], num=settings.heldout_per_level,
                             seed=f"heldout-{level}")
    seen = {problem_key(item.ground_truth) for item in heldout}
    pool = [item for item in pack.load(None, split="tiny", num=settings.pool_size + len(heldout),
                                       seed=f"pool-{settings.seed}")
            if problem_key(item.ground_truth) not in seen][: settings.pool_size]
    seen |= {problem_key(item.ground_truth) for item in pool}
    sft: list[Item] = []
    for level, num in enumerate(SFT_PROBLEMS_PER_LEVEL):
        sft += _level_items(pack, level, num, f"sft-{settings.seed}-{level}", seen)
    return DemoData(heldout=renumber(heldout), pool=renumber(pool), sft=renumber(sft))


def describe_data(data: DemoData, settings: DemoSettings, seconds: float) -> str:
    return (f"data: {len(data.sft)} SFT problems, {len(data.pool)} RL prompts, {len(data.heldout)} held-out "
            f"(disjoint; levels {', '.join(LEVELS)})")


def sft_examples(items: Sequence[Item], tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids (exactly as the rollout engine encodes them) and target ids
    (``<answer>EXPR</answer>`` + EOS, the reference solution without spaces), levels balanced by
    repetition."""
    from mmdps.data.collate import PromptEncoder

    # The chat template renders just the user's text; tokenising those strings in one batch call is ~50x
    # faster than rendering the template per item. Checked against the engine's own encoder.
    texts = [item.text for item in items]
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    reference = PromptEncoder(tokenizer, max_prompt_length=MAX_PROMPT_LENGTH).encode(items[:8])
    if any(list(ref.input_ids) != ids for ref, ids in zip(reference, prompt_ids[:len(reference)], strict=True)):
        raise RuntimeError("SFT prompts differ from the rollout engine's encoding; the chat template changed")
    answers = ["<answer>" + item.metadata["solution"].replace(" ", "") + "</answer>" for item in items]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    target_ids = [ids + [eos] for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]]
    by_level: dict[int, list[tuple[list[int], list[int]]]] = {}
    for item, prompt, target in zip(items, prompt_ids, target_ids, strict=True):
        by_level.setdefault(item.metadata["difficulty"], []).append((prompt, target))
    largest = max(len(rows) for rows in by_level.values())
    prompts, targets = [], []
    for level in sorted(by_level):
        rows = by_level[level]
        for index in range(largest):
            prompt, target = rows[index % len(rows)]
            prompts.append(prompt)
            targets.append(target)
    return prompts, targets


# ---------------------------------------------------------------------- GRPO
def grpo_config(settings: DemoSettings, model_dir: Path, output_dir: Path, *, selector: str | None = None,
                selector_kwargs: dict | None = None, max_steps: int | None = None):
    """The demo recipe's trainer configuration (docs/demo.md) on the Countdown pack."""
    return shared_grpo_config(settings, model_dir, output_dir, selector=selector, selector_kwargs=selector_kwargs,
                              max_steps=max_steps, task={"task": "countdown", "task_template": "compact",
                                                         "max_prompt_length": MAX_PROMPT_LENGTH})


# ---------------------------------------------------------------------- the report
def print_summary(summary: dict[str, Any], out: Path, log: Log = print) -> None:
    """Accuracy before and after GRPO, overall and per level, and the rollouts spent."""
    before, after = summary["before"], summary["after"]
    lines = ["", f"held-out accuracy ({before['prompts']} prompts)      before RL   after RL",
             f"  greedy                               {before['greedy']:8.3f}   {after['greedy']:8.3f}",
             f"  sampled (mean of 8, T=1)             {before['sampled']:8.3f}   {after['sampled']:8.3f}"]
    for level in before["by_level"]:
        b, a = before["by_level"][level], after["by_level"][level]
        lines.append(f"  {level} greedy / sampled              {b['greedy']:.2f} / {b['sampled']:.2f}"
                     f"   {a['greedy']:.2f} / {a['sampled']:.2f}")
    lines += [f"rollouts spent: {summary['rollouts']:,} in {summary['rl_seconds']:.0f} s of GRPO; "
              f"total wall time {summary['total_seconds']:.0f} s",
              f"wrote {out / 'demo.json'} and {out / 'demo.png'}"]
    for line in lines:
        log(line)


RECIPE = Recipe(
    name="countdown", title="Countdown, tiny Qwen2", settings=DemoSettings, build_processor=build_tokenizer,
    build_model=build_model, make_data=make_data, sft_examples=sft_examples, grpo_config=grpo_config,
    level_names=lambda settings: LEVELS, controls=lambda data: {}, describe_data=describe_data,
    describe_model=describe_model, print_summary=print_summary, max_prompt_length=MAX_PROMPT_LENGTH)
