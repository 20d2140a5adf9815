"""Checkpoints: atomic writes, pruning, newest-complete discovery, full state round trip, dataset check."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mmdps import checkpoint as ckpt
from mmdps.models.loading import apply_lora, load_policy
from mmdps.selection import make_selector
from tiny_models import build


@pytest.fixture(scope="module")
def model_path():
    return build("qwen2")


def _training_state(model_path, seed=0):
    torch.manual_seed(seed)
    model, processor = load_policy(model_path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    selector = make_selector("dps", 10, seed=seed)
    return model, processor, optimizer, scheduler, selector


def _train_a_little(model, optimizer, scheduler, selector):
    ids = torch.tensor([[1, 2, 3, 4]])
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    chosen = selector.select(3)
    selector.update(chosen, np.array([0.0, 0.5, 1.0]))


def test_save_load_round_trip(tmp_path, model_path):
    model, processor, optimizer, scheduler, selector = _training_state(model_path)
    _train_a_little(model, optimizer, scheduler, selector)
    item_ids = list(range(100, 110))
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    path = ckpt.save_checkpoint(tmp_path, 3, model=model, optimizer=optimizer, scheduler=scheduler, selector=selector,
                                item_ids=item_ids, trainer_state={"rollouts_total": 24}, processor=processor)
    expected_draws = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert path.name == "checkpoint-000003" and ckpt.find_latest_checkpoint(tmp_path) == path
    assert (path / "model" / "config.json").is_file() and (path / "model" / "tokenizer_config.json").is_file()
    assert not list(path.parent.glob(".tmp-*"))

    fresh_model, _, fresh_opt, fresh_sched, fresh_selector = _training_state(model_path, seed=1)
    ckpt.load_model_weights(path, fresh_model)
    state = ckpt.load_checkpoint(path, optimizer=fresh_opt, scheduler=fresh_sched, selector=fresh_selector,
                                 item_ids=item_ids)
    assert state["step"] == 3 and state["rollouts_total"] == 24
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected_draws
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert fresh_sched.last_epoch == scheduler.last_epoch
    saved_opt, loaded_opt = optimizer.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert saved_opt.keys() == loaded_opt.keys()
    assert all(torch.equal(saved_opt[k]["exp_avg"], loaded_opt[k]["exp_avg"]) for k in saved_opt)
    original, restored = selector.state_dict(), fresh_selector.state_dict()
    for key, value in original.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, restored[key], err_msg=key)
        else:
            assert value == restored[key], key
    np.testing.assert_array_equal(selector.select(4), fresh_selector.select(4))


def test_resume_onto_another_dataset_is_refused(tmp_path, model_path):
    model, processor, optimizer, scheduler, selector = _training_state(model_path)
    path = ckpt.save_checkpoint(tmp_path, 1, model=model, optimizer=optimizer, scheduler=scheduler, selector=selector,
                                item_ids=list(range(10)), trainer_state={})
    with pytest.raises(ValueError, match="different training set.*position 3 holds id 3"):
        ckpt.check_dataset(path, [0, 1, 2, 99, 4, 5, 6, 7, 8, 9])
    with pytest.raises(ValueError, match="10 items vs 11 now"):
        ckpt.load_checkpoint(path, optimizer=optimizer, scheduler=scheduler, selector=selector,
                             item_ids=list(range(11)))


def test_atomicity_pruning_and_discovery(tmp_path, model_path):
    model, _, optimizer, scheduler, selector = _training_state(model_path)
    assert ckpt.resolve_resume("auto", tmp_path) is None
    save = dict(model=model, optimizer=optimizer, scheduler=scheduler, selector=selector, item_ids=[0, 1],
                trainer_state={}, keep_last=2)
    for step in (1, 2):
        ckpt.save_checkpoint(tmp_path, step, **save)
    # A crash mid-save leaves a hidden temporary folder, and a folder without trainer_state.json is
    # incomplete: neither counts as a checkpoint.
    root = ckpt.checkpoint_root(tmp_path)
    (root / ".tmp-checkpoint-000009").mkdir()
    (root / "checkpoint-000008").mkdir()
    assert ckpt.find_latest_checkpoint(tmp_path).name == "checkpoint-000002"
    assert ckpt.resolve_resume("auto", tmp_path).name == "checkpoint-000002"
    ckpt.save_checkpoint(tmp_path, 3, **save)
    names = sorted(p.name for p in root.iterdir())
    assert names == ["checkpoint-000002", "checkpoint-000003", "checkpoint-000008"]  # pruned to 2 complete; tmp gone
    ckpt.save_checkpoint(tmp_path, 3, **save)  # re-saving a step replaces it
    assert ckpt.find_latest_checkpoint(tmp_path).name == "checkpoint-000003"
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        ckpt.resolve_resume(str(root / "checkpoint-000008"), tmp_path)


def test_lora_checkpoint_saves_only_the_adapter(tmp_path, model_path):
    model, _ = load_policy(model_path)
    model = apply_lora(model, r=2, alpha=4)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.5)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = ckpt.save_checkpoint(tmp_path, 1, model=model, optimizer=optimizer, scheduler=scheduler,
                                selector=make_selector("uniform", 4), item_ids=[0, 1, 2, 3], trainer_state={})
    assert (path / "model" / "adapter_model.safetensors").is_file()
    assert not (path / "model" / "model.safetensors").exists()
    fresh, _ = load_policy(model_path)
    fresh = apply_lora(fresh, r=2, alpha=4)
    ckpt.load_model_weights(path, fresh)
    lora_b = [p for n, p in fresh.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.all(p == 0.5) for p in lora_b)


# ---------------------------------------------------------------------- damaged checkpoints
def _two_checkpoints(tmp_path, model_path):
    model, processor, optimizer, scheduler, selector = _training_state(model_path)
    save = dict(model=model, optimizer=optimizer, scheduler=scheduler, selector=selector, item_ids=list(range(10)),
                trainer_state={}, processor=processor)
    older = ckpt.save_checkpoint(tmp_path, 1, **save)
    newer = ckpt.save_checkpoint(tmp_path, 2, **save)
    return older, newer, (optimizer, scheduler, selector)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["model/model.safetensors", "selector_arrays.npz", "selector.json", "optimizer.pt",
                                  "rng_state_0.pt"])
def test_a_truncated_file_makes_auto_resume_fall_back_and_an_explicit_resume_fail_naming_it(tmp_path, model_path,
                                                                                              name):
    older, newer, _ = _two_checkpoints(tmp_path, model_path)
    assert (newer / "manifest.json").is_file() and ckpt.verify_checkpoint(newer) == []
    _truncate(newer / name)
    assert ckpt.verify_checkpoint(older) == []
    warning = (rf"skipped damaged checkpoint\(s\): .*checkpoint-000002: .*{name} is "
               rf"[\d,]+ bytes, the manifest says [\d,]+ .*resuming from .*checkpoint-000001")
    with pytest.warns(UserWarning, match=warning):
        assert ckpt.resolve_resume("auto", tmp_path) == older
    with pytest.raises(ckpt.CheckpointError, match=rf"^resume=.*checkpoint-000002: the checkpoint is damaged: "
                                                   rf".*{name} is [\d,]+ bytes"):
        ckpt.resolve_resume(str(newer), tmp_path)


def test_same_size_corruption_fails_the_checksum_and_all_damaged_is_an_error(tmp_path, model_path):
    older, newer, _ = _two_checkpoints(tmp_path, model_path)
    for path in (older, newer):
        data = bytearray((path / "optimizer.pt").read_bytes())
        data[-40] ^= 0xFF
        (path / "optimizer.pt").write_bytes(bytes(data))
    assert ckpt.verify_checkpoint(newer) == [f"{newer / 'optimizer.pt'} does not match its checksum (corrupted)"]
    with pytest.raises(ckpt.CheckpointError, match=r"resume=auto: every checkpoint in .* is damaged .*resume=none"):
        ckpt.resolve_resume("auto", tmp_path)


def test_a_checkpoint_without_manifest_is_incomplete_and_a_damaged_file_is_still_named_on_load(tmp_path, model_path):
    older, newer, (optimizer, scheduler, selector) = _two_checkpoints(tmp_path, model_path)
    (newer / "manifest.json").unlink()  # the manifest is written last: without it the save did not finish
    with pytest.warns(UserWarning, match=r"skipped damaged checkpoint\(s\): .*checkpoint-000002: .*manifest\.json is "
                                         r"missing \(an incomplete save.*resuming from .*checkpoint-000001"):
        assert ckpt.resolve_resume("auto", tmp_path) == older
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoint-000002: the checkpoint is damaged: .*manifest\.json "
                                                   r"is missing"):
        ckpt.resolve_resume(str(newer), tmp_path)
    _truncate(newer / "selector_arrays.npz")
    with pytest.raises(ckpt.CheckpointError, match=r"selector_arrays\.npz cannot be read .*resume from another"):
        ckpt.load_checkpoint(newer, optimizer=optimizer, scheduler=scheduler, selector=selector,
                             item_ids=list(range(10)))
    model, *_ = _training_state(model_path)
    _truncate(newer / "model" / "model.safetensors")
    with pytest.raises(ckpt.CheckpointError, match=r"model\.safetensors cannot be read"):
        ckpt.load_model_weights(newer, model)


# ---------------------------------------------------------------------- one run per output_dir
def test_a_second_run_on_a_locked_output_dir_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    import fcntl
    import json
    import os

    folder = tmp_path / "run"
    folder.mkdir()
    lock_file = folder / ckpt.LOCK_FILE
    other = os.open(lock_file, os.O_RDWR | os.O_CREAT)  # another process's lock (flock is per open file)
    os.write(other, json.dumps({"pid": 4242, "host": "node-7", "started": "2026-01-01 10:00:00"}).encode())
    fcntl.flock(other, fcntl.LOCK_EX)
    with pytest.raises(ckpt.OutputDirInUseError, match=r"output_dir .*run is in use by another run \(pid 4242 on "
                                                      r"host node-7, started 2026-01-01 10:00:00\)"):
        ckpt.lock_output_dir(folder)
    os.close(other)  # that run is killed: the kernel drops its flock, its record stays
    with pytest.warns(UserWarning, match=r"taking over a stale lock \(pid 4242 on host node-7"):
        lock = ckpt.lock_output_dir(folder)
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    again = ckpt.lock_output_dir(folder)  # the same process may open the folder twice (resume in a notebook)
    again.release()
    lock.release()
    assert lock_file.read_text() == ""  # released cleanly: the next run sees no stale lock
    ckpt.lock_output_dir(folder).release()


def test_an_output_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(ValueError, match=r"output_dir=.*out is a file, not a folder"):
        ckpt.lock_output_dir(tmp_path / "out")
    with pytest.raises(ValueError, match=r"output_dir=.*out/sub cannot be created: a parent path is a file"):
        ckpt.lock_output_dir(tmp_path / "out" / "sub")
