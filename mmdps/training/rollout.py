"""The rollout phase of a GRPO step: select prompts, generate and verify (:func:`rollout_and_score`), feed the
selector, and refill (Dynamic Sampling) until the batch is full. Multi-process: every process selects the
same ids, rolls out its share, and all processes see every group before the selector update.

``rollout_allocation`` (:mod:`mmdps.selection.allocation`): ``fixed`` gives every prompt ``num_generations``
rollouts; ``predicted`` splits the step's ``batch_size x num_generations`` rollouts over more candidates by the
selector's prediction; ``until_signal`` samples the B selected prompts in rounds until each group's rewards
differ. Groups then differ in size, and the selector receives one reward array per group."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from mmdps.config import GRPOConfig
from mmdps.data.item import Item
from mmdps.rollout.base import NonFiniteLogitsError, RolloutEngine, SamplingParams
from mmdps.rollout.scoring import Group, rollout_and_score
from mmdps.selection.allocation import allocation_metrics, allocation_settings, predicted_plan, until_signal_round
from mmdps.training.metrics import RolloutStats
from mmdps.training.update import TrainingDivergedError


def sampling_params(config: GRPOConfig, step: int, round_index: int, rank: int) -> SamplingParams:
    # The sampling seed is a pure function of (seed, step, round, rank), so a resumed run samples exactly
    # what the uninterrupted run would have.
    seed = int(np.random.SeedSequence([config.seed, step, round_index, rank]).generate_state(1)[0] >> 1)
    return SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                          top_p=config.top_p, top_k=config.top_k, seed=seed)


def collect_groups(config: GRPOConfig, step: int, selector, engine: RolloutEngine, items: Sequence[Item],
                   accelerator) -> tuple[list[Group], RolloutStats]:
    """Select, generate, verify and update the selector; Dynamic Sampling refills until ``batch_size`` groups
    are admitted (at most ``selector.max_rounds`` rounds). Returns the admitted groups and the accounting."""
    if config.rollout_allocation != "fixed":
        return _collect_allocated(config, step, selector, engine, items, accelerator)
    stats = RolloutStats()
    admitted: list[Group] = []
    for round_index in range(selector.max_rounds):
        t0 = time.perf_counter()
        ids = selector.select(config.batch_size)
        stats.time_select += time.perf_counter() - t0
        groups = _generate_and_verify(config, step, round_index, ids, engine, items, accelerator, stats)
        t0 = time.perf_counter()
        rates = np.array([group.success_rate for group in groups], dtype=np.float64)
        scores = np.stack([group.score for group in groups])
        selector.update(ids, rates, rewards=scores)
        keep = selector.admit(ids, rates)
        stats.time_select += time.perf_counter() - t0
        stats.rounds += 1
        admitted.extend(group for group, kept in zip(groups, keep, strict=True) if kept)
        if len(admitted) >= config.batch_size:
            break
    return admitted[:config.batch_size], stats


def _collect_allocated(config: GRPOConfig, step: int, selector, engine: RolloutEngine, items: Sequence[Item],
                       accelerator) -> tuple[list[Group], RolloutStats]:
    """``predicted`` or ``until_signal``: one selection, groups of different sizes, at most ``batch_size x
    num_generations`` rollouts, one selector update with every group's rewards."""
    settings = allocation_settings(config.rollout_allocation, config.allocation_kwargs, k=config.num_generations)
    stats = RolloutStats()
    t0 = time.perf_counter()
    if settings.mode == "predicted":
        ids, sizes, candidates = predicted_plan(selector, config.batch_size, settings)
    else:
        ids = np.asarray(selector.select(config.batch_size), dtype=np.int64)
        sizes = np.minimum(np.full(ids.size, settings.round_k), settings.k_max)
        candidates = ids.size
    stats.time_select += time.perf_counter() - t0
    groups = _generate_and_verify(config, step, 0, ids, engine, items, accelerator, stats, sizes=sizes)
    stats.rounds = 1
    budget_left = settings.budget(config.batch_size) - int(sizes.sum())
    while settings.mode == "until_signal":
        signal = np.array([not group.zero_variance for group in groups], dtype=bool)
        extra = until_signal_round(sizes, signal, round_k=settings.round_k, k_max=settings.k_max,
                                   budget_left=budget_left)
        if not extra.any():
            break
        more = np.flatnonzero(extra)
        added = _generate_and_verify(config, step, stats.rounds, ids[more], engine, items, accelerator, stats,
                                     sizes=extra[more])
        stats.rounds += 1
        for index, group in zip(more, added, strict=True):
            groups[index] = _merged(groups[index], group)
        sizes = sizes + extra
        budget_left -= int(extra.sum())
    t0 = time.perf_counter()
    rates = np.array([group.success_rate for group in groups], dtype=np.float64)
    selector.update(ids, rates, rewards=[group.score for group in groups])
    keep = selector.admit(ids, rates)
    stats.time_select += time.perf_counter() - t0
    signal = np.array([not group.zero_variance for group in groups], dtype=bool)
    stats.add(groups)  # once, on the merged groups: every rollout and token of every round
    stats.allocation = allocation_metrics(sizes, candidates, signal, stats.rounds)
    return [group for group, kept in zip(groups, keep, strict=True) if kept], stats


