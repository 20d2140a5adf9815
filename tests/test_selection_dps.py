"""DPS against an independent per-prompt implementation of its filter (docs/selection.md, "The model")."""

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdps.selection import DPSSelector, make_selector
from mmdps.selection.dps import PRIOR_ALPHAS


class ReferenceDPS:
    """Plain Python loop over prompts, written from the pseudo-code, no shared state, no vectorisation."""

    def __init__(self, n, decay, alpha0, pi0):
        self.lam, self.A0 = decay, np.array(alpha0, dtype=float)
        self.A = [self.A0.copy() for _ in range(n)]
        self.prior = [np.array(pi0, dtype=float) for _ in range(n)]
        self.lastpost = [np.array(pi0, dtype=float) for _ in range(n)]

    @staticmethod
    def mean(A):
        return A / A.sum(axis=0, keepdims=True)

    def update(self, ids, rates):
        obs = {int(i): (0 if s == 0 else 2 if s == 1 else 1) for i, s in zip(ids, rates, strict=True)}
        for p in range(len(self.A)):
            M = self.mean(self.A[p])
            if p in obs:
                post = np.eye(3)[obs[p]]
                xi = np.outer(post, self.lastpost[p]) * M
                if xi.sum() <= 0:  # observation impossible under the model: documented fallback
                    xi = np.outer(post, self.lastpost[p])
                xi = xi / xi.sum()
            else:
                post = self.prior[p]
                xi = np.zeros((3, 3))
            self.A[p] = self.lam * self.A[p] + (1 - self.lam) * self.A0 + xi
            nxt = self.mean(self.A[p]) @ post
            self.prior[p] = nxt / nxt.sum()
            self.lastpost[p] = post


def test_worked_example_partial_once():
    sel = DPSSelector(5, decay=0.5, prior_alpha=1.0)
    sel.update(np.array([2]), np.array([0.375]))
    np.testing.assert_allclose(sel.predicted_state_probs()[2], [0.3, 0.4, 0.3], atol=1e-12)
    np.testing.assert_allclose(sel.predicted_state_probs()[0], [1 / 3] * 3, atol=1e-12)


@pytest.mark.parametrize(
    "decay,prior_alpha,prior_pi",
    [(0.5, 1.0, "uniform"), (0.7, "progress", "unsolved"), (1.0, "stability", "partial"),
     (0.3, "local", "uniform"), (0.9, 2.5, "solved")],
)
def test_matches_reference_on_random_sequences(decay, prior_alpha, prior_pi):
    rng = np.random.default_rng(zlib.crc32(f"{decay}-{prior_alpha}-{prior_pi}".encode()))  # str hash is salted
    n = 40
    sel = DPSSelector(n, decay=decay, prior_alpha=prior_alpha, prior_pi=prior_pi)
    alpha0 = PRIOR_ALPHAS[prior_alpha] if isinstance(prior_alpha, str) else np.full((3, 3), prior_alpha)
    ref = ReferenceDPS(n, decay, alpha0, sel.pi0)
    for _ in range(30):
        ids = rng.choice(n, size=rng.integers(0, 12), replace=False)
        rates = rng.choice([0.0, 0.125, 0.5, 0.875, 1.0], size=ids.size)
        sel.update(ids, rates)
        ref.update(ids, rates)
        np.testing.assert_allclose(sel.predicted_state_probs(), np.array(ref.prior), rtol=0, atol=1e-9)
    np.testing.assert_allclose(sel.transition_counts(np.arange(n)), np.array(ref.A), rtol=0, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    decay=st.floats(0.05, 1.0),
    steps=st.lists(st.lists(st.tuples(st.integers(0, 14), st.sampled_from([0.0, 0.25, 1.0])), max_size=8), max_size=12),
)
def test_beliefs_normalised_nonnegative_and_equal_reference(decay, steps):
    n = 15
    sel = DPSSelector(n, decay=decay)
    ref = ReferenceDPS(n, decay, np.ones((3, 3)), [1 / 3] * 3)
    for step in steps:
        pairs = dict(step)  # unique ids
        ids, rates = np.array(list(pairs), dtype=np.int64), np.array(list(pairs.values()))
        sel.update(ids, rates)
        ref.update(ids, rates)
        probs = sel.predicted_state_probs()
        assert probs.min() >= 0
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(probs, np.array(ref.prior), rtol=0, atol=1e-9)


