"""SIGTERM (preemption) stops a run after the step in progress with a checkpoint and exit status 0, and
``resume=auto`` then finishes it as if nothing had happened; under several processes all stop at one step."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from mmdps import verifiers
from mmdps.checkpoint import find_latest_checkpoint
from mmdps.config import GRPOConfig
from mmdps.eval import evaluate_items
from mmdps.logging_utils import read_metrics
from mmdps.rollout.base import SamplingParams
from mmdps.trainer import GRPOTrainer
from mmdps.training.collectives import gather_with_timeout
from resume_harness import assert_same_metrics
from tiny_models import build, text_item
from two_processes import run_two

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny" / "countdown_dps.yaml"
MAX_STEPS = 4


def _items(n: int = 6) -> list:
    return [text_item(100 + i, f"Add {i} and {i + 1}.", verifier="math") for i in range(n)]


def _config(output_dir: Path, **overrides) -> GRPOConfig:
    values = dict(model_name_or_path=str(build("qwen2")), output_dir=str(output_dir), batch_size=2, num_generations=2,
                  max_new_tokens=4, max_steps=3, micro_batch_size=8, progress_bar=False, save_steps=0,
                  log_completions_steps=0, seed=0, selector="dps")
    values.update(overrides)
    return GRPOConfig(**values)


class _SignalAt:
    """A callback that sends this process SIGTERM once step ``step`` has ended."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, metrics) -> None:
        if trainer.step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_puts_the_handler_back(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    trainer = GRPOTrainer(_config(tmp_path, collective_timeout_s=77), items=_items())
    assert trainer.accelerator.init_handler.timeout == timedelta(seconds=77)  # the process group's timeout
    trainer.train(callbacks=[_SignalAt(1)])
    assert (trainer.step, trainer.stopped_by_signal) == (1, "SIGTERM")
    assert find_latest_checkpoint(tmp_path).name == "checkpoint-000001"  # save_steps=0: saved for the signal
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]
    assert signal.getsignal(signal.SIGTERM) is before


def _train(output_dir: Path) -> list[str]:
    return [sys.executable, "-m", "mmdps", "train", "--config", str(TINY_CONFIG), f"output_dir={output_dir}",
            f"max_steps={MAX_STEPS}", "save_steps=0", "logging_steps=1", "log_completions_steps=0",
            "progress_bar=false"]


