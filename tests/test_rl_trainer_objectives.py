"""The objectives of mmdps.rl wired through the trainer: every advantage estimator, ratio level and loss
type trains a step; the sampler/trainer mismatch is logged; TIS / MIS act on the loss."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mmdps import verifiers
from mmdps.config import GRPOConfig
from mmdps.rl import group_advantages
from mmdps.trainer import Group, GRPOTrainer
from mmdps.training.update import step_advantages
from tiny_models import build, text_item


@verifiers.register("test_rl_parity")
def _parity(completion: str, ground_truth, **metadata) -> dict:
    good = len(completion) % 2 == 0  # reward variance within groups, so the policy gradient is non-zero
    return {"score": float(good), "acc": float(good), "format": 1.0}


@pytest.fixture
def trainer(tmp_path):
    """One trainer per test (accelerate's state is reset between tests); each step switches the objective."""
    config = GRPOConfig(model_name_or_path=str(build("qwen2")), output_dir=str(tmp_path / "run"),
                        batch_size=4, num_generations=4, max_new_tokens=8, max_steps=100, micro_batch_size=8,
                        learning_rate=1e-3, progress_bar=False, save_steps=0, log_completions_steps=0, seed=0,
                        selector="uniform")
    items = [text_item(100 + i, f"Add {i} and {i + 1}.", verifier="test_rl_parity") for i in range(8)]
    return GRPOTrainer(config, items=items)


def _step(trainer: GRPOTrainer, engine=None, **objective) -> dict:
    """One training step under ``objective`` (config fields), optionally through a wrapped engine."""
    base, base_engine = trainer.config, trainer.engine
    trainer.config = trainer.update.config = dataclasses.replace(base, **objective)
    trainer.engine = engine(base_engine) if engine else base_engine
    try:
        trainer.step += 1
        return trainer.train_step()
    finally:
        trainer.config, trainer.update.config, trainer.engine = base, base, base_engine


def _weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.unwrapped_model.state_dict().items()}


OBJECTIVES = [
    {"ratio_level": "sequence", "loss_agg_mode": "seq-mean-token-mean", "clip_low": 3e-4, "clip_high": 4e-4},
    {"ratio_level": "sequence_token", "mini_batch_size": 2},
    {"loss_type": "cispo"},
    {"rollout_correction": "tis"},
    {"rollout_correction": "mis", "rollout_correction_level": "sequence", "ppo_epochs": 2},
]


@pytest.mark.parametrize("objective", [{"advantage_estimator": "rloo"}, {"advantage_estimator": "reinforce_pp"},
                                       {"scale_rewards": "batch"}, {"scale_rewards": False}, {}])
def test_advantages_come_from_the_configured_estimator_over_the_whole_batch(objective):
    config = GRPOConfig(model_name_or_path="tiny:qwen2", num_generations=4, **objective)
    rng = np.random.default_rng(0)
    groups = [Group(position=i, completions=[], score=rng.integers(0, 2, 4).astype(float), acc=np.zeros(4),
                    format=np.zeros(4)) for i in range(5)]
    scores = torch.tensor(np.concatenate([g.score for g in groups]), dtype=torch.float32)
    scale = config.scale_rewards if config.advantage_estimator == "grpo" else None
    expected = group_advantages(scores, 4, estimator=config.advantage_estimator, scale_std=scale).view(5, 4)
    torch.testing.assert_close(torch.stack(step_advantages(groups, config)), expected)


@pytest.mark.slow
def test_each_objective_trains_and_logs_the_mismatch(trainer):
    for objective in OBJECTIVES:  # one trainer, one step each: a model load per objective would cost ~3 s
        before = _weights(trainer)
        record = _step(trainer, **objective)
        assert record["nan_updates"] == 0 and math.isfinite(record["loss"]), objective
        assert any(not torch.equal(v, before[k]) for k, v in _weights(trainer).items()), objective
        _check_mismatch(record, objective)


def _check_mismatch(record: dict, objective: dict) -> None:
    # HF generate and the trainer's forward share the model, so the log-probs nearly agree (which also shows
    # the sampler's log-probs sit on the right tokens). The one real difference: the sampler bans the 5 vision
    # placeholders of the tiny model's 4,032-token vocabulary, lifting every other token by about
    # -log(1 - 5 / 4032) = 1.2e-3 nats.
    assert 0 <= record["rollout/logprob_diff_mean"] < 3e-3
    assert 0 <= record["rollout/kl_sampler_trainer"] < 1e-5
    if "rollout_correction" in objective:
        assert record["rollout/is_weight_mean"] == pytest.approx(1.0, abs=0.02)  # a sequence: 8 tokens of 1.2e-3
        assert record["rollout/corrected_frac"] == 0.0


