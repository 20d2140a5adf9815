"""evaluate_items split over processes (``shard=(rank, world)``): each samples whole batches, with the seeds a
one-process run gives them, and the report over all problems equals that run's. The processes are simulated
here one after another (the two-process run with a real process group is in test_trainer_preemption.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mmdps import verifiers
from mmdps.data.item import Item
from mmdps.eval import evaluate_items
from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams

VERIFIER = "eval_shard_test_parity"


@verifiers.register(VERIFIER)
def _parity(completion, ground_truth, **metadata):
    good = len(completion) % 2 == 0
    return {"score": float(good), "acc": float(good), "format": 1.0}


class SeededEngine(RolloutEngine):
    """Completions drawn from ``sampling.seed`` over the whole batch, as a real sampler's are (so they depend
    on the seed and the item's place in its batch); records the seed of every call."""

    def __init__(self):
        self.seeds: list[int | None] = []

    def generate(self, items, k, sampling):
        self.seeds.append(sampling.seed)
        rng = np.random.default_rng(sampling.seed)
        return [[Completion(text="x" * int(rng.integers(1, 9)), token_ids=[1, 2], finish_reason="stop")
                 for _ in range(k)] for _ in items]


def _items(n: int) -> list[Item]:
    return [Item(id=100 + i, messages=[{"role": "user", "content": f"q{i}"}], ground_truth="0", verifier=VERIFIER,
                 task="toy") for i in range(n)]


class _Part(Exception):
    def __init__(self, part):
        self.part = part


def _sharded(items, world: int, **kwargs):
    """Every rank's result, as if ``world`` processes ran at once: each rank's own part is collected first,
    then each rank is run again with a gather that hands it every part."""

    def collect(part):
        raise _Part(part)

    parts, seeds = [], []
    for rank in range(world):
        engine = SeededEngine()
        with pytest.raises(_Part) as caught:
            evaluate_items(engine, items, shard=(rank, world), gather=collect, progress=False, **kwargs)
        parts.append(caught.value.part)
        seeds.append(engine.seeds)
    results = [evaluate_items(SeededEngine(), items, shard=(rank, world), gather=lambda part: parts, progress=False,
                              **kwargs) for rank in range(world)]
    return results, seeds


def test_sharded_evaluation_samples_and_reports_what_one_process_does():
    items = _items(7)
    kwargs = dict(n=3, sampling=SamplingParams(max_new_tokens=8, seed=11), batch_size=2)
    engine = SeededEngine()
    whole = evaluate_items(engine, items, progress=False, **kwargs)
    results, seeds = _sharded(items, 3, **kwargs)
    assert seeds == [[11, 17], [13], [15]]  # batches 0..3 start at items 0, 2, 4, 6: seed 11 + start
    assert sorted(s for rank in seeds for s in rank) == engine.seeds
    for result in results:
        assert result.samples == whole.samples and result.problems == whole.problems
        report = {k: v for k, v in result.report.items() if k not in ("timing", "created")}
        assert report == {k: v for k, v in whole.report.items() if k not in ("timing", "created")}
        assert result.report["timing"]["processes"] == 3


def test_more_processes_than_batches_leaves_some_without_work():
    items = _items(3)
    results, seeds = _sharded(items, 4, n=2, sampling=SamplingParams(max_new_tokens=8, seed=0), batch_size=2)
    assert seeds == [[0], [2], [], []]
    assert all(result.report["num_problems"] == 3 for result in results)


@pytest.mark.parametrize("shard, gather, message", [
    ((0, 2), None, r"shard=\(0, 2\) splits the items over 2 processes, so it needs gather="),
    ((2, 2), lambda part: [part], r"shard=\(rank, world\) needs 0 <= rank < world, got \(2, 2\)"),
])
def test_a_bad_shard_is_refused(shard, gather, message):
    with pytest.raises(ValueError, match=message):
        evaluate_items(SeededEngine(), _items(2), shard=shard, gather=gather, progress=False)
