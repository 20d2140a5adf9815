"""The GRPO loop on CPU with tiny models: text and VL steps, every selector, DS accounting, resume after a
crash, bad data, NaN handling and the tiny CLI config.

Random tiny models never solve real tasks, so most tests score completions with a test verifier
whose verdict depends on the completion's length parity: groups then have reward variance and the
policy gradient is non-zero.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmdps import cli, tasks, verifiers
from mmdps.config import GRPOConfig
from mmdps.logging_utils import read_metrics
from mmdps.trainer import GRPOTrainer, RolloutBudget, TrainingDivergedError
from resume_harness import assert_same_metrics, crash_then_resume
from tiny_models import build, text_item

REPO = Path(__file__).resolve().parents[1]

REQUIRED_METRICS = {
    "step", "prompts_selected", "prompts_generated", "rollouts", "rollouts_total", "tokens_generated",
    "reward_mean", "acc_mean", "zero_variance_share", "effective_ratio", "loss", "pg_loss", "grad_norm", "lr",
    "clip_frac", "entropy", "time/select", "time/rollout", "time/reward", "time/train", "selector/steps",
    "prompts/distinct_total", "prompts/repeat_share", "prompts/mean_visits", "informative_token_share",
}


@verifiers.register("test_parity")
def _parity(completion: str, ground_truth, **metadata) -> dict:
    """1 for an even number of characters; items with ``metadata['solved']`` always score 1."""
    good = bool(metadata.get("solved")) or len(completion) % 2 == 0
    return {"score": float(good), "acc": float(good), "format": 1.0}


@pytest.fixture(scope="module")
def text_model():
    return build("qwen2")


@pytest.fixture(scope="module")
def vl_model():
    return build("qwen2.5-vl")


def parity_items(n: int, solved: int = 0) -> list:
    """``n`` short text prompts scored by parity; the first ``solved`` always succeed (zero variance)."""
    return [text_item(100 + i, f"Add {i} and {i + 1}.", verifier="test_parity",
                      metadata={"solved": i < solved}) for i in range(n)]


def make_config(tmp_path: Path, model: Path, **overrides) -> GRPOConfig:
    values = dict(model_name_or_path=str(model), output_dir=str(tmp_path / "run"), batch_size=4, num_generations=4,
                  max_new_tokens=8, max_steps=2, micro_batch_size=8, learning_rate=1e-3, progress_bar=False,
                  save_steps=0, log_completions_steps=1, num_completions_to_log=3, seed=0, selector="dps")
    values.update(overrides)
    return GRPOConfig(**values)


def weights(trainer: GRPOTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.unwrapped_model.state_dict().items()}


def test_text_step_logs_everything_and_updates_the_model(tmp_path, text_model):
    items = tasks.get("countdown").load(None, split="tiny", num=8, seed=0)
    items = [dataclasses.replace(item, verifier="test_parity") for item in items]
    trainer = GRPOTrainer(make_config(tmp_path, text_model, max_steps=1), items=items)
    before = weights(trainer)
    trainer.train()
    [record] = read_metrics(tmp_path / "run")
    assert REQUIRED_METRICS <= record.keys()
    assert (record["step"], record["prompts_selected"], record["rollouts"]) == (1, 4, 16)
    assert record["rollouts_total"] == 16 and record["tokens_generated"] > 0 and record["nan_updates"] == 0
    assert 0 <= record["zero_variance_share"] <= 1 and record["entropy"] > 0
    changed = [k for k, v in weights(trainer).items() if not torch.equal(v, before[k])]
    assert changed, "the optimizer step changed no weight"
    samples = (tmp_path / "run" / "samples" / "step_0001.jsonl").read_text().splitlines()
    assert len(samples) == 3 and {"prompt", "completion", "score", "acc"} <= json.loads(samples[0]).keys()
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-000001" / "trainer_state.json").is_file()
    # the DPS predictor, visible: its Brier score per step and the reliability diagram in the run folder
    assert 0 <= record["selector/brier"] <= 2 and (tmp_path / "run" / "selection.png").stat().st_size > 0


def _geometry_rows(folder: Path, n: int, missing: int | None = None) -> Path:
    rows = []
    for i in range(n):
        name = f"diagram{i}.png"
        if i != missing:
            Image.new("RGB", (40 + 8 * i, 48), (30 * i % 255, 90, 160)).save(folder / name)
        rows.append({"problem": f"Find x in triangle {i}.", "answer": str(i + 2), "images": [name]})
    path = folder / "geo.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_vl_step_with_images(tmp_path, vl_model):
    items = tasks.get("geometry").load(_geometry_rows(tmp_path, 4))
    assert all(len(item.images) == 1 for item in items)
    items = [dataclasses.replace(item, verifier="test_parity") for item in items]
    trainer = GRPOTrainer(make_config(tmp_path, vl_model, max_steps=1, batch_size=2, num_generations=4,
                                      micro_batch_size=4), items=items)
    assert trainer.is_vl
    before = weights(trainer)
    trainer.train()
    [record] = read_metrics(tmp_path / "run")
    assert record["rollouts"] == 8 and record["nan_updates"] == 0 and np.isfinite(record["loss"])
    # The seeded sampling gives a group with both parities; without one there would be no gradient to check.
    assert record["effective_ratio"] > 0, "no informative group: change the seed or num_generations"
    assert any(not torch.equal(v, before[k]) for k, v in weights(trainer).items())


def test_missing_image_row_is_named(tmp_path, vl_model):
    source = _geometry_rows(tmp_path, 3, missing=1)
    config = make_config(tmp_path, vl_model, task="geometry", train_source=str(source))
    with pytest.raises(ValueError, match=r"geo\.jsonl (line|row) 2\b.*diagram1\.png"):
        GRPOTrainer(config)


@pytest.mark.parametrize("selector", ["uniform", "ds", "mopps", "dps"])
def test_every_selector_runs_two_steps(tmp_path, text_model, selector):
    kwargs = {"ds": {"oversample": 1.0, "max_rounds": 2}, "mopps": {"candidate_ratio": 2.0}}.get(selector, {})
    config = make_config(tmp_path, text_model, selector=selector, selector_kwargs=kwargs, batch_size=2,
                         num_generations=2, max_steps=2, log_completions_steps=0, save_final=False)
    trainer = GRPOTrainer(config, items=parity_items(6))
    trainer.train()
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2]
    assert trainer.selector.steps >= 2 and records[-1]["selector/steps"] == trainer.selector.steps
    assert all(r["prompts_selected"] <= 2 for r in records)


def test_dynamic_sampling_counts_every_refill(tmp_path, text_model):
    # Half the prompts are always solved (zero variance): DS rejects them and refills.
    config = make_config(tmp_path, text_model, selector="ds", selector_kwargs={"oversample": 1.0, "max_rounds": 3},
                         batch_size=3, num_generations=4, max_steps=2, log_completions_steps=0)
    trainer = GRPOTrainer(config, items=parity_items(12, solved=6))
    trainer.train()
    records = read_metrics(tmp_path / "run")
    for record in records:
        assert record["rollouts"] == record["prompts_generated"] * 4
        assert record["prompts_generated"] == record["rollout_rounds"] * 3
        assert record["prompts_selected"] <= 3
        if record["prompts_selected"]:
            assert record["effective_ratio"] == 1.0  # only groups with 0 < success < 1 are admitted
    assert any(r["prompts_selected"] for r in records), "DS admitted no group: the check above never ran"
    assert any(r["rollout_rounds"] > 1 for r in records)
    total = sum(r["rollouts"] for r in records)
    assert records[-1]["rollouts_total"] == total
    assert trainer.selector.diagnostics()["rollouts_spent"] == total


def test_resume_after_crash_continues_like_the_uninterrupted_run(tmp_path, text_model, monkeypatch):
    # candidate_ratio 1.5: 3 candidates per step from 6 prompts, so the candidate pass restarts across the
    # checkpoint and a resumed run must continue the same shuffled order.
    settings = dict(batch_size=2, num_generations=2, max_steps=4, save_steps=2, log_completions_steps=0,
                    selector="dps", candidate_ratio=1.5)
    items = parity_items(6)
    full = GRPOTrainer(make_config(tmp_path / "a", text_model, **settings), items=items)
    full.train()

    crashed_dir = tmp_path / "b"
    resumed = crash_then_resume(monkeypatch, lambda: GRPOTrainer(make_config(crashed_dir, text_model, **settings),
                                                                 items=items), crash_at=3)
    assert resumed.step == 2 and resumed.resume_from.name == "checkpoint-000002"
    resumed.train()
    assert resumed.step == 4
    expected, got = full.selector.state_dict(), resumed.selector.state_dict()
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(got[key], value, err_msg=key)
        else:
            assert got[key] == value, key
    np.testing.assert_array_equal(resumed.selector.select(2), full.selector.select(2))
    assert [r["step"] for r in read_metrics(crashed_dir / "run")] == [1, 2, 3, 4]
    assert_same_metrics(read_metrics(tmp_path / "a" / "run"), read_metrics(crashed_dir / "run"))


def test_resume_onto_other_data_is_refused(tmp_path, text_model):
    config = make_config(tmp_path, text_model, batch_size=2, num_generations=2, max_steps=1,
                         log_completions_steps=0)
    GRPOTrainer(config, items=parity_items(6)).train()
    with pytest.raises(ValueError, match="different training set"):
        GRPOTrainer(dataclasses.replace(config, max_steps=2), items=parity_items(7))
    # the same ids (row numbers of a file without an id column) over reordered prompts: refused too
    items = parity_items(6)
    reordered = [dataclasses.replace(a, messages=b.messages) for a, b in zip(items, items[::-1], strict=True)]
    with pytest.raises(ValueError, match=r"same ids, but the prompt at position 0 \(id 100\) has other content"):
        GRPOTrainer(dataclasses.replace(config, max_steps=2), items=reordered)
    GRPOTrainer(dataclasses.replace(config, max_steps=2, output_dir=str(tmp_path / "run")), items=items)  # same data


def test_nan_loss_skips_the_update_then_stops(tmp_path, text_model, monkeypatch):
    import mmdps.rl
    import mmdps.rl.objective

    real_loss = mmdps.rl.policy_loss

    def nan_loss(*args, **kwargs):
        loss, stats = real_loss(*args, **kwargs)
        return loss * float("nan"), stats

    monkeypatch.setattr(mmdps.rl.objective, "policy_loss", nan_loss)
    config = make_config(tmp_path, text_model, batch_size=2, num_generations=2, max_steps=5, max_consecutive_nan=2,
                         log_completions_steps=0)
    trainer = GRPOTrainer(config, items=parity_items(6))
    before = weights(trainer)
    with pytest.raises(TrainingDivergedError, match="NaN/inf in 2 consecutive steps"):
        trainer.train()
    [record] = read_metrics(tmp_path / "run")
    assert record["step"] == 1 and record["nan_updates"] == 1
    assert all(torch.equal(v, before[k]) for k, v in weights(trainer).items())


def test_tiny_cli_config_builds_its_model_and_trains(tmp_path):
    out = tmp_path / "cli"
    code = cli.main(["train", "--config", str(REPO / "configs" / "tiny" / "countdown_dps.yaml"), "max_steps=1",
                     f"output_dir={out}", "progress_bar=false", "batch_size=2", "num_generations=2"])
    assert code == 0
    assert (out / "tiny-model" / "qwen2" / "config.json").is_file()
    assert [r["step"] for r in read_metrics(out)] == [1]


def test_lora_kl_reference_ppo_epochs_and_eval(tmp_path, text_model):
    # LoRA (the reference is the base with adapters off), KL loss, two mini-batches x two epochs (old
    # log-probs from a no-grad pass, so ratios move and clipping is measured), eval every step.
    config = make_config(tmp_path, text_model, use_lora=True, lora_r=4, lora_alpha=8, beta=0.05, batch_size=2,
                         num_generations=2, mini_batch_size=1, ppo_epochs=2, micro_batch_size=2, max_steps=1,
                         learning_rate=5e-2, eval_steps=1, eval_num_samples=2, gradient_checkpointing=True,
                         overlong_buffer_len=4, mask_truncated_completions=True, log_completions_steps=0)
    trainer = GRPOTrainer(config, items=parity_items(4), eval_items=parity_items(2))
    assert trainer.ref_model is None and trainer.updates_per_step == 4
    trainer.train()
    [record] = read_metrics(tmp_path / "run")
    assert {"kl", "clip_frac", "ratio_max", "eval/mean_at_n"} <= record.keys()
    assert record["kl"] >= 0 and 0 <= record["eval/mean_at_n"] <= 1
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-000001" / "model" / "adapter_model.safetensors").is_file()


def test_vllm_engine_path_with_the_cpu_stand_in(tmp_path, text_model):
    # The trainer builds the vLLM engine (model_path, completion budget, seed) and syncs weights after
    # each optimizer step; vLLM itself is replaced by tests/fake_vllm.py.
    from fake_vllm import FakeLLM, FakeSamplingParams

    config = make_config(tmp_path, text_model, engine="vllm", batch_size=2, num_generations=2, max_steps=2,
                         log_completions_steps=0,
                         engine_kwargs={"llm_factory": FakeLLM, "sampling_cls": FakeSamplingParams})
    trainer = GRPOTrainer(config, items=parity_items(4))
    trainer.train()
    llm = trainer.engine.llm
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2]
    assert llm.model.weight_version >= 3  # initial sync + one per step


def test_data_diagnostics_and_candidate_batches(tmp_path, text_model):
    """prompts/* count what entered the training batches; with candidate_ratio the batch comes from the
    candidate pass, and the config's ratio reaches the selector."""
    config = make_config(tmp_path, text_model, batch_size=2, num_generations=2, max_steps=3, log_completions_steps=0,
                         candidate_ratio=2.0)
    trainer = GRPOTrainer(config, items=parity_items(8))
    assert trainer.selector.candidate_ratio == 2.0
    batches = []
    real = trainer.selector.record_trained
    trainer.selector.record_trained = lambda ids: (batches.append(ids.copy()), real(ids))
    trainer.train()
    records = read_metrics(tmp_path / "run")
    seen: set[int] = set()
    for step, (record, ids) in enumerate(zip(records, batches, strict=True), start=1):
        earlier = {int(i) for b in batches[: step - 1] for i in b}
        assert record["prompts/repeat_share"] == np.mean([int(i) in earlier for i in ids])
        seen |= {int(i) for i in ids}
        assert record["prompts/distinct_total"] == len(seen)
        assert record["prompts/mean_visits"] == pytest.approx(2 * step / len(seen))
    # 4 candidates per step from shuffled passes of 8: steps 1 and 2 split the first pass (disjoint
    # batches), step 3 starts the second pass and picks from its first 4 prompts.
    order = trainer.selector.candidate_sampler
    assert (order.epoch, order.position) == (2, 4)
    assert not set(batches[0].tolist()) & set(batches[1].tolist())
    assert set(batches[2].tolist()) <= set(order.order[:4].tolist())
    with pytest.raises(ValueError, match="does not rank candidates"):
        GRPOTrainer(make_config(tmp_path / "u", text_model, selector="uniform", candidate_ratio=2.0),
                    items=parity_items(8))


def test_train_stops_at_a_rollout_budget_and_calls_back_after_each_step(tmp_path, text_model):
    """The loop the demo and the benchmarks need: a stop condition and per-step callbacks, no hand-set step."""
    config = make_config(tmp_path, text_model, max_steps=50, selector="uniform", log_completions_steps=0)
    trainer = GRPOTrainer(config, items=parity_items(8))
    seen: list[tuple[int, int, float]] = []

    class Spy:
        def on_step_end(self, trainer: GRPOTrainer, metrics: dict) -> None:
            seen.append((trainer.step, trainer.rollouts_total, metrics["reward_mean"]))

    per_step = config.batch_size * config.num_generations
    last = trainer.train(stop=RolloutBudget(2 * per_step + 1), callbacks=[Spy()])
    assert trainer.step == 3 and trainer.rollouts_total == 3 * per_step  # asked before each step: 3 steps
    assert [(step, rollouts) for step, rollouts, _ in seen] == [(s, s * per_step) for s in (1, 2, 3)]
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3]  # logged before the callbacks ran
    assert [r["reward_mean"] for r in records] == [reward for *_, reward in seen]
    assert last["rollouts_total"] == 3 * per_step  # train() returns the last step's metrics
    # a stop condition that holds at once runs no step
    assert trainer.train(stop=lambda t: True) == {} and trainer.step == 3

