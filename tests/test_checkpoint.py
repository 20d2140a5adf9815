"""Checkpoints: atomic writes, pruning, newest-complete discovery, full state round trip, dataset check."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from tiny_models import build

from mmdps import checkpoint as ckpt
from mmdps.models.loading import apply_lora, load_policy
from mmdps.selection import make_selector


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
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
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
