"""Independent cross-check of the selectors against plain per-prompt references written from the papers.

The references below were written from the published equations alone (DPS: Mao et al., ICLR 2026; MoPPS:
Qu et al., arXiv 2507.04632; DAPO's Dynamic Sampling: Yu et al., arXiv 2503.14476; CDAS: Kong et al., arXiv
2505.17652; restated in docs/selection.md), before reading ``mmdps/selection``: one Python object per
prompt, the DPS filter followed step by step, no vectorisation and no shared state between prompts. A
misreading shared by the library and its own tests would therefore show up here.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from mmdps.selection import CDASSelector, DPSSelector, DynamicSamplingSelector, MoPPSSelector

# ----------------------------------------------------------------------------------------------------------------
# DPS reference (the DPS model). States are 0-based here: 0 unsolved, 1 partial, 2 solved.
# Matrices are written row = to-state i, column = from-state j, as in the paper: Phi(i, j) = P(z_t = i | z_{t-1} = j).
# ----------------------------------------------------------------------------------------------------------------

PRIOR_MATRICES = {
    "progress": [[1.0, 0.5, 0.5], [1.0, 1.0, 0.5], [1.0, 1.0, 1.0]],  # below the diagonal (to > from): forward moves
    "stability": [[1.0, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 1.0]],
    "local": [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]],  # no 1 <-> 3 jumps
}
INITIAL_BELIEFS = {
    "uniform": [1 / 3, 1 / 3, 1 / 3],
    "unsolved": [1.0, 0.0, 0.0],
    "partial": [0.0, 1.0, 0.0],
    "solved": [0.0, 0.0, 1.0],
}


def mean_matrix(alpha: np.ndarray) -> np.ndarray:
    """Posterior mean of the column-wise Dirichlet: each column j (from-state) divided by its sum."""
    return alpha / alpha.sum(axis=0, keepdims=True)


def observed_state(s: float) -> int:
    return 0 if s == 0.0 else 2 if s == 1.0 else 1


class ReferencePrompt:
    """One prompt's filter: Dirichlet counts A, prior (= mu_t^prior) and lastpost (= mu_{t-1}^post)."""

    def __init__(self, alpha0: np.ndarray, pi0: np.ndarray) -> None:
        self.A = alpha0.copy()
        self.prior = pi0.copy()
        self.lastpost = pi0.copy()
        self.n_seen = 0

    def step(self, alpha0: np.ndarray, lam: float, obs: int | None) -> None:
        M = mean_matrix(self.A)  # the OLD mean matrix
        if obs is not None:
            post = np.zeros(3)
            post[obs] = 1.0
            xi = np.outer(post, self.lastpost) * M
            total = xi.sum()
            if total > 0:
                xi = xi / total
            else:  # observation impossible under the model (zero prior entries): documented fallback
                xi = np.outer(post, self.lastpost)
            self.n_seen += 1
        else:
            post = self.prior.copy()
            xi = np.zeros((3, 3))
        self.A = lam * self.A + (1.0 - lam) * alpha0 + xi
        prediction = mean_matrix(self.A) @ post  # the NEW mean matrix
        self.prior = prediction / prediction.sum()
        self.lastpost = post


class ReferenceDPS:
    def __init__(self, num_prompts: int, decay: float, prior_alpha, prior_pi) -> None:
        if isinstance(prior_alpha, str):
            self.alpha0 = np.array(PRIOR_MATRICES[prior_alpha], dtype=float)
        else:
            self.alpha0 = np.full((3, 3), float(prior_alpha))
        pi0 = np.array(INITIAL_BELIEFS[prior_pi], dtype=float)
        self.lam = decay
        # The released scripts' candidate set is the whole dataset, so every prompt is registered at step 1.
        self.prompts = [ReferencePrompt(self.alpha0, pi0) for _ in range(num_prompts)]

    def update(self, ids, rates) -> None:
        obs = {int(i): observed_state(float(s)) for i, s in zip(ids, rates, strict=True)}
        for p, prompt in enumerate(self.prompts):
            prompt.step(self.alpha0, self.lam, obs.get(p))

    def beliefs(self) -> np.ndarray:
        return np.array([p.prior for p in self.prompts])

    def counts(self) -> np.ndarray:
        return np.array([p.A for p in self.prompts])

    def scores(self, strategy: str, weight: float) -> np.ndarray:
        b = self.beliefs()
        score = b[:, 1].copy()
        if strategy == "topk+entropy":
            with np.errstate(divide="ignore", invalid="ignore"):
                ent = -np.where(b > 0, b * np.log(b), 0.0).sum(axis=1)
            score += weight * ent
        return score


