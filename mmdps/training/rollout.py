"""The rollout phase of a GRPO step: select prompts, generate and verify (:func:`rollout_and_score`), feed the
selector, and refill (Dynamic Sampling) until the batch is full. Multi-process: every process selects the
same ids, rolls out its share, and all processes see every group before the selector update."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from mmdps.config import GRPOConfig
from mmdps.data.item import Item
from mmdps.rollout.base import NonFiniteLogitsError, RolloutEngine, SamplingParams
from mmdps.rollout.scoring import Group, rollout_and_score
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


def _generate_and_verify(config: GRPOConfig, step: int, round_index: int, ids: np.ndarray, engine: RolloutEngine,
                         items: Sequence[Item], accelerator, stats: RolloutStats) -> list[Group]:
    """Roll out this process's share of ``ids`` and return every process's groups, in ``ids`` order."""
    from mmdps.training.collectives import gather_with_timeout

    rank, world = accelerator.process_index, accelerator.num_processes
    local_ids = [int(i) for i in ids[rank::world]]
    local = []
    errors = (0, 0)
    if local_ids:
        try:
            scored = rollout_and_score(engine, [items[i] for i in local_ids], config.num_generations,
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
    stats.add(groups)
    return groups
