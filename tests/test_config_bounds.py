"""GRPOConfig bounds and resumability, declared in each field's metadata: what each field accepts and
refuses at its edges, the settings a resumed run may change, the completion budget of the vLLM engine."""

from __future__ import annotations

import dataclasses

import pytest

from mmdps import checkpoint
from mmdps.config import MIN_TEMPERATURE, GRPOConfig, bound_text, resumable_fields


def make(**values):
    return GRPOConfig(model_name_or_path="tiny:qwen2", **values)


# The settings a resumed run could change before they moved into the field metadata (the list that
# mmdps.checkpoint spelled out): the derived set must stay exactly this one.
RESUMABLE_BEFORE = frozenset({
    "max_steps", "learning_rate", "warmup_steps", "max_grad_norm", "clip_low", "clip_high", "clip_c",
    "entropy_coeff", "loss_agg_mode", "mask_truncated_completions", "overlong_buffer_len", "overlong_penalty_factor",
    "skip_zero_advantage_groups", "micro_batch_size", "generation_batch_size", "reward_workers", "max_new_tokens",
    "temperature", "top_p", "top_k", "max_prompt_length", "long_prompts", "min_pixels", "max_pixels",
    "attn_implementation", "gradient_checkpointing", "engine_kwargs", "output_dir", "run_name", "logging_steps",
    "report_to", "wandb_project", "progress_bar", "log_completions_steps", "num_completions_to_log", "save_steps",
    "save_total_limit", "save_final", "resume", "eval_steps", "eval_num_samples", "eval_temperature", "eval_top_p",
    "eval_max_new_tokens", "eval_source", "eval_split", "eval_limit", "eval_options", "max_consecutive_nan",
})
# Resumable settings added since, each deliberately: check_ground_truth is a start-up check; collective_timeout_s
# bounds waiting, not the restored state (a run that timed out is resumed with a larger one).
RESUMABLE_ADDED = frozenset({"check_ground_truth", "collective_timeout_s", "console_log"})


def test_resumable_changes_come_from_the_field_metadata_and_are_the_same_49_settings():
    assert len(RESUMABLE_BEFORE) == 49 and not RESUMABLE_BEFORE & RESUMABLE_ADDED
    assert resumable_fields() == RESUMABLE_BEFORE | RESUMABLE_ADDED
    assert checkpoint.RESUMABLE_CHANGES == RESUMABLE_BEFORE | RESUMABLE_ADDED  # the compatibility name, derived
    flagged = {f.name for f in dataclasses.fields(GRPOConfig) if f.metadata.get("resumable") is True}
    assert flagged == RESUMABLE_BEFORE | RESUMABLE_ADDED


# (field, accepted values at the edge, refused values just past it, the refusal's wording)
EDGES = [
    *[(name, [1, 2], [0, -1, True, 1.5], "a positive integer")
      for name in ("batch_size", "max_new_tokens", "max_steps", "ppo_epochs", "micro_batch_size", "max_prompt_length",
                   "logging_steps", "reward_workers", "max_consecutive_nan", "eval_num_samples")],
    *[(name, [None, 1, 2], [0, -1, True], "a positive integer or None")
      for name in ("min_pixels", "max_pixels", "mini_batch_size", "generation_batch_size", "train_limit", "eval_limit",
                   "eval_max_new_tokens", "save_total_limit")],
    ("num_generations", [2, 3], [1, 0, True], "an integer >= 2: group advantages need at least two rollouts"),
    *[(name, [0, 1], [-1, True], "an integer >= 0")
      for name in ("warmup_steps", "overlong_buffer_len", "save_steps", "eval_steps", "log_completions_steps",
                   "num_completions_to_log", "top_k")],
    *[(name, [0.0, 0, 1e-12, 5.0], [-1e-12, -1, None], ">= 0")
      for name in ("clip_high", "beta", "entropy_coeff", "weight_decay", "lora_dropout", "overlong_penalty_factor")],
    ("clip_low", [0.0, 0.999], [-1e-9, 1.0, 1.5], r"in \[0, 1\)"),
    ("clip_c", [None, 1.0001, 10.0], [1.0, 0.5, 0.0], "> 1 or None"),
    *[(name, [1e-12, 3.0], [0.0, -1e-12], "> 0")
      for name in ("learning_rate", "max_grad_norm", "rollout_correction_cap")],
    *[(name, [1e-9, 1.0], [0.0, -0.1, 1.0000001], r"in \(0, 1\]") for name in ("top_p", "eval_top_p")],
    ("collective_timeout_s", [1, 1.5, 1800.0], [0.999, 0, -1, True, None], ">= 1"),
    *[(name, [0.0, 0, MIN_TEMPERATURE, 0.6, 2.0], [1e-45, 1e-9, 0.00999, -1e-9, -1.0, None], r"0 or >= 0\.01")
      for name in ("temperature", "eval_temperature")],
]


@pytest.mark.parametrize("name, accepted, refused, wording", EDGES, ids=[edge[0] for edge in EDGES])
def test_each_field_accepts_its_range_and_refuses_what_lies_past_its_bounds(name, accepted, refused, wording):
    for value in accepted:
        assert getattr(make(**{name: value}), name) == value
    for value in refused:
        with pytest.raises(ValueError, match=rf"^{name} must be {wording}.*, got {value!r}$"):
            make(**{name: value})


def test_every_bounded_field_is_covered_above_and_non_finite_floats_are_refused():
    bounded = {f.name for f in dataclasses.fields(GRPOConfig) if "min" in f.metadata or "max" in f.metadata}
    assert bounded == {edge[0] for edge in EDGES}
    for name in ("learning_rate", "clip_c", "temperature", "top_p"):
        for value in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"^{name} must be a finite number"):
                make(**{name: value})
    assert bound_text("max_steps") == "a positive integer" and bound_text("seed") == ""


def test_a_tiny_positive_temperature_is_refused_but_greedy_stays_allowed():
    # 1e-45 passed before and crashed torch.multinomial mid-run (logits / T overflow to inf).
    with pytest.raises(ValueError, match=r"temperature must be 0 or >= 0\.01, got 1e-45"):
        make(temperature=1e-45)
    assert make(temperature=0.0).temperature == 0.0


def test_vllm_refuses_an_eval_budget_above_the_completion_budget_it_sizes_its_context_from():
    with pytest.raises(ValueError, match=r"eval_max_new_tokens=64 is above max_new_tokens=32, but engine=vllm sizes "
                                         r"its context .*set eval_max_new_tokens to at most 32 \(or remove it\), or "
                                         r"raise max_new_tokens"):
        make(engine="vllm", max_new_tokens=32, eval_max_new_tokens=64)
    assert make(engine="vllm", max_new_tokens=32, eval_max_new_tokens=32).eval_max_new_tokens == 32
    assert make(engine="hf", max_new_tokens=32, eval_max_new_tokens=64).eval_max_new_tokens == 64  # hf: no context


@pytest.mark.parametrize("alias", ["max_new_tokens", "max_completion_length"])
def test_the_completion_budget_has_one_name_so_engine_kwargs_may_not_set_it_again(alias):
    with pytest.raises(ValueError, match=rf"engine_kwargs\.{alias} duplicates the top-level max_new_tokens.*set "
                                         r"max_new_tokens=4096 instead"):
        make(engine="vllm", engine_kwargs={alias: 4096})
