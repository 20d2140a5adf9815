"""One GRPO step, checked from the inside (what the end-to-end tests cannot see): what the selector, the
advantages and the loss actually receive, that micro-batch gradients add up to the full-batch one, the
zero-advantage skip, and resuming mid-run.

A scripted engine returns known completions (varied lengths, EOS or truncated, independent of the
policy), so every expected value is computed here by hand from what the engine returned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdps import verifiers
from mmdps.config import GRPOConfig
from mmdps.logging_utils import read_metrics
from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams
from mmdps.trainer import GRPOTrainer
from mmdps.training.update import mini_batch_spans as _mini_batch_spans
from resume_harness import assert_same_metrics, crash_then_resume
from tiny_models import build, text_item

K = 4


@verifiers.register("test_step_length")
def _length_verdict(completion: str, ground_truth, **metadata) -> dict:
    """acc 1 for an even length, 0.5 for an odd multiple of 3 (partial credit: not a success), else 0;
    items with ``metadata['solved']`` always get 1."""
    if metadata.get("solved"):
        acc = 1.0
    else:
        acc = 1.0 if len(completion) % 2 == 0 else 0.5 if len(completion) % 3 == 0 else 0.0
    return {"score": acc, "acc": acc, "format": 1.0}


class ScriptedEngine(RolloutEngine):
    """Seeded random ASCII completions of 1..max_new_tokens tokens; shorter ones end with EOS, full-length
    ones end with EOS half the time and are truncated otherwise. Records every call."""

    def __init__(self, tokenizer, events: list | None = None):
        self.tokenizer = tokenizer
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.calls: list[tuple[list, SamplingParams, list]] = []
        self.events = events if events is not None else []

    def generate(self, items, k, sampling):
        self.events.append("generate")
        rng = np.random.default_rng(sampling.seed)
        out = []
        for _ in items:
            group = []
            for _ in range(k):
                length = int(rng.integers(1, sampling.max_new_tokens + 1))
                ids = rng.integers(32, 127, size=length).tolist()
                stop = length < sampling.max_new_tokens or rng.random() < 0.5
                if stop:
                    ids[-1] = self.eos
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                group.append(Completion(text=text, token_ids=ids, finish_reason="stop" if stop else "length"))
            out.append(group)
        self.calls.append((list(items), sampling, out))
        return out


@pytest.fixture(scope="module")
def byte_model() -> Path:
    return build("qwen2", vocab="byte")


def _items(n: int, solved: int = 0) -> list:
    # ids 100.. so that a position (the selector id) never equals an item id
    return [text_item(100 + i, f"Question {i}?", verifier="test_step_length", metadata={"solved": i < solved})
            for i in range(n)]


def _trainer(tmp_path: Path, model: Path, items=None, events=None, **overrides) -> GRPOTrainer:
    from transformers import AutoTokenizer

    values = dict(model_name_or_path=str(model), output_dir=str(tmp_path / "run"), selector="uniform", batch_size=3,
                  num_generations=K, max_new_tokens=6, max_steps=1, micro_batch_size=16, learning_rate=1e-2, seed=0,
                  progress_bar=False, save_steps=0, save_final=False, log_completions_steps=0, resume=None)
    values.update(overrides)
    engine = ScriptedEngine(AutoTokenizer.from_pretrained(model), events)
    return GRPOTrainer(GRPOConfig(**values), items=items or _items(6), engine=engine)


def _capture_updates(trainer: GRPOTrainer) -> list[dict]:
    calls: list[dict] = []
    real = trainer.update._update

    def capture(batch, advantages, mask, old, ref, *rest, **kwargs):
        calls.append(dict(batch=batch, advantages=advantages.clone(), mask=mask.clone(), old=old, **kwargs))
        return real(batch, advantages, mask, old, ref, *rest, **kwargs)

    trainer.update._update = capture
    return calls


def _expected_advantages(scores: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """GRPO by hand: per group of k, (r - mean) / (unbiased std + eps), 0 for constant groups."""
    out = []
    for group in scores.reshape(-1, K):
        std = group.std(ddof=1)
        out.append(np.zeros_like(group) if np.ptp(group) == 0 else (group - group.mean()) / (std + eps))
    return np.concatenate(out)


# ---------------------------------------------------------------------- rollout phase
def test_select_happens_before_rollout_and_the_selector_gets_positions_and_binarised_rates(tmp_path, byte_model):
    events: list[str] = []
    trainer = _trainer(tmp_path, byte_model, events=events, max_steps=2)
    updates = []
    real_select, real_update = trainer.selector.select, trainer.selector.update

    def select(*args, **kwargs):
        events.append("select")
        return real_select(*args, **kwargs)

    def update(ids, rates, rewards=None):
        events.append("update")
        updates.append((np.array(ids), np.array(rates), np.array(rewards)))
        return real_update(ids, rates, rewards=rewards)

    trainer.selector.select, trainer.selector.update = select, update
    trainer.train()
    assert events == ["select", "generate", "update"] * 2
    for (ids, rates, rewards), (items, _, outputs) in zip(updates, trainer.engine.calls, strict=True):
        assert [trainer.items[i] for i in ids] == items  # ids are positions in the training list
        accs = np.array([[_length_verdict(c.text, None)["acc"] for c in group] for group in outputs])
        np.testing.assert_array_equal(rates, (accs >= 1.0).mean(axis=1))  # 0.5 is not a success
        np.testing.assert_array_equal(rewards, accs)


def test_dynamic_sampling_trains_on_what_it_admitted_when_refills_run_out(tmp_path, byte_model):
    # 5 of 6 prompts always succeed (zero variance): at most one group per round is admitted.
    trainer = _trainer(tmp_path, byte_model, items=_items(6, solved=5), selector="ds", batch_size=3,
                       selector_kwargs={"oversample": 1.0, "max_rounds": 2})
    calls = _capture_updates(trainer)
    trainer.train()
    [record] = read_metrics(tmp_path / "run")
    assert record["rollout_rounds"] == 2 and record["rollouts"] == 2 * 3 * K  # every refill counted
    admitted = trainer.selector.diagnostics()["admitted"]
    assert record["prompts_selected"] == admitted < 3
    if admitted:
        assert len(calls) == 1 and len(calls[0]["batch"]) == admitted * K
    else:
        assert not calls and record["skipped_update"] == 1.0


# ---------------------------------------------------------------------- the batch the loss sees
@pytest.mark.parametrize("mask_truncated", [False, True])
def test_batch_layout_advantages_eos_padding_and_truncation(tmp_path, byte_model, mask_truncated):
    trainer = _trainer(tmp_path, byte_model, mask_truncated_completions=mask_truncated)
    calls = _capture_updates(trainer)
    trainer.train()
    [call] = calls
    items, _, outputs = trainer.engine.calls[0]
    completions = [c for group in outputs for c in group]
    batch, mask = call["batch"], call["mask"]
    assert len(batch) == len(items) * K
    prompts = trainer.encoder.encode(items)
    for row, completion in enumerate(completions):
        n = len(completion.token_ids)
        # k contiguous rows per prompt; the completion (EOS included) is trained, padding is not
        prompt = prompts[row // K].input_ids
        assert batch.input_ids[row, batch.input_ids.shape[1] - batch.completion_length - len(prompt):
                               batch.input_ids.shape[1] - batch.completion_length].tolist() == prompt
        assert batch.completion_ids[row, :n].tolist() == completion.token_ids
        expected = 0.0 if mask_truncated and completion.truncated else 1.0
        assert mask[row, :n].tolist() == [expected] * n and not mask[row, n:].any()
    assert any(c.token_ids[-1] == trainer.engine.eos for c in completions)
    assert any(c.truncated for c in completions)
    scores = np.array([_length_verdict(c.text, None)["score"] for c in completions])
    np.testing.assert_allclose(call["advantages"].numpy(), _expected_advantages(scores), rtol=1e-5, atol=1e-6)


def test_soft_overlong_penalty_enters_the_advantages(tmp_path, byte_model):
    trainer = _trainer(tmp_path, byte_model, overlong_buffer_len=3, overlong_penalty_factor=0.5)
    calls = _capture_updates(trainer)
    trainer.train()
    outputs = trainer.engine.calls[0][2]
    completions = [c for group in outputs for c in group]
    lengths = np.array([len(c.token_ids) for c in completions])
    penalty = np.clip((6 - 3 - lengths) / 3 * 0.5, -0.5, 0.0)  # DAPO: ramp over the last 3 of 6 tokens
    scores = np.array([_length_verdict(c.text, None)["score"] for c in completions]) + penalty
    np.testing.assert_allclose(calls[0]["advantages"].numpy(), _expected_advantages(scores), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- the update
def _full_batch_gradient(trainer: GRPOTrainer, batch, advantages, mask) -> list[torch.Tensor]:
    """The gradient of the loss over the whole batch in one forward pass (no accumulation)."""
    from mmdps.models.forward import completion_logprobs
    from mmdps.rl import aggregate_loss, policy_loss

    config = trainer.config
    model = trainer.model
    model.train()
    model.zero_grad(set_to_none=True)
    logprobs, entropy = completion_logprobs(model, batch, temperature=config.temperature, with_entropy=True)
    loss, _ = policy_loss(logprobs, logprobs.detach(), advantages, mask, clip_low=config.clip_low,
                          clip_high=config.clip_high, clip_c=config.clip_c, loss_agg_mode=config.loss_agg_mode,
                          max_len=config.max_new_tokens)
    loss = loss - config.entropy_coeff * aggregate_loss(entropy, mask, config.loss_agg_mode,
                                                        max_len=config.max_new_tokens)
    loss.backward()
    grads = [p.grad.detach().clone() for p in trainer.trainable]
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("loss_agg_mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_micro_batch_gradients_add_up_to_the_full_batch_gradient(tmp_path, byte_model, loss_agg_mode):
    # 12 rows in micro-batches of 5 (uneven), truncated rows masked: the accumulated gradient that
    # reaches optimizer.step must equal the gradient of the full-batch loss.
    trainer = _trainer(tmp_path, byte_model, loss_agg_mode=loss_agg_mode, micro_batch_size=5, entropy_coeff=0.01,
                       temperature=0.8, mask_truncated_completions=True, max_grad_norm=1e9)
    compared = []
    real_update = trainer.update._update

    def check(batch, advantages, mask, old, ref, *rest, **kwargs):
        expected = _full_batch_gradient(trainer, batch, advantages, mask)
        real_step = trainer.optimizer.step

        def step(*args, **kwargs):
            got = [p.grad.detach().clone() for p in trainer.trainable]
            for g, e in zip(got, expected, strict=True):
                torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)
            compared.append(sum(float(e.abs().sum()) for e in expected))
            return real_step(*args, **kwargs)

        trainer.optimizer.step = step
        try:
            return real_update(batch, advantages, mask, old, ref, *rest, **kwargs)
        finally:
            del trainer.optimizer.step

    trainer.update._update = check
    trainer.train()
    assert len(compared) == 1 and compared[0] > 0  # a non-trivial gradient was compared


def test_first_update_has_ratio_one_and_later_updates_use_the_stored_old_logprobs(tmp_path, byte_model, monkeypatch):
    import mmdps.rl
    import mmdps.rl.objective

    ratios: list[tuple[float, float]] = []
    real_loss = mmdps.rl.policy_loss

    def recording_loss(*args, **kwargs):
        loss, stats = real_loss(*args, **kwargs)
        ratios.append((float(stats["ratio_min"]), float(stats["ratio_max"])))
        return loss, stats

    monkeypatch.setattr(mmdps.rl.objective, "policy_loss", recording_loss)
    # 3 groups, mini-batches of 1 group (one micro-batch each), 2 epochs: 6 updates per step
    trainer = _trainer(tmp_path, byte_model, mini_batch_size=1, ppo_epochs=2, micro_batch_size=K)
    calls = _capture_updates(trainer)
    trainer.train()
    assert len(calls) == len(ratios) == 6
    assert all(call["old"] is not None for call in calls)
    low, high = ratios[0]
    assert abs(low - 1) < 1e-5 and abs(high - 1) < 1e-5  # the old policy is the sampling policy
    assert any(max(abs(low - 1), abs(high - 1)) > 1e-4 for low, high in ratios[1:])  # then it moved away


def test_log_probs_are_computed_at_the_sampling_temperature(tmp_path, byte_model, monkeypatch):
    import mmdps.models.forward

    seen: list[float] = []
    real = mmdps.models.forward.completion_logprobs

    def recording(model, batch, **kwargs):
        seen.append(kwargs.get("temperature", 1.0))
        return real(model, batch, **kwargs)

    monkeypatch.setattr(mmdps.models.forward, "completion_logprobs", recording)
    trainer = _trainer(tmp_path, byte_model, temperature=0.7, mini_batch_size=1, beta=0.1)
    trainer.train()
    assert {call[1].temperature for call in trainer.engine.calls} == {0.7}
    assert seen and set(seen) == {0.7}  # old, reference and current log-probs alike


def test_mini_batches_are_the_same_number_on_every_process():
    # DDP: every process must make the same number of optimizer updates, even with unequal shares.
    for groups in range(1, 12):
        for world in (1, 2, 3, 4):
            for mini in range(1, groups + 1):
                num_mini = -(-groups // mini)
                for rank in range(world):
                    local = len(range(rank, groups, world))
                    spans = _mini_batch_spans(local, num_mini)
                    assert len(spans) == num_mini
                    assert [i for start, stop in spans for i in range(start, stop)] == list(range(local))
                    if world == 1:
                        assert all(stop - start <= mini for start, stop in spans) and all(s < e for s, e in spans)


# ---------------------------------------------------------------------- resume
def test_resume_restores_weights_optimizer_scheduler_and_step(tmp_path, byte_model, monkeypatch):
    settings = dict(max_steps=4, save_steps=2, lr_scheduler_type="linear", warmup_steps=2, resume="auto")
    full = _trainer(tmp_path / "a", byte_model, **settings)
    full.train()

    resumed = crash_then_resume(monkeypatch, lambda: _trainer(tmp_path / "b", byte_model, **settings), crash_at=3)
    assert resumed.step == 2
    resumed.train()

    a, b = read_metrics(tmp_path / "a" / "run"), read_metrics(tmp_path / "b" / "run")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert_same_metrics(a, b)
    for ra, rb in zip(a, b, strict=True):
        assert ra["reward_mean"] == rb["reward_mean"]
    assert [r["lr"] for r in a] != [a[0]["lr"]] * 4  # the schedule did move
    for (name, p), q in zip(full.unwrapped_model.named_parameters(), resumed.unwrapped_model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)


def _gradients_at_optimizer_step(trainer: GRPOTrainer) -> list[list[torch.Tensor]]:
    seen: list[list[torch.Tensor]] = []
    real_step = trainer.optimizer.step

    def step(*args, **kwargs):
        seen.append([p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                     for p in trainer.trainable])
        return real_step(*args, **kwargs)

    trainer.optimizer.step = step
    return seen


@pytest.mark.parametrize("loss_agg_mode,mask_truncated", [("token-mean", False), ("seq-mean-token-mean", True)])
def test_skipping_zero_advantage_groups_gives_the_same_gradient(tmp_path, byte_model, loss_agg_mode, mask_truncated):
    """Groups with all-zero advantages are left out of the backward pass but still counted in the
    normaliser: the gradient that reaches the optimizer equals that of training on every row."""
    grads, rows = {}, {}
    for skip in (False, True):
        trainer = _trainer(tmp_path / str(skip), byte_model, items=_items(6, solved=3), batch_size=6, max_steps=1,
                           entropy_coeff=0.0, loss_agg_mode=loss_agg_mode, mask_truncated_completions=mask_truncated,
                           skip_zero_advantage_groups=skip, micro_batch_size=7, max_grad_norm=1e9)
        calls = _capture_updates(trainer)
        grads[skip] = _gradients_at_optimizer_step(trainer)
        trainer.train()
        rows[skip] = [len(call["batch"]) for call in calls]
    assert rows[False] == [6 * K]
    assert rows[True][0] <= 3 * K  # the three always-solved prompts were left out
    assert len(grads[True]) == len(grads[False]) == 1
    assert sum(float(g.abs().sum()) for g in grads[False][0]) > 0
    for got, expected in zip(grads[True][0], grads[False][0], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-8)


def test_a_step_with_only_zero_advantage_groups_still_steps_the_optimizer(tmp_path, byte_model):
    """All groups degenerate: one group is replayed at weight 0, so the optimizer still runs with zero
    gradients (AdamW's momentum and weight decay act exactly as when every row is trained)."""
    trainer = _trainer(tmp_path, byte_model, items=_items(6, solved=6), batch_size=3, max_steps=1,
                       entropy_coeff=0.0, weight_decay=0.1)
    calls = _capture_updates(trainer)
    grads = _gradients_at_optimizer_step(trainer)
    before = {n: p.detach().clone() for n, p in trainer.unwrapped_model.named_parameters()}
    trainer.train()
    assert [len(call["batch"]) for call in calls] == [K] and float(calls[0]["mask"].sum()) == 0
    assert len(grads) == 1 and all(float(g.abs().sum()) == 0 for g in grads[0])
    after = dict(trainer.unwrapped_model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)  # weight decay moved the weights


# ---------------------------------------------------------------------- rollouts per prompt (allocation)
def _ragged_expected_advantages(groups: list[np.ndarray], eps: float = 1e-6) -> np.ndarray:
    """GRPO by hand for groups of any size: (r - mean) / (unbiased std + eps), 0 for constant groups."""
    return np.concatenate([np.zeros_like(g) if np.ptp(g) == 0 else (g - g.mean()) / (g.std(ddof=1) + eps)
                           for g in groups])


def _allocated_run(tmp_path, byte_model, mode: str, **overrides):
    trainer = _trainer(tmp_path, byte_model, items=_items(6, solved=2), max_steps=2, rollout_allocation=mode,
                       **overrides)
    seen: list[tuple[np.ndarray, np.ndarray, list[np.ndarray]]] = []
    real_update = trainer.selector.update

    def update(ids, rates, rewards=None):
        seen.append((np.array(ids), np.array(rates), [np.array(r) for r in rewards]))
        return real_update(ids, rates, rewards=rewards)

    trainer.selector.update = update
    calls = _capture_updates(trainer)
    trainer.train()
    return trainer, seen, calls, read_metrics(tmp_path / "run")


def _check_step_sees_the_group_sizes(trainer, seen, calls, records, *, at_most: bool) -> None:
    """Per step: the engine produced every group's rollouts, the accounting counts each once, and the loss got
    one row per rollout with the hand-computed GRPO advantages of groups of those sizes."""
    budget = 3 * K
    assert len(seen) == len(calls) == len(records) == 2
    rollouts_total = tokens_total = 0
    for (ids, rates, rewards), call, record in zip(seen, calls, records, strict=True):
        sizes = np.array([r.size for r in rewards])
        assert sizes.min() >= 2 and (sizes.sum() <= budget if at_most else sizes.sum() == budget)
        np.testing.assert_allclose(rates, [float(np.mean(r >= 1.0)) for r in rewards])
        assert record["rollouts"] == sizes.sum() and record["prompts_generated"] == ids.size
        assert record["allocation/distinct_prompts"] == ids.size == record["prompts_selected"]
        assert record["allocation/k_mean"] == pytest.approx(sizes.mean())
        assert record["allocation/k_max"] == sizes.max()
        informative = np.array([np.ptp(r) > 0 for r in rewards])
        assert record["allocation/informative_rollout_share"] == pytest.approx(sizes[informative].sum() / sizes.sum())
        assert len(call["batch"]) == sizes.sum()  # one loss row per rollout, every group at its own size
        np.testing.assert_allclose(call["advantages"].numpy(), _ragged_expected_advantages(rewards), rtol=1e-5,
                                   atol=1e-6)
        assert record["tokens_generated"] == int(call["mask"].sum())  # every completion token, once
        rollouts_total += int(sizes.sum())
        tokens_total += record["tokens_generated"]
        assert record["rollouts_total"] == rollouts_total and record["tokens_total"] == tokens_total
    assert trainer.rollouts_total == rollouts_total


def test_predicted_allocation_splits_the_step_budget_by_the_dps_prediction(tmp_path, byte_model):
    trainer, seen, calls, records = _allocated_run(tmp_path, byte_model, "predicted", selector="dps",
                                                   allocation_kwargs={"k_max": 6})
    _check_step_sees_the_group_sizes(trainer, seen, calls, records, at_most=False)
    # the engine was asked for each size once, for exactly the prompts allocated that size (rollout_and_score)
    first_ids, _, first_rewards = seen[0]
    wanted = {int(i): r.size for i, r in zip(first_ids, first_rewards, strict=True)}
    first_calls = trainer.engine.calls[:len(set(wanted.values()))]
    asked = {trainer.items.index(item): len(row) for items, _, out in first_calls
             for item, row in zip(items, out, strict=True)}
    assert asked == wanted and len({len(out[0]) for _, _, out in first_calls}) == len(first_calls)
    assert records[0]["allocation/k0_share"] == pytest.approx(1 - first_ids.size / 6)  # 6 candidates (K / k_min)


def test_until_signal_samples_in_rounds_until_the_rewards_differ(tmp_path, byte_model):
    trainer, seen, calls, records = _allocated_run(tmp_path, byte_model, "until_signal", selector="dps",
                                                   allocation_kwargs={"round_k": 2, "k_max": 6})
    _check_step_sees_the_group_sizes(trainer, seen, calls, records, at_most=True)
    for (_, _, rewards), record in zip(seen, records, strict=True):
        sizes = np.array([r.size for r in rewards])
        assert record["rollout_rounds"] == record["allocation/rounds"] >= 1
        for r in rewards:  # a group stops at the first round with signal, at k_max, or when the budget ends
            first_signal = next((n for n in range(2, r.size + 1, 2) if np.ptp(r[:n]) > 0), None)
            if first_signal is not None:
                assert r.size == first_signal
            else:
                assert r.size == 6 or sizes.sum() > 3 * K - 2
    # the first step's degenerate groups were all sampled again: the scripted engine got k=2 calls per round
    assert all(len(out[0]) == 2 for _, _, out in trainer.engine.calls)


@pytest.mark.parametrize("loss_agg_mode", ["token-mean", "seq-mean-token-mean"])
def test_skipping_zero_advantage_groups_of_different_sizes_gives_the_same_gradient(tmp_path, byte_model,
                                                                                   loss_agg_mode):
    """until_signal leaves the always-solved prompts at k_max and the others smaller: groups of different
    sizes, some all-zero, left out of the backward pass but counted in the normaliser, same gradient."""
    grads, sizes = {}, {}
    for skip in (False, True):
        trainer = _trainer(tmp_path / str(skip), byte_model, items=_items(6, solved=3), batch_size=6, max_steps=1,
                           entropy_coeff=0.0, loss_agg_mode=loss_agg_mode, skip_zero_advantage_groups=skip,
                           micro_batch_size=7, max_grad_norm=1e9, rollout_allocation="until_signal",
                           allocation_kwargs={"round_k": 2, "k_max": 6})
        calls = _capture_updates(trainer)
        grads[skip] = _gradients_at_optimizer_step(trainer)
        trainer.train()
        [record] = read_metrics(tmp_path / str(skip) / "run")
        sizes[skip] = (record["rollouts"], len(calls[0]["batch"]))
        assert record["allocation/k_min"] < record["allocation/k_max"]  # the groups do differ in size
    assert sizes[False][0] == sizes[True][0] == sizes[False][1]  # the same rollouts; every row without the skip
    assert sizes[True][1] < sizes[False][1]  # the degenerate groups were left out
    for got, expected in zip(grads[True][0], grads[False][0], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-8)


def test_a_resumed_predicted_run_allocates_as_the_uninterrupted_one(tmp_path, byte_model):
    """The split comes from the checkpointed selector state: a run resumed after step 1 rolls out the same
    prompts with the same group sizes at step 2."""
    settings = dict(selector="dps", rollout_allocation="predicted", allocation_kwargs={"k_max": 6},
                    items=_items(6, solved=2), resume="auto", save_steps=1)
    full = _trainer(tmp_path / "a", byte_model, max_steps=2, **settings)
    full.train()
    _trainer(tmp_path / "b", byte_model, max_steps=1, **settings).train()
    resumed = _trainer(tmp_path / "b", byte_model, max_steps=2, **settings)
    assert resumed.step == 1
    resumed.train()
    a, b = read_metrics(tmp_path / "a" / "run"), read_metrics(tmp_path / "b" / "run")
    assert [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b, strict=True):
        for key in ("rollouts", "rollouts_total", "tokens_generated", "reward_mean", "allocation/k_mean",
                    "allocation/k_max", "allocation/distinct_prompts"):
            assert ra[key] == rb[key], key

    def asked(calls):
        return [[(item.id, len(row)) for item, row in zip(items, out, strict=True)] for items, _, out in calls]

    step2 = asked(resumed.engine.calls)  # the resumed run generated step 2 only
    assert step2 and asked(full.engine.calls)[-len(step2):] == step2