def _merged(first: Group, second: Group) -> Group:
    """One prompt's rollouts of two rounds as one group."""
    return Group(completions=first.completions + second.completions,
                 score=np.concatenate([first.score, second.score]), acc=np.concatenate([first.acc, second.acc]),
                 format=np.concatenate([first.format, second.format]), item=first.item, position=first.position)


def _generate_and_verify(config: GRPOConfig, step: int, round_index: int, ids: np.ndarray, engine: RolloutEngine,
                         items: Sequence[Item], accelerator, stats: RolloutStats,
                         sizes: np.ndarray | None = None) -> list[Group]:
    """Roll out this process's share of ``ids`` (``num_generations`` each, or ``sizes``) and return every
    process's groups, in ``ids`` order. ``stats`` gets the times and verifier errors, and the groups when
    ``sizes`` is None (allocated rounds are counted once merged)."""
    from mmdps.training.collectives import gather_with_timeout

    rank, world = accelerator.process_index, accelerator.num_processes
    local_ids = [int(i) for i in ids[rank::world]]
    local_sizes = config.num_generations if sizes is None else [int(k) for k in sizes[rank::world]]
    local = []
    errors = (0, 0)
    if local_ids:
        try:
            scored = rollout_and_score(engine, [items[i] for i in local_ids], local_sizes,
                                       sampling_params(config, step, round_index, rank),
                                       reward_workers=config.reward_workers, positions=local_ids)
        except NonFiniteLogitsError as exc:
            cause = ("the model's first forward pass already overflows: use dtype=bfloat16 or float32 rather than "
                     "float16" if step == 1 else
                     f"the updates have diverged: lower learning_rate (now {config.learning_rate:g}) and "
                     "resume from an earlier checkpoint")
            raise TrainingDivergedError(f"step {step}: {exc} during rollout, so there is nothing to sample "
                                        f"from; {cause}") from exc
        stats.time_rollout += scored.generate_seconds
        stats.time_reward += scored.score_seconds
        local, errors = scored.groups, (scored.verifier_errors, scored.verifier_timeouts)
    if world > 1:
        for group in local:
            group.item = None  # every process holds the items: send only the rollouts
        everyone = gather_with_timeout((local, errors), config.collective_timeout_s,
                                       f"step {step}: gathering the rollouts")
    else:
        everyone = [(local, errors)]
    stats.verifier_errors += sum(part_errors for _, (part_errors, _) in everyone)
    stats.verifier_timeouts += sum(part_timeouts for _, (_, part_timeouts) in everyone)
    by_position = {group.position: group for part, _ in everyone for group in part}
    groups = [by_position[int(i)] for i in ids]
    for group in groups:
        group.item = items[group.position]
    if sizes is None:
        stats.add(groups)
    return groups
