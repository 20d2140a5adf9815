"""The trainer under faults a careless user or a broken disk produces: a busy or wrong output_dir, damaged
checkpoints, diverging runs, changed settings on resume, prompts too long for the model."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from pathlib import Path

import pytest
import torch

from mmdps import checkpoint as ckpt
from mmdps import verifiers
from mmdps.config import GRPOConfig
from mmdps.trainer import GRPOTrainer, TrainingDivergedError
from mmdps.training import builders
from tiny_models import build, text_item


@verifiers.register("test_fault_parity")
def _parity(completion: str, ground_truth, **metadata) -> dict:
    good = len(completion) % 2 == 0
    return {"score": float(good), "acc": float(good), "format": 1.0}


@pytest.fixture(scope="module")
def text_model():
    return build("qwen2")


def items(n: int = 8) -> list:
    return [text_item(100 + i, f"Add {i} and {i + 1}.", verifier="test_fault_parity") for i in range(n)]


def make_config(tmp_path: Path, model: Path, **overrides) -> GRPOConfig:
    values = dict(model_name_or_path=str(model), output_dir=str(tmp_path / "run"), batch_size=4, num_generations=2,
                  max_new_tokens=4, max_steps=1, micro_batch_size=8, learning_rate=1e-3, progress_bar=False,
                  save_steps=0, seed=0, selector="dps")
    values.update(overrides)
    return GRPOConfig(**values)


def test_a_second_run_into_a_busy_output_dir_is_refused_before_the_model_loads(tmp_path, text_model):
    folder = tmp_path / "run"
    folder.mkdir()
    other = os.open(folder / ckpt.LOCK_FILE, os.O_RDWR | os.O_CREAT)  # a live run in another process
    os.write(other, json.dumps({"pid": 99, "host": "gpu-3", "started": "today"}).encode())
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        with pytest.raises(ckpt.OutputDirInUseError, match="in use by another run \\(pid 99 on host gpu-3"):
            GRPOTrainer(make_config(tmp_path, text_model), items=items())
    finally:
        os.close(other)


def test_an_output_dir_that_is_a_file_is_refused(tmp_path, text_model):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(ValueError, match="output_dir=.*run is a file, not a folder"):
        GRPOTrainer(make_config(tmp_path, text_model), items=items())


def test_verifier_errors_are_a_training_metric(tmp_path, text_model, caplog):
    from mmdps.logging_utils import read_metrics
    from mmdps.verifiers.base import never_raise

    @verifiers.register("test_fault_raises_on_odd")
    @never_raise
    def raises_on_odd(completion, ground_truth, /, **item):
        if len(completion) % 2:
            raise TypeError("unexpected field type")
        return {"score": 1.0, "acc": 1.0, "format": 1.0}

    broken = [text_item(200 + i, f"Say {i}.", verifier="test_fault_raises_on_odd") for i in range(8)]
    trainer = GRPOTrainer(make_config(tmp_path, text_model, max_steps=2), items=broken)
    with caplog.at_level("WARNING", logger="mmdps.verifiers.base"):
        trainer.train()
    records = read_metrics(tmp_path / "run")
    errors = [r["reward/verifier_errors"] for r in records]
    assert all(isinstance(e, int) for e in errors) and sum(errors) > 0
    assert all(e <= r["rollouts"] for e, r in zip(errors, records, strict=True))
    assert sum(r.name == "mmdps.verifiers.base" for r in caplog.records) == 1  # one warning per run


# ---------------------------------------------------------------------- early checks
def test_batch_size_larger_than_the_pool_fails_before_the_model_is_built(tmp_path, text_model, monkeypatch):
    monkeypatch.setattr(builders, "build_policy", lambda *args, **kwargs: pytest.fail("the model was built"))
    with pytest.raises(ValueError, match=r"batch_size=16 is larger than the training set \(8 prompts\)"):
        GRPOTrainer(make_config(tmp_path, text_model, batch_size=16), items=items())


def test_a_missing_report_to_extra_fails_before_the_model_is_built(tmp_path, text_model, monkeypatch):
    from mmdps import logging_utils

    monkeypatch.setitem(logging_utils._SINK_MODULES, "tensorboard", "mmdps_no_such_module")
    monkeypatch.setattr(builders, "build_policy", lambda *args, **kwargs: pytest.fail("the model was built"))
    with pytest.raises(ValueError, match=r"report_to includes 'tensorboard' but mmdps_no_such_module is not "
                                         r"installed: pip install 'mmdps\[tensorboard\]'"):
        GRPOTrainer(make_config(tmp_path, text_model, report_to=["tensorboard"]), items=items())


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_non_finite_learning_rate_is_refused_at_config_time(tmp_path, text_model, value):
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        make_config(tmp_path, text_model, learning_rate=value)
    with pytest.raises(ValueError, match="max_grad_norm must be a finite number"):
        make_config(tmp_path, text_model, max_grad_norm=value)


# ---------------------------------------------------------------------- long prompts
def long_prompt_items() -> list:
    return [*items(7), text_item(900, "word " * 3000 + "How many words?", verifier="test_fault_parity")]


def test_an_overlong_prompt_is_found_before_training_and_named(tmp_path, text_model):
    with pytest.raises(ValueError, match=r"1 prompt\(s\) of the training set are longer than max_prompt_length=256: "
                                         r"item 900 \(.*\d{4} tokens\); raise max_prompt_length, or set "
                                         r"long_prompts=drop"):
        GRPOTrainer(make_config(tmp_path, text_model, max_prompt_length=256), items=long_prompt_items())


def test_long_prompts_drop_leaves_them_out_and_truncate_keeps_their_end(tmp_path, text_model, caplog):
    with caplog.at_level("WARNING", logger="mmdps.trainer"):
        trainer = GRPOTrainer(make_config(tmp_path, text_model, max_prompt_length=256, long_prompts="drop"),
                              items=long_prompt_items())
    assert 900 not in trainer.item_ids and len(trainer.items) == 7
    assert "item 900" in caplog.text and "long_prompts=drop" in caplog.text
    trainer = GRPOTrainer(make_config(tmp_path, text_model, output_dir=str(tmp_path / "t"), max_prompt_length=256,
                                      long_prompts="truncate", batch_size=8), items=long_prompt_items())
    assert 900 in trainer.item_ids
    [encoded] = trainer.encoder.encode([trainer.items[-1]])
    assert len(encoded.input_ids) == 256 and encoded.text.endswith("assistant\n")
    trainer.train()  # the long prompt is selected (batch = the whole pool) and trains


# ---------------------------------------------------------------------- divergence
def test_a_huge_learning_rate_stops_with_a_clear_message_before_sampling_from_nan(tmp_path, text_model):
    trainer = GRPOTrainer(make_config(tmp_path, text_model, learning_rate=1e6, max_steps=6), items=items())
    with pytest.raises(TrainingDivergedError, match=r"step \d: the policy produced non-finite logits .* during "
                                                    r"rollout.*lower learning_rate \(now 1e\+06\)"):
        trainer.train()


def test_non_finite_weights_after_an_update_stop_the_run(tmp_path, text_model, monkeypatch):
    trainer = GRPOTrainer(make_config(tmp_path, text_model), items=items())
    step = trainer.optimizer.step

    def overflowing_step(*args, **kwargs):
        step(*args, **kwargs)
        with torch.no_grad():
            trainer.trainable[0].view(-1)[0] = float("inf")

    monkeypatch.setattr(trainer.optimizer, "step", overflowing_step)
    with pytest.raises(TrainingDivergedError, match=r"step 1: the weights became NaN/inf in the optimizer update"):
        trainer.train()


# ---------------------------------------------------------------------- changed settings on resume
def _first_run(tmp_path, text_model, **overrides):
    GRPOTrainer(make_config(tmp_path, text_model, save_steps=1, **overrides), items=items()).train()
    return ckpt.find_latest_checkpoint(tmp_path / "run")


def test_a_changed_learning_rate_is_applied_on_resume_and_recorded(tmp_path, text_model, caplog):
    _first_run(tmp_path, text_model, learning_rate=1e-3)
    with caplog.at_level("WARNING", logger="mmdps.trainer"):
        trainer = GRPOTrainer(make_config(tmp_path, text_model, learning_rate=5e-4, max_steps=2), items=items())
    assert "learning_rate 0.001 -> 0.0005" in caplog.text
    assert [group["lr"] for group in trainer.optimizer.param_groups] == [pytest.approx(5e-4)]
    assert trainer.scheduler.get_last_lr() == [pytest.approx(5e-4)]
    trainer.train()
    state = json.loads((ckpt.find_latest_checkpoint(tmp_path / "run") / "trainer_state.json").read_text())
    assert state["config"]["learning_rate"] == 5e-4
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["lr"] == pytest.approx(5e-4)


def test_changed_seed_or_selector_on_resume_is_refused_naming_the_checkpoint_and_the_way_out(tmp_path, text_model):
    checkpoint = _first_run(tmp_path, text_model)
    with pytest.raises(ValueError, match=rf"checkpoint {checkpoint} was written with other settings, which a resumed "
                                         r"run cannot change \(selector: 'dps' in the checkpoint, 'uniform' now; "
                                         r"seed: 0 in the checkpoint, 1 now\)\. To continue that run, set them back "
                                         r"\(selector=\"dps\" seed=0\); .*resume=none"):
        GRPOTrainer(make_config(tmp_path, text_model, seed=1, selector="uniform", max_steps=2), items=items())


# ---------------------------------------------------------------------- the CLI
def test_cli_yaml_syntax_error_is_one_line(tmp_path, capsys):
    from mmdps import cli

    config = tmp_path / "bad.yaml"
    config.write_text("model_name_or_path: tiny:qwen2\nselector_kwargs: {decay: 0.5\nmax_steps: 3\n")
    assert cli.main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"mmdps train: error: {config} line 3 column 10: YAML syntax error")


def test_cli_output_dir_that_is_a_file_is_one_line(tmp_path, text_model, capsys):
    from mmdps import cli

    (tmp_path / "taken").write_text("x")
    config = tmp_path / "c.yaml"
    config.write_text(f"model_name_or_path: {text_model}\noutput_dir: {tmp_path / 'taken'}\ntrain_source: null\n")
    assert cli.main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == f"mmdps train: error: output_dir={tmp_path / 'taken'} is a file, not a folder; choose another " \
                  "output_dir or move the file away\n"


def test_a_reward_function_that_does_not_read_the_asked_answer_form_stops_before_the_model(tmp_path, monkeypatch):
    """The ground-truth self-check scores the rows' own answers, written as the prompt asks (\\boxed{} for
    math), with the configured reward_function: a reward reading another form is refused before any model
    loads, naming examples; a reward that reads it trains."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(4)))
    (tmp_path / "reward.py").write_text(
        "def ends_with(completion, ground_truth, **metadata):\n"
        "    return float(completion.strip().endswith(str(ground_truth)))\n"
        "def boxed(completion, ground_truth, **metadata):\n"
        "    return float('\\\\boxed{%s}' % ground_truth in completion)\n")
    monkeypatch.setattr(builders, "build_policy", lambda *args, **kwargs: pytest.fail("the model was built"))
    config = GRPOConfig(model_name_or_path="tiny:qwen2", task="math", train_source=str(rows),
                        reward_function=f"{tmp_path / 'reward.py'}:ends_with", output_dir=str(tmp_path / "run"),
                        batch_size=2, num_generations=2, max_new_tokens=8, progress_bar=False)
    with pytest.raises(ValueError, match=r"(?s)4 of 4 sampled items are not rewarded as correct.*ground truth '1'"):
        GRPOTrainer(config)
    ok = dataclasses.replace(config, reward_function=f"{tmp_path / 'reward.py'}:boxed",
                             output_dir=str(tmp_path / "run2"))
    with pytest.raises(pytest.fail.Exception, match="the model was built"):  # past the check, at the model
        GRPOTrainer(ok)