class _ShiftedLogprobs:
    """Wraps an engine and reports every sampled token as ``shift`` nats less likely than it was."""

    def __init__(self, engine, shift: float | None):
        self.engine, self.shift, self.encoder = engine, shift, engine.encoder

    def generate(self, items, k, sampling):
        groups = self.engine.generate(items, k, sampling)
        return [[dataclasses.replace(c, logprobs=None if self.shift is None else [x - self.shift for x in c.logprobs])
                 for c in group] for group in groups]

    def sync_weights(self, model):
        self.engine.sync_weights(model)


@pytest.mark.slow
def test_correction_weights_the_loss(trainer):
    shifted = lambda engine: _ShiftedLogprobs(engine, 1.0)  # noqa: E731
    # rho = pi / mu = e^1 = 2.72 on every token: TIS truncates it to the cap 2, MIS drops every token
    for mode, weight in (("tis", 2.0), ("mis", 0.0)):
        record = _step(trainer, shifted, rollout_correction=mode, rollout_correction_cap=2.0, entropy_coeff=0.0)
        # (1 nat, less the 1.2e-3 of the banned vision placeholders: see above)
        assert record["rollout/logprob_diff_mean"] == pytest.approx(1.0, abs=3e-3)
        assert record["rollout/kl_sampler_trainer"] == pytest.approx(math.e - 2, abs=6e-3)  # e^1 - 1 - 1
        assert record["rollout/corrected_frac"] == 1.0
        assert record["rollout/is_weight_mean"] == pytest.approx(weight, abs=1e-6)
        assert (record["pg_loss"] == 0.0) == (mode == "mis"), mode

    silent = lambda engine: _ShiftedLogprobs(engine, None)  # noqa: E731
    record = _step(trainer, silent)
    assert record["nan_updates"] == 0 and not any(key.startswith("rollout/") for key in record)
    with pytest.raises(RuntimeError, match="needs the sampling log-probs"):
        _step(trainer, silent, rollout_correction="tis")


@pytest.mark.parametrize(("overrides", "match"), [
    ({"advantage_estimator": "ppo"}, "advantage_estimator must be one of"),
    ({"ratio_level": "seq"}, "ratio_level must be one of"),
    ({"loss_type": "grpo"}, "loss_type must be one of"),
    ({"scale_rewards": "prompt"}, "scale_rewards must be"),
    ({"advantage_estimator": "rloo", "scale_rewards": "batch"}, "applies to advantage_estimator=grpo only"),
    ({"rollout_correction": "is"}, "rollout_correction must be None or one of"),
    ({"rollout_correction": "tis", "temperature": 0.0}, "greedy decoding"),
    ({"rollout_correction_cap": 0.0}, "rollout_correction_cap"),
    ({"rollout_correction_level": "batch"}, "rollout_correction_level must be one of"),
])
def test_config_refuses_bad_objective_settings(overrides, match):
    with pytest.raises(ValueError, match=match):
        GRPOConfig(model_name_or_path="tiny:qwen2", **overrides)


def test_config_spellings():
    config = GRPOConfig(model_name_or_path="tiny:qwen2", rollout_correction="none", scale_rewards="batch")
    assert config.rollout_correction is None and config.scale_rewards == "batch"
    defaults = GRPOConfig(model_name_or_path="tiny:qwen2")
    assert (defaults.advantage_estimator, defaults.ratio_level, defaults.loss_type, defaults.rollout_correction) == (
        "grpo", "token", "clip", None)


@pytest.mark.gpu
def test_bf16_mismatch_is_logged_and_corrected_on_the_gpu(tmp_path):
    """On a GPU the policy runs in bf16: HF generate (KV cache, one token at a time) and the trainer's whole-
    sequence forward round differently. The mismatch must be logged, small (a wrong position would be
    nats), and TIS must leave weights near 1."""
    config = GRPOConfig(model_name_or_path=str(build("qwen2")), output_dir=str(tmp_path / "run"), batch_size=4,
                        num_generations=4, max_new_tokens=12, max_steps=2, micro_batch_size=8, learning_rate=1e-3,
                        progress_bar=False, save_steps=0, save_final=False, log_completions_steps=0, seed=0,
                        selector="uniform", rollout_correction="tis", ratio_level="sequence_token",
                        mini_batch_size=2)
    items = [text_item(100 + i, f"Add {i} and {i + 1}.", verifier="test_rl_parity") for i in range(8)]
    trainer = GRPOTrainer(config, items=items)
    assert next(trainer.unwrapped_model.parameters()).dtype == torch.bfloat16
    for _ in range(2):
        trainer.step += 1
        record = trainer.train_step()
        assert record["nan_updates"] == 0
        assert 0 < record["rollout/logprob_diff_mean"] < 0.02, record["rollout/logprob_diff_mean"]
        assert record["rollout/kl_sampler_trainer"] < 1e-3
        assert record["rollout/is_weight_mean"] == pytest.approx(1.0, abs=0.05)