@pytest.mark.slow
def test_sigterm_to_mmdps_train_exits_0_with_a_checkpoint_and_resume_auto_finishes_like_an_uninterrupted_run(
        tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    full = subprocess.run(_train(tmp_path / "full"), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]

    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train(cut), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    output = []
    assert proc.stdout is not None
    for line in proc.stdout:
        output.append(line)
        if line.startswith("step 1/"):  # the first step is logged: preempt the run
            proc.send_signal(signal.SIGTERM)
            break
    output.append(proc.communicate(timeout=120)[0])
    text = "".join(output)
    assert proc.returncode == 0, text[-3000:]
    reached = read_metrics(cut)[-1]["step"]
    assert 1 <= reached < MAX_STEPS, text[-3000:]
    assert f"stopped by SIGTERM at step {reached} of {MAX_STEPS}" in text
    assert find_latest_checkpoint(cut).name == f"checkpoint-{reached:06d}"

    resumed = subprocess.run(_train(cut), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {reached} of {MAX_STEPS})" in resumed.stdout
    assert_same_metrics(read_metrics(tmp_path / "full"), read_metrics(cut))


# ---------------------------------------------------------------------- two processes (gloo)
@verifiers.register("test_preemption_parity")
def _parity(completion: str, ground_truth, **metadata) -> dict:
    good = len(completion) % 2 == 0
    return {"score": float(good), "acc": float(good), "format": 1.0}


def _as_rank(rank: int, port: int) -> None:
    """Make this process rank ``rank`` of 2 for accelerate (what ``accelerate launch`` sets)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch

    torch.set_num_threads(1)


def _parity_items() -> list:
    return [dataclasses.replace(item, verifier="test_preemption_parity") for item in _items()]


def _rank_main(rank: int, port: int, model: str, output_dir: str, results) -> None:
    """One process of a 2-process CPU run: the sharded evaluation against the whole one on this process, then
    training (with its evaluation, sharded too) where only rank 1 receives SIGTERM (after step 1)."""
    _as_rank(rank, port)
    try:
        config = _config(Path(output_dir), model_name_or_path=model, max_steps=4, collective_timeout_s=60,
                         eval_steps=1, eval_num_samples=2, eval_max_new_tokens=4)
        items = _parity_items()
        trainer = GRPOTrainer(config, items=items, eval_items=items[:3])
        sampling = SamplingParams(max_new_tokens=6, temperature=1.0, seed=3)
        ranks = trainer.accelerator.num_processes
        sharded = evaluate_items(trainer.engine, items[:5], n=2, sampling=sampling, batch_size=2, progress=False,
                                 shard=(rank, ranks), gather=lambda part: gather_with_timeout(part, 60, "eval"))
        whole = evaluate_items(trainer.engine, items[:5], n=2, sampling=sampling, batch_size=2, progress=False)
        last = trainer.train(callbacks=[_SignalAt(1)] if rank == 1 else [])
        results.put((rank, dict(ranks=ranks, step=trainer.step, signal=trainer.stopped_by_signal,
                                evaluated="eval/mean_at_n" in last,
                                same_samples=sharded.samples == whole.samples,
                                same_problems=sharded.problems == whole.problems,
                                processes=sharded.report["timing"]["processes"])))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((rank, {"error": f"{type(exc).__name__}: {exc}"}))


@pytest.mark.slow
def test_two_processes_stop_at_the_same_step_when_one_gets_sigterm_and_shard_the_evaluation(tmp_path):
    reports = run_two(_rank_main, (str(build("qwen2")), str(tmp_path / "run")))
    for rank in (0, 1):
        assert reports[rank] == dict(ranks=2, step=1, signal="SIGTERM", evaluated=rank == 0, same_samples=True,
                                     same_problems=True, processes=2), reports
    assert find_latest_checkpoint(tmp_path / "run").name == "checkpoint-000001"


class _HangAt:
    """A callback that hangs (a stuck generate, a deadlocked plug-in) once step ``step`` has ended."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, metrics) -> None:
        if trainer.step == self.step:
            time.sleep(120)


def _hang_main(rank: int, port: int, model: str, output_dir: str, results) -> None:
    """Rank 1 hangs after step 1; rank 0 must fail in the next collective, naming itself and the collective."""
    _as_rank(rank, port)
    ended = []

    class StepEnded:
        def on_step_end(self, trainer, metrics) -> None:
            ended.append(time.monotonic())

    try:
        config = _config(Path(output_dir), model_name_or_path=model, max_steps=3, collective_timeout_s=10)
        trainer = GRPOTrainer(config, items=_parity_items())
        trainer.train(callbacks=[_HangAt(1)] if rank == 1 else [StepEnded()])
        results.put((rank, ("returned", "", 0.0)))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((rank, (type(exc).__name__, str(exc), time.monotonic() - ended[-1] if ended else -1.0)))


@pytest.mark.slow
def test_a_rank_that_hangs_makes_the_other_fail_naming_its_rank_and_the_collective_within_the_timeout(tmp_path):
    reports = run_two(_hang_main, (str(build("qwen2")), str(tmp_path / "run")), expect={0})
    kind, message, waited = reports[0]
    assert kind == "CollectiveError", reports
    assert message.startswith("rank 0 of 2: step 1: agreeing whether to stop "), message
    assert "collective_timeout_s=10" in message
    assert 0 <= waited < 10 + 10, waited  # the process group's timeout, not the watchdog's exit 60 s later