def test_topk_prefers_recently_partial_and_breaks_ties_randomly():
    sel = DPSSelector(1000, seed=1)
    sel.update(np.array([5, 6, 7]), np.array([0.5, 0.0, 1.0]))
    ids = sel.select(10)
    assert ids[0] == 5 or 5 in ids
    assert 6 not in ids and 7 not in ids  # their P(partial) fell below the never-seen 1/3
    assert len(np.unique(ids)) == 10
    other = DPSSelector(1000, seed=2)
    other.update(np.array([5, 6, 7]), np.array([0.5, 0.0, 1.0]))
    assert set(other.select(10)) != set(ids)  # the 9 tied never-seen prompts are drawn at random


def test_whole_pool_selection_equals_candidate_selection_distributionally():
    """Whole-pool fast path and the dense candidate path pick the same strictly-better prompts."""
    sel = DPSSelector(200, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        ids = sel.select(20)
        sel.update(ids, rng.choice([0.0, 0.5, 1.0], size=20))
    scores = sel.predicted_state_probs()[:, 1]
    fast = sel.select(20)
    dense = sel.select(20, candidates=np.arange(200))
    cut = np.sort(scores)[-20]
    assert set(np.flatnonzero(scores > cut)) <= set(fast) & set(dense)
    assert np.all(scores[fast] >= cut) and np.all(scores[dense] >= cut)


def test_sample_unseen_rejection_path_is_unique_and_unseen():
    sel = DPSSelector(100_000, seed=0)
    sel.update(np.arange(10), np.zeros(10))
    ids = sel.select(5000)
    assert len(np.unique(ids)) == 5000 and not np.isin(np.arange(10), ids).any()


def test_entropy_and_uniform_strategies():
    sel = DPSSelector(50, strategy="topk+entropy", entropy_weight=0.5)
    sel.update(np.array([1, 2]), np.array([0.5, 0.0]))
    assert len(sel.select(5)) == 5
    assert len(DPSSelector(50, strategy="uniform").select(50)) == 50


def _run(sel, steps, seed):
    rng = np.random.default_rng(seed)
    picks = []
    for _ in range(steps):
        ids = sel.select(8)
        picks.append(ids.copy())
        sel.update(ids, rng.choice([0.0, 0.5, 1.0], size=ids.size))
    return picks


@pytest.mark.parametrize("name", ["dps", "uniform", "ds", "mopps", "cdas", "dopr"])
def test_state_round_trip_gives_identical_future_selections(name, tmp_path):
    sel = make_selector(name, 60, seed=4, rollouts_per_prompt=8)
    _run(sel, 6, 0)
    state = sel.state_dict()
    np.savez(tmp_path / "s.npz", **state)
    loaded = dict(np.load(tmp_path / "s.npz", allow_pickle=True))  # candidate_ratio None: a 0-d object array
    clone = make_selector(name, 60, seed=99, rollouts_per_prompt=8)
    clone.load_state_dict(loaded)
    for a, b in zip(_run(sel, 6, 1), _run(clone, 6, 1), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["dps", "uniform", "ds", "mopps", "cdas", "dopr"])
def test_deterministic_under_seed(name):
    a = _run(make_selector(name, 60, seed=7), 5, 0)
    b = _run(make_selector(name, 60, seed=7), 5, 0)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_diagnostics_confusion():
    sel = DPSSelector(20)
    sel.update(np.array([0, 1]), np.array([0.5, 0.5]))
    sel.update(np.array([0, 1]), np.array([0.5, 1.0]))  # both predicted partial; one is solved
    d = sel.diagnostics()
    assert d["prediction_accuracy"] == 0.5
    assert d["confusion/pred_partial/obs_partial"] == 1.0 and d["confusion/pred_partial/obs_solved"] == 1.0
    assert sel.confusion_matrix(cumulative=True).sum() == 4