def random_rates(rng: np.random.Generator, n: int) -> np.ndarray:
    """Success rates with plenty of exact 0 and 1, k/8 fractions and arbitrary floats in (0, 1)."""
    kind = rng.integers(0, 4, size=n)
    rates = np.where(kind == 0, 0.0, np.where(kind == 1, 1.0, rng.integers(1, 8, size=n) / 8.0))
    return np.where(kind == 3, rng.uniform(1e-6, 1 - 1e-6, size=n), rates)


def assert_is_top(selected: np.ndarray, scores: np.ndarray, batch_size: int, pool=None) -> None:
    pool = np.arange(len(scores)) if pool is None else np.asarray(pool)
    assert len(selected) == batch_size and len(np.unique(selected)) == batch_size
    assert np.isin(selected, pool).all()
    rest = np.setdiff1d(pool, selected)
    if len(rest):
        assert scores[selected].min() >= scores[rest].max() - 1e-12


DPS_CASES = [
    (decay, prior_alpha, prior_pi)
    for decay in (1.0, 0.9, 0.7, 0.5, 0.2)
    for prior_alpha in (1.0, 0.5, 3.0, "progress", "stability", "local")
    for prior_pi in ("uniform", "unsolved", "partial", "solved")
]


@pytest.mark.parametrize("decay,prior_alpha,prior_pi", DPS_CASES)
def test_dps_matches_reference_on_random_sequences(decay, prior_alpha, prior_pi):
    seed = zlib.crc32(f"{decay}-{prior_alpha}-{prior_pi}".encode())
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 25))
    ref = ReferenceDPS(n, decay, prior_alpha, prior_pi)
    sel = DPSSelector(n, decay=decay, prior_alpha=prior_alpha, prior_pi=prior_pi, seed=int(rng.integers(1 << 30)))
    np.testing.assert_allclose(sel.predicted_state_probs(), ref.beliefs(), rtol=0, atol=1e-12)
    for _ in range(int(rng.integers(8, 20))):
        if rng.random() < 0.6:  # the trainer's loop: select, roll out, update
            batch = int(rng.integers(1, n + 1))
            ids = sel.select(batch)
            assert_is_top(ids, ref.scores("topk", 0.0), batch)
        else:  # any other set of distinct ids (possibly empty)
            ids = rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False)
        rates = random_rates(rng, len(ids))
        sel.update(ids, rates)
        ref.update(ids, rates)
        np.testing.assert_allclose(sel.predicted_state_probs(), ref.beliefs(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(sel.transition_counts(np.arange(n)), ref.counts(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("strategy,weight", [("topk", 0.0), ("topk+entropy", 0.0), ("topk+entropy", 0.3)])
def test_dps_selection_rule_and_candidates(strategy, weight):
    rng = np.random.default_rng(7)
    n = 40
    ref = ReferenceDPS(n, 0.7, 1.0, "uniform")
    sel = DPSSelector(n, decay=0.7, strategy=strategy, entropy_weight=weight, seed=3)
    for _ in range(12):
        scores = ref.scores(strategy, weight)
        ids = sel.select(10)
        assert_is_top(ids, scores, 10)
        pool = rng.choice(n, size=15, replace=False)
        assert_is_top(sel.select(6, candidates=pool), scores, 6, pool)
        rates = random_rates(rng, len(ids))
        sel.update(ids, rates)
        ref.update(ids, rates)


def test_dps_uniform_strategy_is_a_random_subset():
    n, batch = 12, 3
    sel = DPSSelector(n, strategy="uniform", seed=0)
    sel.update(np.arange(4), np.array([0.5, 0.5, 0.5, 0.5]))  # make the beliefs unequal
    counts = np.zeros(n)
    for _ in range(600):
        ids = sel.select(batch)
        assert len(np.unique(ids)) == batch
        counts[ids] += 1
    expected = 600 * batch / n  # 150 each; binomial sd ~ 10.6
    assert np.all(np.abs(counts - expected) < 5 * math.sqrt(600 * (batch / n) * (1 - batch / n)))


@pytest.mark.parametrize("decay", [1.0, 0.9, 0.7, 0.5])
def test_dps_spec_consequences(decay):
    # Worked example: one partial observation from a uniform start -> (0.3, 0.4, 0.3), whatever lambda.
    sel = DPSSelector(5, decay=decay)
    sel.update(np.array([0, 1, 2]), np.array([0.5, 0.0, 1.0]))
    b = sel.predicted_state_probs()
    np.testing.assert_allclose(b[0], [0.3, 0.4, 0.3], atol=1e-12)
    # After observing state 1 or state 3 the state-2 prior falls below 1/3.
    assert b[1, 1] < 1 / 3 and b[2, 1] < 1 / 3
    # Never-observed prompts stay at exactly 1/3 with alpha0 = 1 (up to rounding).
    for _ in range(5):
        sel.update(np.array([0, 1, 2]), np.array([0.25, 0.0, 1.0]))
        b = sel.predicted_state_probs()
        np.testing.assert_allclose(b[3:], 1 / 3, rtol=0, atol=1e-15)
        assert b[1, 1] < 1 / 3 and b[2, 1] < 1 / 3
    # Two consecutive partial observations: state-2 prior (2 + lam/3) / (4 + lam/3), in [0.52, 0.54].
    sel = DPSSelector(2, decay=decay)
    sel.update(np.array([0]), np.array([0.5]))
    sel.update(np.array([0]), np.array([0.5]))
    p2 = sel.predicted_state_probs()[0, 1]
    assert p2 == pytest.approx((2 + decay / 3) / (4 + decay / 3), abs=1e-12)
    assert 0.52 <= p2 <= 0.54
    # Ranking: recently partial > never seen > recently all-wrong / all-right.
    sel = DPSSelector(4, decay=decay)
    sel.update(np.array([0, 1, 2]), np.array([0.5, 0.0, 1.0]))
    order = np.argsort(-sel.predicted_state_probs()[:, 1], kind="stable")
    assert order[0] == 0 and order[1] == 3


@pytest.mark.parametrize("alias,name", [("1", "unsolved"), ("2", "partial"), ("3", "solved")])
def test_dps_official_one_hot_names(alias, name):
    np.testing.assert_array_equal(DPSSelector(3, prior_pi=alias).predicted_state_probs(),
                                  DPSSelector(3, prior_pi=name).predicted_state_probs())


def test_dps_unobserved_prompt_drifts_back_to_uniform():
    sel = DPSSelector(3, decay=0.5)
    sel.update(np.array([0]), np.array([0.5]))
    for _ in range(60):
        sel.update(np.array([1]), np.array([0.0]))
    np.testing.assert_allclose(sel.predicted_state_probs()[0], 1 / 3, atol=1e-9)


def test_dps_state_dict_round_trip_keeps_matching_reference():
    rng = np.random.default_rng(11)
    n = 15
    ref = ReferenceDPS(n, 0.6, "progress", "uniform")
    sel = DPSSelector(n, decay=0.6, prior_alpha="progress")
    for step in range(10):
        ids = rng.choice(n, size=5, replace=False)
        rates = random_rates(rng, 5)
        sel.update(ids, rates)
        ref.update(ids, rates)
        if step == 4:
            state = sel.state_dict()
            sel = DPSSelector(n, decay=0.6, prior_alpha="progress")
            sel.load_state_dict(state)
    np.testing.assert_allclose(sel.predicted_state_probs(), ref.beliefs(), rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------------------------
# MoPPS reference (Beta posterior with discounting, Thompson sampling toward a target rate).
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("decay", [1.0, 0.5, 0.9])
def test_mopps_posterior_matches_reference(decay):
    rng = np.random.default_rng(5)
    n, k = 20, 8
    alpha0, beta0 = 1.0, 1.0
    alpha = np.full(n, alpha0)
    beta = np.full(n, beta0)
    sel = MoPPSSelector(n, decay=decay, rollouts_per_prompt=k, candidate_ratio=None, seed=1)
    for _ in range(15):
        ids = sel.select(int(rng.integers(1, n + 1)))
        rates = random_rates(rng, len(ids))
        sel.update(ids, rates)
        for i, s in zip(ids, rates, strict=True):  # only the rolled-out prompts move; the others are not decayed
            alpha[i] = decay * alpha[i] + (1 - decay) * alpha0 + s * k
            beta[i] = decay * beta[i] + (1 - decay) * beta0 + (1 - s) * k
        got_alpha, got_beta = sel.posterior()
        np.testing.assert_allclose(got_alpha, alpha, rtol=0, atol=1e-9)
        np.testing.assert_allclose(got_beta, beta, rtol=0, atol=1e-9)


def _concentrate(sel: MoPPSSelector, groups: dict[float, np.ndarray], times: int = 200) -> None:
    for _ in range(times):
        for rate, ids in groups.items():
            sel.update(ids, np.full(len(ids), rate))


def test_mopps_topk_thompson_frequencies():
    # Prompt 0 has Beta(1, 1); prompt 1 has Beta(5, 5) after one 4/8 rollout. With B = 1 the selected one is
    # the draw closer to 0.5, so P(select 0) = P(|g0 - .5| < |g1 - .5|), estimated here by independent draws.
    sel = MoPPSSelector(2, decay=1.0, rollouts_per_prompt=8, candidate_ratio=None, seed=2)
    sel.update(np.array([1]), np.array([0.5]))
    trials = 3000
    picks0 = sum(int(sel.select(1)[0] == 0) for _ in range(trials))
    rng = np.random.default_rng(0)
    g0, g1 = rng.beta(1, 1, 400_000), rng.beta(5, 5, 400_000)
    p = np.mean(np.abs(g0 - 0.5) < np.abs(g1 - 0.5))
    assert abs(picks0 / trials - p) < 4.5 * math.sqrt(p * (1 - p) / trials)


def test_mopps_topk_prefers_prompts_near_target():
    n = 12
    sel = MoPPSSelector(n, decay=1.0, rollouts_per_prompt=8, candidate_ratio=None, seed=4)
    _concentrate(sel, {0.5: np.arange(0, 4), 0.0: np.arange(4, 8), 1.0: np.arange(8, 12)})
    for _ in range(20):
        assert set(sel.select(4).tolist()) == {0, 1, 2, 3}


def test_mopps_threshold_band_then_fallback_by_distance():
    n = 16
    sel = MoPPSSelector(n, decay=1.0, rollouts_per_prompt=8, candidate_ratio=None, strategy="threshold", seed=6)
    # 0-2: draws ~0.5 (in the band); 3-4: ~0.25 (0.05 below it); 5-9: ~0 ; 10-15: ~1.
    _concentrate(sel, {0.5: np.arange(0, 3), 0.25: np.arange(3, 5), 0.0: np.arange(5, 10), 1.0: np.arange(10, 16)})
    for _ in range(20):
        assert set(sel.select(5).tolist()) == {0, 1, 2, 3, 4}
    # More in-band prompts than B: a uniformly random subset of them.
    sel = MoPPSSelector(n, decay=1.0, rollouts_per_prompt=8, candidate_ratio=None, strategy="threshold", seed=8)
    _concentrate(sel, {0.5: np.arange(0, 8), 0.0: np.arange(8, 16)})
    counts = np.zeros(n)
    for _ in range(400):
        ids = sel.select(4)
        assert np.all(ids < 8)
        counts[ids] += 1
    assert np.all(np.abs(counts[:8] - 200) < 5 * 10)  # binomial(400, 1/2): sd 10


def test_mopps_candidates_come_from_a_shuffled_epoch():
    # Like the official dataloader batch of ts_ratio * B prompts: no prompt is a candidate twice in an epoch.
    n, batch = 16, 4
    sel = MoPPSSelector(n, decay=1.0, rollouts_per_prompt=8, candidate_ratio=1.0, seed=9)
    _concentrate(sel, {0.5: np.arange(0, 4), 0.0: np.arange(4, 16)})
    for _ in range(3):  # with ratio 1 the pool is the batch itself: 4 batches = one permutation of the pool
        epoch = np.concatenate([sel.select(batch) for _ in range(n // batch)])
        assert sorted(epoch.tolist()) == list(range(n))
    sel = MoPPSSelector(n, decay=1.0, rollouts_per_prompt=8, candidate_ratio=2.0, seed=3)
    _concentrate(sel, {0.5: np.arange(0, 4), 0.0: np.arange(4, 16)})
    first, second = sel.select(batch), sel.select(batch)  # pools of 8 from one epoch: disjoint
    assert not set(first.tolist()) & set(second.tolist())


# ----------------------------------------------------------------------------------------------------------------
# DAPO Dynamic Sampling accounting (keep 0 < s < 1, count every rollout).
# ----------------------------------------------------------------------------------------------------------------


def test_dynamic_sampling_admit_and_accounting():
    n, batch, k = 30, 4, 8
    sel = DynamicSamplingSelector(n, oversample=1.5, max_rounds=4, rollouts_per_prompt=k, seed=0)
    rng = np.random.default_rng(1)
    seen: list[int] = []
    prompts = rollouts = 0
    for _ in range(5):
        ids = sel.select(batch)
        assert len(ids) == math.ceil(1.5 * batch) and len(np.unique(ids)) == len(ids)
        seen.extend(ids.tolist())
        rates = random_rates(rng, len(ids))
        sel.update(ids, rates)
        mask = sel.admit(ids, rates)
        np.testing.assert_array_equal(mask, (rates > 0) & (rates < 1))
        prompts += len(ids)
        rollouts += len(ids) * k
    assert len(set(seen)) == len(seen)  # 30 draws from a 30-prompt epoch: no repeats
    diag = sel.diagnostics()
    assert diag["prompts_rolled_out"] == prompts
    assert diag["rollouts_spent"] == rollouts
    # k comes from the reward matrix when one is given.
    ids = sel.select(batch)
    rewards = (rng.random((len(ids), 5)) < 0.5).astype(float)
    sel.update(ids, rewards.mean(axis=1), rewards)
    assert sel.diagnostics()["rollouts_spent"] == rollouts + len(ids) * 5


# ----------------------------------------------------------------------------------------------------------------
# CDAS reference (competence vs per-prompt difficulty).
# ----------------------------------------------------------------------------------------------------------------


class ReferenceCDAS:
    def __init__(self, n: int, count_initial: bool) -> None:
        self.D = [0.0] * n
        self.t = [0] * n
        self.C = 0.0
        self.count_initial = count_initial

    def update(self, ids, rates) -> None:
        C_prev = self.C
        for x, s in zip(ids, rates, strict=True):
            p_hat = 1.0 / (1.0 + math.exp(-(C_prev - self.D[x])))
            d = p_hat - s
            self.t[x] += 1
            weight = self.t[x] + (1 if self.count_initial else 0)  # reference code: history starts with a 0
            self.D[x] += (d - self.D[x]) / weight
        self.C = -sum(self.D) / len(self.D)

    def select(self, batch: int) -> set[int]:
        C = self.C
        lower = sorted((abs(C - d), x) for x, d in enumerate(self.D) if d <= C)
        upper = sorted((abs(C - d), x) for x, d in enumerate(self.D) if d > C)
        want_lower = batch // 2
        take_lower = min(len(lower), max(want_lower, batch - len(upper)))
        chosen = [x for _, x in lower[:take_lower]] + [x for _, x in upper[: batch - take_lower]]
        return set(chosen)


@pytest.mark.parametrize("count_initial", [False, True])
@pytest.mark.parametrize("batch", [5, 6])
def test_cdas_matches_reference(count_initial, batch):
    rng = np.random.default_rng(batch + 10 * count_initial)
    n = 30
    sel = CDASSelector(n, warmup_epochs=1, count_initial=count_initial, seed=1)
    ref = ReferenceCDAS(n, count_initial)
    warm: list[int] = []
    while len(warm) < n:  # warm-up: one uniform pass over the pool
        ids = sel.select(batch)
        warm.extend(ids.tolist())
        rates = rng.uniform(0, 1, size=len(ids))
        rates[rng.random(len(ids)) < 0.2] = 0.0
        sel.update(ids, rates)
        ref.update(ids.tolist(), rates.tolist())
    assert sorted(set(warm)) == list(range(n))
    for _ in range(12):
        ids = sel.select(batch)
        assert set(ids.tolist()) == ref.select(batch)
        rates = rng.uniform(0, 1, size=len(ids))
        sel.update(ids, rates)
        ref.update(ids.tolist(), rates.tolist())
