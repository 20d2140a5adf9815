"""The trainer under faults a careless user or a broken disk produces: a busy or wrong output_dir, damaged
checkpoints, diverging runs, changed settings on resume, prompts too long for the model."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from mmdps import checkpoint as ckpt
from mmdps import verifiers
from mmdps.config import GRPOConfig
from mmdps.trainer import GRPOTrainer
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
