"""Checkpoint faults and resume timelines: incomplete checkpoints, a full disk or no permission during a save,
leftovers of a failed save at start-up, an unwritable output_dir, and a resumed run owning its timeline."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from mmdps import checkpoint as ckpt
from mmdps import run_lock
from mmdps.logging_utils import read_metrics
from mmdps.models.loading import load_policy
from mmdps.selection import make_selector
from tiny_models import build


@pytest.fixture(scope="module")
def save_args():
    model, processor = load_policy(build("qwen2"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return dict(model=model, optimizer=optimizer, scheduler=scheduler, selector=make_selector("uniform", 4),
                item_ids=[0, 1, 2, 3])


def save(output_dir, step, save_args, **state):
    return ckpt.save_checkpoint(output_dir, step, trainer_state=state, **save_args)


# ---------------------------------------------------------------------- incomplete checkpoints
def test_a_stray_folder_with_only_trainer_state_is_skipped_by_auto_resume_with_a_warning(tmp_path, save_args):
    good = save(tmp_path, 2, save_args)
    stray = ckpt.checkpoint_root(tmp_path) / "checkpoint-9"
    stray.mkdir()
    (stray / "trainer_state.json").write_text(json.dumps({"step": 9}))
    with pytest.warns(UserWarning, match=rf"skipped damaged checkpoint\(s\): {stray}: .*manifest\.json is missing"):
        assert ckpt.resolve_resume("auto", tmp_path) == good


# ---------------------------------------------------------------------- a save that fails
def _fail_with(error):
    def writer(*args, **kwargs):
        raise error
    return writer


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (PermissionError(errno.EACCES, "Permission denied"), "no permission"),
])
def test_a_save_that_hits_a_full_disk_or_no_permission_removes_its_folder_and_names_it(tmp_path, save_args,
                                                                                        monkeypatch, error, reason):
    previous = save(tmp_path, 1, save_args)
    monkeypatch.setattr(ckpt, "save_selector_state", _fail_with(error))
    root = ckpt.checkpoint_root(tmp_path)
    with pytest.raises(ckpt.CheckpointSaveError, match=rf"^cannot save checkpoint {root}/checkpoint-000002: "
                                                       rf"{reason} .*the partial folder {root}/\.tmp-checkpoint-000002 "
                                                       r"was removed\. Free space .*resume=auto"):
        save(tmp_path, 2, save_args)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-000001"]  # nothing partial left behind
    assert ckpt.resolve_resume("auto", tmp_path) == previous


def test_a_torch_write_error_without_errno_on_a_nearly_full_disk_is_reported_as_a_full_disk(tmp_path, save_args,
                                                                                           monkeypatch):
    # torch.save reports ENOSPC as "RuntimeError: ... file write failed", without the errno.
    monkeypatch.setattr(ckpt.torch, "save", _fail_with(RuntimeError("PytorchStreamWriter failed writing file")))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda path: usage(10 << 30, (10 << 30) - (5 << 20), 5 << 20))
    with pytest.raises(ckpt.CheckpointSaveError, match=r"the disk is full \(5 MiB free\) \(RuntimeError: "
                                                       r"PytorchStreamWriter"):
        save(tmp_path, 1, save_args)
    assert list(ckpt.checkpoint_root(tmp_path).iterdir()) == []


def test_any_other_save_error_is_raised_as_it_is_and_the_partial_folder_removed(tmp_path, save_args, monkeypatch):
    monkeypatch.setattr(ckpt, "save_selector_state", _fail_with(ValueError("selector state is not serialisable")))
    with pytest.raises(ValueError, match="^selector state is not serialisable$"):
        save(tmp_path, 1, save_args)
    assert list(ckpt.checkpoint_root(tmp_path).iterdir()) == []


def test_leftovers_of_an_unfinished_save_are_removed_at_start_up_with_a_warning(tmp_path):
    root = ckpt.checkpoint_root(tmp_path)
    for name in (".tmp-checkpoint-000004", ".old-checkpoint-000002"):
        (root / name / "model").mkdir(parents=True)
        (root / name / "model" / "model.safetensors").write_bytes(b"x" * 100)
    with pytest.warns(UserWarning, match=r"removed 2 folder\(s\) left by an unfinished checkpoint save \(a crash or a "
                                         r"full disk\): .*\.tmp-checkpoint-000004, .*\.old-checkpoint-000002"):
        lock = ckpt.lock_output_dir(tmp_path)
    lock.release()
    assert list(root.iterdir()) == []


# ---------------------------------------------------------------------- an unwritable output_dir
def test_an_output_dir_that_cannot_be_created_or_written_is_a_clear_error(tmp_path, monkeypatch):
    real_mkdir, real_open = Path.mkdir, os.open
    blocked = tmp_path / "readonly"

    def mkdir(self, *args, **kwargs):
        if self == blocked / "run":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    def open_(path, *args, **kwargs):
        if Path(path).parent == blocked:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    blocked.mkdir()
    monkeypatch.setattr(Path, "mkdir", mkdir)  # root ignores chmod, so the refusals are simulated
    monkeypatch.setattr(run_lock.os, "open", open_)
    with pytest.raises(ckpt.OutputDirError, match=rf"^output_dir={blocked}/run cannot be created \(no permission: "
                                                  rf"{blocked}/run\); choose a folder you can write to"):
        ckpt.lock_output_dir(blocked / "run")
    with pytest.raises(ckpt.OutputDirError, match=rf"^output_dir={blocked} is not writable \(a read-only file system: "
                                                  rf"cannot create {blocked}/\.mmdps-run\.lock\)"):
        ckpt.lock_output_dir(blocked)


# ---------------------------------------------------------------------- a resumed run owns its timeline
def _log_metrics(output_dir, steps, timeline):
    with open(Path(output_dir) / "metrics.jsonl", "a") as handle:
        for step in steps:
            handle.write(json.dumps({"step": step, "timeline": timeline}) + "\n")


def test_resuming_from_an_earlier_checkpoint_abandons_the_later_ones_and_their_metrics(tmp_path, save_args, caplog):
    for step in (1, 2, 3, 4):
        save(tmp_path, step, save_args, timeline="old")
    _log_metrics(tmp_path, [1, 2, 3, 4, 5], "old")  # the old run died at step 5, after checkpoint 4
    (tmp_path / "samples").mkdir()
    for step in (2, 4):
        (tmp_path / "samples" / f"step_{step:04d}.jsonl").write_text("{}\n")
    root = ckpt.checkpoint_root(tmp_path)

    # Recovery: resume from checkpoint 2 (say with a lower learning rate).
    resumed = ckpt.resolve_resume(str(root / "checkpoint-000002"), tmp_path)
    with caplog.at_level(logging.WARNING, logger="mmdps.checkpoint"):
        moved = ckpt.adopt_timeline(tmp_path, resumed)
    abandoned = root / "abandoned-000002"
    assert moved == [abandoned / "checkpoint-000003", abandoned / "checkpoint-000004"]
    assert all(ckpt.verify_checkpoint(path) == [] for path in moved)  # kept intact, for inspection
    assert (abandoned / "samples" / "step_0004.jsonl").is_file()
    assert (tmp_path / "samples" / "step_0002.jsonl").is_file()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    assert "checkpoint-000003, checkpoint-000004 and 1 sample file(s) belong to the abandoned run" in caplog.text
    assert "removed the metrics of steps 3-5" in caplog.text
    assert [step for step, _ in ckpt.list_checkpoints(tmp_path)] == [1, 2]

    # The new run saves step 3 and stops; a rerun with resume=auto continues the new timeline.
    save(tmp_path, 3, save_args, timeline="new")
    _log_metrics(tmp_path, [3], "new")
    latest = ckpt.resolve_resume("auto", tmp_path)
    assert latest == root / "checkpoint-000003" and ckpt.read_trainer_state(latest)["timeline"] == "new"
    assert ckpt.adopt_timeline(tmp_path, latest) == []  # the newest: nothing to abandon, nothing to cut
    assert [(r["step"], r["timeline"]) for r in read_metrics(tmp_path)] == [(1, "old"), (2, "old"), (3, "new")]

    # Branching from step 2 again keeps the first abandoned timeline and opens a second folder.
    moved = ckpt.adopt_timeline(tmp_path, root / "checkpoint-000002")
    assert moved == [root / "abandoned-000002-2" / "checkpoint-000003"]
    assert sorted(p.name for p in root.iterdir()) == ["abandoned-000002", "abandoned-000002-2", "checkpoint-000001",
                                                      "checkpoint-000002"]
    shutil.rmtree(root / "abandoned-000002")  # deleting an abandoned timeline by hand is fine
    assert ckpt.find_latest_checkpoint(tmp_path) == root / "checkpoint-000002"


@pytest.mark.slow  # a whole (tiny) training run through the command line
def test_mmdps_train_reports_a_full_disk_during_a_save_in_one_line(tmp_path, monkeypatch, capsys):
    from mmdps import cli

    monkeypatch.setattr(ckpt, "save_selector_state", _fail_with(OSError(errno.ENOSPC, "No space left on device")))
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "countdown_dps.yaml"
    code = cli.main(["train", "--config", str(config), f"output_dir={tmp_path}", "max_steps=1", "save_steps=1",
                     "progress_bar=false", "task_options.num=8", "log_completions_steps=0"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"mmdps train: error: cannot save checkpoint {tmp_path}/checkpoints/checkpoint-000001: the "
                          "disk is full")
    assert list(ckpt.checkpoint_root(tmp_path).iterdir()) == []
