"""Dynamics-Predictive Sampling (DPS; Mao et al., ICLR 2026, arXiv 2603.10887).

Each prompt's solving state z in {unsolved, partial, solved} follows a hidden Markov chain with its own
3x3 Dirichlet transition counts ``alpha`` (column j = "from state j", row i = "to state i"). Every update
step, for every prompt (the model and its filter: ``docs/selection.md``):

* observed prompt, state o: posterior = onehot(o); soft counts
  ``xi(i, j) ∝ post(i) * Phibar_old(i, j) * lastpost(j)`` (normalised over i, j);
* unobserved prompt: posterior = prior, ``xi = 0``;
* observed all wrong / all right with fewer than ``rollouts_per_prompt`` rollouts (groups of different sizes):
  weaker evidence, ``xi(i, j) ∝ L(i) * Phibar_old(i, j) * lastpost(j)`` with the likelihood L of that outcome
  under each state, posterior = the row sums of xi (``docs/selection.md``);
* ``alpha <- decay * alpha + (1 - decay) * alpha0 + xi``;
* next prior ``= normalise(Phibar_new @ posterior)``, ``lastpost <- posterior``.

Selection: the B prompts with the largest predicted P(partial) (``strategy="topk"``, the paper's rule),
ties broken uniformly at random (the official code breaks them by shuffled candidate order), over the
whole pool or over a candidate batch (``candidate_ratio``, see ``base.py``). Options that are not in the
paper, to trade selectivity for diversity (``docs/selection.md``): ``strategy="sample"`` draws B prompts
without replacement with probability proportional to P(partial) ** (1 / temperature); ``max_consecutive``
keeps a prompt out of the next batch after it was chosen that many steps in a row; ``novelty`` > 0
discounts the score of a prompt by its visits, ``(1 + visits) ** -novelty`` (0: the paper's rule).

Calibration (``calibration.py``): every update scores the beliefs that selected the rolled-out prompts
(made before the rollout) against the observed states: Brier score of the 3-state belief, and a reliability
diagram of P(partial) against the observed share of partial groups. ``probe_share`` > 0 draws that share of
each batch uniformly at random and scores it separately (an estimate not biased by the selection).

Storage: prompts that were never observed all follow one deterministic trajectory (same alpha0, same
initial belief, never any soft counts), so they share ONE state; per-prompt arrays exist only for prompts
observed at least once (compact, grown on demand, float64). The result equals the per-prompt computation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mmdps.selection.allocation import partial_degenerate_probability, state_signal_table
from mmdps.selection.base import Rewards, Selector, observed_states, reward_sizes
from mmdps.selection.calibration import Calibration, brier_scores

PRIOR_ALPHAS: dict[str, np.ndarray] = {
    "progress": np.array([[1.0, 0.5, 0.5], [1.0, 1.0, 0.5], [1.0, 1.0, 1.0]]),
    "stability": np.array([[1.0, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 1.0]]),
    "local": np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]),
}
# The official config's names '1', '2', '3' (1-based states) are accepted as aliases.
ONE_HOT_PRIORS = {"unsolved": 0, "partial": 1, "solved": 2, "1": 0, "2": 1, "3": 2}
STRATEGIES = ("topk", "uniform", "topk+entropy", "sample")
BLOCKED_PENALTY = 1e6  # subtracted from the score (or log-weight) of capped prompts: chosen only to fill up


def prior_alpha_matrix(prior_alpha: float | str | np.ndarray) -> np.ndarray:
    """The 3x3 prior Dirichlet counts alpha0 from a float, a preset name or an explicit matrix."""
    if isinstance(prior_alpha, str):
        if prior_alpha not in PRIOR_ALPHAS:
            raise ValueError(f"prior_alpha must be a positive float, one of {sorted(PRIOR_ALPHAS)} or a 3x3 matrix, "
                             f"got {prior_alpha!r}")
        return PRIOR_ALPHAS[prior_alpha].copy()
    matrix = np.asarray(prior_alpha, dtype=np.float64)
    if matrix.ndim == 0:
        matrix = np.full((3, 3), float(matrix))
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)) or matrix.min() < 0 or matrix.sum(0).min() <= 0:
        raise ValueError("prior_alpha must be non-negative with positive column sums (3x3 or a float > 0), "
                         f"got {prior_alpha!r}")
    return matrix


def prior_pi_vector(prior_pi: str | np.ndarray) -> np.ndarray:
    """The initial belief: 'uniform', a one-hot state name ('unsolved', 'partial', 'solved') or a 3-vector."""
    if isinstance(prior_pi, str):
        if prior_pi == "uniform":
            return np.full(3, 1.0 / 3.0)
        if prior_pi not in ONE_HOT_PRIORS:
            raise ValueError(f"prior_pi must be 'uniform', one of {sorted(ONE_HOT_PRIORS)} or a probability 3-vector, "
                             f"got {prior_pi!r}")
        return np.eye(3)[ONE_HOT_PRIORS[prior_pi]]
    vec = np.asarray(prior_pi, dtype=np.float64)
    if vec.shape != (3,) or not np.all(np.isfinite(vec)) or vec.min() < 0 or vec.sum() <= 0:
        raise ValueError(f"prior_pi must be a non-negative 3-vector with a positive sum, got {prior_pi!r}")
    return vec / vec.sum()


def belief_scores(probs: np.ndarray, strategy: str, entropy_weight: float) -> np.ndarray:
    """Selection score of beliefs ``probs`` with shape [3, n]: P(partial), plus w * entropy for 'topk+entropy'."""
    score = np.array(probs[1], dtype=np.float64)
    if strategy == "topk+entropy" and entropy_weight != 0.0:
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(probs > 0, probs * np.log(probs), 0.0)
        score -= entropy_weight * plogp.sum(0)
    return score


def _check_settings(*, decay, strategy, entropy_weight, temperature, max_consecutive, novelty, probe_share,
                    rollouts_per_prompt) -> None:
    """A ``ValueError`` naming the first DPS setting out of its range."""
    if rollouts_per_prompt is not None and (isinstance(rollouts_per_prompt, bool)
                                            or int(rollouts_per_prompt) != rollouts_per_prompt
                                            or rollouts_per_prompt < 1):
        raise ValueError(f"rollouts_per_prompt must be None or an integer >= 1, got {rollouts_per_prompt!r}")
    if not 0.0 < float(decay) <= 1.0:
        raise ValueError(f"decay (lambda) must be in (0, 1], got {decay!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not np.isfinite(entropy_weight) or entropy_weight < 0:
        raise ValueError(f"entropy_weight must be a finite number >= 0, got {entropy_weight!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature (of strategy='sample') must be a finite number > 0, got {temperature!r}")
    if max_consecutive is not None and (isinstance(max_consecutive, bool) or int(max_consecutive) != max_consecutive
                                        or max_consecutive < 1):
        raise ValueError(f"max_consecutive must be None (no cap) or an integer >= 1, got {max_consecutive!r}")
    if isinstance(novelty, bool) or not (np.isfinite(novelty) and novelty >= 0):
        raise ValueError(f"novelty must be a finite number >= 0 (0: the paper's rule), got {novelty!r}")
    if isinstance(probe_share, bool) or not (np.isfinite(probe_share) and 0 <= probe_share < 1):
        raise ValueError(f"probe_share must be a number in [0, 1) (0: no random probe), got {probe_share!r}")


STATE_NAMES = ("unsolved", "partial", "solved")


def propagate(alpha: np.ndarray, prior: np.ndarray, out: np.ndarray) -> np.ndarray:
    """One unobserved step of every belief: ``out = normalise(Phibar @ prior)``, with ``Phibar`` the column-
    normalised counts ``alpha`` [3, 3, m] and ``prior`` [3, m]; in place, without [3, 3, m] temporaries."""
    weights = alpha[0] + alpha[1]
    weights += alpha[2]  # column sums, [3(j), m]
    np.divide(prior, weights, out=weights)  # prior(j) / colsum(j)
    tmp = np.empty(prior.shape[1])
    for i in range(3):  # 3x3 loop over states, vectorised over prompts
        np.multiply(alpha[i, 0], weights[0], out=out[i])
        for j in (1, 2):
            np.multiply(alpha[i, j], weights[j], out=tmp)
            out[i] += tmp
    total = out[0] + out[1]
    total += out[2]
    out /= total
    return out


def _checked_state(arrays: dict[str, Any], num_prompts: int) -> tuple[np.ndarray, np.ndarray]:
    """The observed prompts' ids and the pending probe's ids of a saved state, once every array has the shape
    those ids imply (a ``ValueError`` naming the key otherwise); fills what older states lack."""
    ids = np.asarray(arrays["ids"], dtype=np.int64)
    m = ids.size
    arrays.setdefault("streak", np.zeros(m, dtype=np.int32))  # absent before max_consecutive existed
    probe_ids = np.asarray(arrays.get("probe_ids", np.empty(0)), dtype=np.int64)  # absent before the probe
    for key, values in (("ids", ids), ("probe_ids", probe_ids)):
        if values.ndim != 1 or (values.size and (values.min() < 0 or values.max() >= num_prompts
                                                 or np.unique(values).size != values.size)):
            raise ValueError(f"state_dict[{key!r}] must be unique prompt ids inside the pool")
    shapes = {"alpha": (3, 3, m), "prior": (3, m), "lastpost": (3, m), "count": (m,), "shared_alpha": (3, 3),
              "shared_prior": (3,), "shared_last": (3,), "streak": (m,), "last_confusion": (3, 3),
              "total_confusion": (3, 3)}
    for key, shape in shapes.items():
        if np.shape(arrays[key]) != shape:
            raise ValueError(f"state_dict[{key!r}] has shape {np.shape(arrays[key])}, expected {shape}")
    return ids, probe_ids


# ---------------------------------------------------------------------- the belief update, as pure functions
def observed_row_counts(alpha: np.ndarray, last: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Soft transition counts [n, 3(from)] of exactly observed states: only row ``o`` (the observed state) of
    each prompt's count matrix grows, ``xi(o, j) ∝ Phibar_old(o, j) lastpost(j)``. ``alpha`` [3, 3, n] are the
    Dirichlet counts before the update, ``last`` [3, n] the last posteriors. An observation the model gave
    probability 0 is counted against ``lastpost`` alone."""
    cols = np.arange(states.size)
    mean_row = alpha[states, :, cols] / alpha.sum(axis=0).T  # [n, 3]: Phibar_old(o, j)
    xi_row = mean_row * last.T
    norm = xi_row.sum(axis=1)
    impossible = ~(norm > 0)
    if impossible.any():
        xi_row[impossible] = last[:, impossible].T
        norm[impossible] = xi_row[impossible].sum(axis=1)
    return xi_row / norm[:, None]


def degenerate_counts(alpha: np.ndarray, last: np.ndarray, states: np.ndarray,
                      partial: np.ndarray | float) -> np.ndarray:
    """Soft transition counts [n, 3(to), 3(from)] of all-wrong / all-right groups too small to be exact:
    ``xi(i, j) ∝ L(i) Phibar_old(i, j) lastpost(j)``, the likelihood ``L`` 1 for the observed extreme state and
    ``partial`` (:func:`~mmdps.selection.allocation.partial_degenerate_probability`) for the partial state."""
    n = states.size
    likelihood = np.zeros((n, 3))
    likelihood[np.arange(n), states] = 1.0
    likelihood[:, 1] = partial
    stacked = np.moveaxis(alpha, 2, 0)  # [n, 3, 3]
    mean = stacked / stacked.sum(axis=1, keepdims=True)
    xi = likelihood[:, :, None] * mean * last.T[:, None, :]
    norm = xi.sum(axis=(1, 2))
    impossible = ~(norm > 0)
    if impossible.any():  # as for exact observations: count it against lastpost
        xi[impossible] = likelihood[impossible][:, :, None] * last[:, impossible].T[:, None, :]
        norm[impossible] = xi[impossible].sum(axis=(1, 2))
    return xi / norm[:, None, None]



class DPSSelector(Selector):
    """DPS: per-prompt Bayesian HMM over solving states; selects the prompts most likely partially solved."""

    name: ClassVar[str] = "dps"
    takes_candidates: ClassVar[bool] = True
    _settings: ClassVar[tuple[str, ...]] = ("decay", "alpha0", "pi0", "strategy", "entropy_weight", "temperature",
                                            "max_consecutive", "novelty", "probe_share",
                                            "rollouts_per_prompt")  # max_consecutive 0: no cap
    _setting_options: ClassVar[dict[str, str]] = {"alpha0": "prior_alpha", "pi0": "prior_pi"}
    _state_checks: ClassVar[dict[str, str]] = {
        "alpha": "dirichlet", "prior": "probability", "lastpost": "probability", "count": "count",
        "shared_alpha": "dirichlet", "shared_prior": "probability", "shared_last": "probability",
        "last_confusion": "count", "total_confusion": "count", "streak": "count", "probe_ids": "count",
        **Calibration.state_checks("calibration_"), **Calibration.state_checks("probe_calibration_"),
    }
    # Per-slot storage (see _allocate): Dirichlet counts [3, 3, S], prior and last posterior [3, S], scratch,
    # global id, observation count and selection streak per slot.
    _alpha: np.ndarray
    _prior: np.ndarray
    _last: np.ndarray
    _buf: np.ndarray
    _gid: np.ndarray
    _count: np.ndarray
    _streak: np.ndarray

    def __init__(
        self,
        num_prompts: int,
        decay: float = 0.5,
        prior_alpha: float | str | np.ndarray = 1.0,
        prior_pi: str | np.ndarray = "uniform",
        strategy: str = "topk",
        entropy_weight: float = 0.0,
        seed: int = 0,
        candidate_ratio: float | None = None,
        temperature: float = 1.0,
        max_consecutive: int | None = None,
        novelty: float = 0.0,
        probe_share: float = 0.0,
        rollouts_per_prompt: int | None = None,
    ) -> None:
        super().__init__(num_prompts, seed, candidate_ratio)
        _check_settings(decay=decay, strategy=strategy, entropy_weight=entropy_weight, temperature=temperature,
                        max_consecutive=max_consecutive, novelty=novelty, probe_share=probe_share,
                        rollouts_per_prompt=rollouts_per_prompt)
        # The k that defines the states: an all-wrong or all-right group of fewer rollouts is weaker evidence
        # (None: every observation is exact, the paper's rule).
        self.rollouts_per_prompt = None if rollouts_per_prompt is None else int(rollouts_per_prompt)
        self.novelty = float(novelty)
        self.probe_share = float(probe_share)
        self.temperature = float(temperature)
        self.max_consecutive = int(max_consecutive or 0)  # 0: no cap
        self.decay = float(decay)
        self.strategy = strategy
        self.entropy_weight = float(entropy_weight)
        self.alpha0 = prior_alpha_matrix(prior_alpha)
        self.pi0 = prior_pi_vector(prior_pi)
        # One shared state for every never-observed prompt.
        self._shared_alpha = self.alpha0.copy()
        self._shared_prior = self.pi0.copy()
        self._shared_last = self.pi0.copy()
        # Compact per-prompt state for observed prompts: slot -> arrays, global id -> slot (-1 = never observed).
        self._slot = np.full(self.num_prompts, -1, dtype=np.int32 if self.num_prompts < 2**31 else np.int64)
        self._size = 0
        self._allocate(min(self.num_prompts, 1024))
        self._last_confusion = np.zeros((3, 3), dtype=np.int64)
        self._total_confusion = np.zeros((3, 3), dtype=np.int64)
        self._calibration = Calibration()  # the prompts the rule chose
        self._probe_calibration = Calibration()  # the random probe (probe_share > 0)
        self._probe_ids = np.empty(0, dtype=np.int64)  # the last select()'s probe, scored at the next update

    # ------------------------------------------------------------------ storage
    def _allocate(self, capacity: int) -> None:
        size = self._size  # slots in use, copied into the new arrays (0 on the first call)
        alpha = np.empty((3, 3, capacity))
        prior, last, buf = np.empty((3, capacity)), np.empty((3, capacity)), np.empty((3, capacity))
        gid = np.empty(capacity, dtype=np.int64)
        count = np.zeros(capacity, dtype=np.int64)
        streak = np.zeros(capacity, dtype=np.int32)  # steps in a row each prompt was chosen (max_consecutive)
        if size:
            alpha[:, :, :size] = self._alpha[:, :, :size]
            prior[:, :size] = self._prior[:, :size]
            last[:, :size] = self._last[:, :size]
            gid[:size] = self._gid[:size]
            count[:size] = self._count[:size]
            streak[:size] = self._streak[:size]
        self._alpha, self._prior, self._last, self._buf, self._gid, self._count = alpha, prior, last, buf, gid, count
        self._streak = streak

    def _materialize(self, ids: np.ndarray) -> None:
        """Give never-observed ``ids`` their own slots, initialised from the shared state."""
        n = ids.size
        if self._size + n > self._alpha.shape[2]:
            self._allocate(min(self.num_prompts, max(self._size + n, int(self._alpha.shape[2] * 1.5))))
        sl = slice(self._size, self._size + n)
        self._alpha[:, :, sl] = self._shared_alpha[:, :, None]
        self._prior[:, sl] = self._shared_prior[:, None]
        self._last[:, sl] = self._shared_last[:, None]
        self._gid[sl] = ids
        self._count[sl] = 0
        self._streak[sl] = 0
        self._slot[ids] = np.arange(self._size, self._size + n, dtype=self._slot.dtype)
        self._size += n

    @property
    def num_observed(self) -> int:
        """Number of distinct prompts observed at least once."""
        return self._size

    # ------------------------------------------------------------------ beliefs
    def predicted_state_probs(self) -> np.ndarray:
        """The [num_prompts, 3] beliefs (unsolved, partial, solved) used for the next selection."""
        out = np.empty((self.num_prompts, 3))
        out[:] = self._shared_prior
        m = self._size
        out[self._gid[:m]] = self._prior[:, :m].T
        return out

    def transition_counts(self, ids: np.ndarray) -> np.ndarray:
        """The Dirichlet counts alpha [len(ids), 3, 3] (row = to-state, column = from-state) of ``ids``."""
        return self._per_prompt(ids, self._shared_alpha, lambda slots: np.moveaxis(self._alpha[:, :, slots], 2, 0))

    def _per_prompt(self, ids: np.ndarray, shared: np.ndarray, of_slots) -> np.ndarray:
        """Per id: ``of_slots(slots)`` for observed prompts, ``shared`` (the never-observed state) for the rest."""
        ids = self._check_ids(ids, "ids")
        out = np.empty((ids.size, *shared.shape))
        out[:] = shared
        slots = self._slot[ids]
        seen = slots >= 0
        out[seen] = of_slots(slots[seen])
        return out

    # ------------------------------------------------------------------ selection
    def probe_size(self, batch_size: int) -> int:
        """How many of a batch of ``batch_size`` the random probe takes: ``probe_share * batch_size``, rounded."""
        return min(batch_size, int(np.floor(self.probe_share * batch_size + 0.5)))

    def _select(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray:
        n_probe = self.probe_size(batch_size)
        if n_probe == 0:
            self._probe_ids = np.empty(0, dtype=np.int64)
            return self._select_by_rule(batch_size, candidates)
        # The probe is drawn first, uniformly from everything eligible, so it is a uniform sample of the pool
        # (or candidates); the rule fills the rest of the batch from the other prompts.
        eligible = np.arange(self.num_prompts, dtype=np.int64) if candidates is None else candidates
        taken = np.zeros(eligible.size, dtype=bool)
        taken[self._random_subset(eligible.size, n_probe)] = True
        self._probe_ids = eligible[taken]
        if n_probe == batch_size:
            return self._probe_ids.copy()
        chosen = self._select_by_rule(batch_size - n_probe, eligible[~taken])
        return np.concatenate([chosen, self._probe_ids])

    def _discount(self, slots: np.ndarray) -> np.ndarray | float:
        """The novelty factor ``(1 + visits) ** -novelty`` of observed ``slots`` (1 for novelty 0)."""
        if not self.novelty:
            return 1.0
        return (1.0 + self._count[slots]) ** -self.novelty

    def _select_by_rule(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray:
        if self.strategy == "uniform":
            if candidates is None:
                return self._random_subset(self.num_prompts, batch_size)
            return candidates[self._random_subset(candidates.size, batch_size)]
        shared_score = float(belief_scores(self._shared_prior[:, None], self.strategy, self.entropy_weight)[0])
        if self.strategy == "sample":
            ids = np.arange(self.num_prompts, dtype=np.int64) if candidates is None else candidates
            slots = self._slot[ids]
            seen = slots >= 0
            scores = np.full(ids.size, shared_score)
            scores[seen] = self._prior[1, slots[seen]] * self._discount(slots[seen])
            with np.errstate(divide="ignore"):
                keys = np.log(scores) / self.temperature  # Gumbel top-k: sampling without replacement
            keys += self.rng.gumbel(size=ids.size)
            if self.max_consecutive:
                keys[seen] -= BLOCKED_PENALTY * (self._streak[slots[seen]] >= self.max_consecutive)
            keys[~np.isfinite(keys)] = -np.inf
            return ids[self._top_with_random_ties(keys, batch_size)]
        if candidates is not None:
            slots = self._slot[candidates]
            seen = slots >= 0
            scores = np.full(candidates.size, shared_score)
            scores[seen] = belief_scores(self._prior[:, slots[seen]], self.strategy, self.entropy_weight)
            if self.novelty:
                scores[seen] *= self._discount(slots[seen])
            if self.max_consecutive:
                scores[seen] -= BLOCKED_PENALTY * (self._streak[slots[seen]] >= self.max_consecutive)
            return candidates[self._top_with_random_ties(scores, batch_size)]
        m = self._size
        if self.strategy == "topk" and not self.max_consecutive and not self.novelty:
            seen_scores = self._prior[1, :m]  # a view: no copy
        else:
            seen_scores = belief_scores(self._prior[:, :m], self.strategy, self.entropy_weight)
            if self.novelty:
                seen_scores *= self._discount(np.arange(m))
            if self.max_consecutive:
                seen_scores -= BLOCKED_PENALTY * (self._streak[:m] >= self.max_consecutive)
        return self._top_over_pool(seen_scores, shared_score, batch_size)

    def _top_over_pool(self, seen_scores: np.ndarray, shared_score: float, k: int) -> np.ndarray:
        """Top-k over the whole pool: observed prompts with their scores, the rest all at ``shared_score``."""
        m = seen_scores.size
        unseen = self.num_prompts - m
        parts = []
        if m:
            parts.append(seen_scores if m <= k else np.partition(seen_scores, m - k)[m - k :])
        if unseen:
            parts.append(np.full(min(unseen, k), shared_score))
        top = np.concatenate(parts)
        kth = np.partition(top, top.size - k)[top.size - k]
        above = np.flatnonzero(seen_scores > kth)
        ties = np.flatnonzero(seen_scores == kth)
        unseen_above = unseen if shared_score > kth else 0
        unseen_ties = unseen if shared_score == kth else 0
        need = k - above.size - unseen_above
        total_ties = ties.size + unseen_ties
        pick = self._random_subset(total_ties, need) if need < total_ties else np.arange(total_ties)
        chosen_seen = ties[pick[pick < ties.size]]
        n_unseen = unseen_above + int(np.count_nonzero(pick >= ties.size))
        return np.concatenate([self._gid[above], self._gid[chosen_seen], self._sample_unseen(n_unseen)])

    def _sample_unseen(self, n: int) -> np.ndarray:
        """``n`` distinct never-observed ids, uniformly at random."""
        unseen = self.num_prompts - self._size
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if n == unseen or unseen < self.num_prompts // 2:
            pool = np.flatnonzero(self._slot < 0)
            return pool if n == unseen else pool[self._random_subset(pool.size, n)]
        # Mostly unseen: rejection sampling keeps this O(n); keep draws in order so the set is uniform.
        found = np.empty(0, dtype=np.int64)
        while found.size < n:
            draws = self.rng.integers(0, self.num_prompts, size=2 * (n - found.size) + 16)
            draws = np.concatenate([found, draws[self._slot[draws] < 0]])
            _, first = np.unique(draws, return_index=True)
            found = draws[np.sort(first)]
        return found[:n]

    # ------------------------------------------------------------------ update
    def _update(self, ids: np.ndarray, rates: np.ndarray, rewards: Rewards | None) -> None:
        states = observed_states(rates).astype(np.int64)
        new = ids[self._slot[ids] < 0]
        if new.size:
            self._materialize(new)
        slots = self._slot[ids].astype(np.int64)

        # Prediction quality of the beliefs that chose these prompts (before updating them).
        beliefs = self._prior[:, slots]
        predicted = np.argmax(beliefs, axis=0)
        self._last_confusion = np.zeros((3, 3), dtype=np.int64)
        np.add.at(self._last_confusion, (predicted, states), 1)
        self._total_confusion += self._last_confusion
        self._score_predictions(ids, beliefs, states)

        soft = self._soft_rows(states, rewards)
        if soft is not None:  # all-wrong / all-right groups smaller than reference_k: weak evidence
            soft_slots = slots[soft]
            sizes = np.broadcast_to(reward_sizes(rewards, self._reference_k), states.shape)
            soft_xi = self._soft_counts(soft_slots, states[soft], sizes[soft])
            slots, states = slots[~soft], states[~soft]
        xi_row = observed_row_counts(self._alpha[:, :, slots], self._last[:, slots], states)

        # Every observed-before prompt: decay toward the prior and propagate its belief.
        self._decay_and_propagate(self._size)
        # The prompts observed now: add soft counts; posterior is one-hot so the prior is column o of Phibar.
        self._alpha[states, :, slots] += xi_row
        column = self._alpha[:, states, slots]  # [3, n]
        self._prior[:, slots] = column / column.sum(axis=0)
        self._last[:, slots] = 0.0
        self._last[states, slots] = 1.0
        self._count[slots] += 1
        if soft is not None:
            self._apply_soft(soft_slots, soft_xi)
            slots = np.concatenate([slots, soft_slots])
        if self.max_consecutive:
            chosen = np.zeros(self._size, dtype=bool)
            chosen[slots] = True
            self._streak[: self._size] = np.where(chosen, self._streak[: self._size] + 1, 0)

        # The shared state of never-observed prompts takes the same unobserved step.
        if self.decay != 1.0:
            self._shared_alpha = self.decay * self._shared_alpha + (1.0 - self.decay) * self.alpha0
        self._shared_last = self._shared_prior
        nxt = (self._shared_alpha / self._shared_alpha.sum(axis=0)) @ self._shared_prior
        self._shared_prior = nxt / nxt.sum()

    def _score_predictions(self, ids: np.ndarray, beliefs: np.ndarray, states: np.ndarray) -> None:
        """Brier score and reliability of ``beliefs`` [3, n] against ``states``: the last select()'s probe
        apart from the prompts the rule chose."""
        brier = brier_scores(beliefs.T, states)
        partial = (states == 1).astype(np.float64)
        probe = np.isin(ids, self._probe_ids) if self._probe_ids.size else np.zeros(ids.size, dtype=bool)
        rule = ~probe
        self._calibration.add(brier[rule], beliefs[1, rule], partial[rule])
        if self.probe_share:
            self._probe_calibration.add(brier[probe], beliefs[1, probe], partial[probe])
        self._probe_ids = np.empty(0, dtype=np.int64)

    @property
    def _reference_k(self) -> int:
        k = self.rollouts_per_prompt or 0
        return k if k >= 2 else 0  # below 2 no group shows signal: observations stay exact

    def _soft_rows(self, states: np.ndarray, rewards: Rewards | None) -> np.ndarray | None:
        """Mask of the all-wrong / all-right groups with fewer than ``reference_k`` rollouts; None when there
        are none (every observation exact: the paper's update, unchanged)."""
        sizes = reward_sizes(rewards, self._reference_k)
        if not self._reference_k or isinstance(sizes, int) and sizes >= self._reference_k:
            return None
        soft = (states != 1) & (np.asarray(sizes) < self._reference_k)
        return soft if soft.any() else None

    def _soft_counts(self, slots: np.ndarray, states: np.ndarray, sizes: np.ndarray | int) -> np.ndarray:
        """Soft transition counts [n, 3(to), 3(from)] of degenerate groups of ``sizes`` < reference_k rollouts."""
        partial = partial_degenerate_probability(sizes, self._reference_k)
        return degenerate_counts(self._alpha[:, :, slots], self._last[:, slots], states, partial)

    def _apply_soft(self, slots: np.ndarray, xi: np.ndarray) -> None:
        """After the decay: add the soft counts; posterior = the counts' row sums, prior = Phibar_new @ posterior."""
        self._alpha[:, :, slots] += np.moveaxis(xi, 0, 2)
        post = xi.sum(axis=2)  # [n, 3]
        alpha = np.moveaxis(self._alpha[:, :, slots], 2, 0)
        prior = np.einsum("nij,nj->ni", alpha / alpha.sum(axis=1, keepdims=True), post)
        self._prior[:, slots] = (prior / prior.sum(axis=1, keepdims=True)).T
        self._last[:, slots] = post.T
        self._count[slots] += 1

    def _decay_and_propagate(self, m: int) -> None:
        """Unobserved step for slots [0, m): alpha decays toward alpha0; prior <- normalise(Phibar @ prior)."""
        if m == 0:
            return
        alpha = self._alpha[:, :, :m]
        if self.decay != 1.0:
            alpha *= self.decay
            alpha += ((1.0 - self.decay) * self.alpha0)[:, :, None]
        propagate(alpha, self._prior[:, :m], out=self._buf[:, :m])
        # Rotate buffers: lastpost <- old prior, prior <- new, old lastpost becomes scratch.
        self._last, self._prior, self._buf = self._prior, self._buf, self._last

    # ------------------------------------------------------------------ diagnostics and state
    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        conf = self._last_confusion
        total = conf.sum()
        out["prediction_accuracy"] = float(np.trace(conf) / total) if total else float("nan")
        out["observed_partial_ratio"] = float(conf[:, 1].sum() / total) if total else float("nan")
        out["num_observed"] = float(self._size)
        out.update({f"confusion/pred_{pred}/obs_{obs}": float(conf[i, j]) for i, pred in enumerate(STATE_NAMES)
                    for j, obs in enumerate(STATE_NAMES)})
        out.update(self._calibration.diagnostics())
        if self.probe_share:
            out.update(self._probe_calibration.diagnostics("probe/"))
        return out

    def reliability(self, probe: bool = False) -> np.ndarray:
        """The cumulative reliability diagram of P(partial), [10 bins, 3]: mean predicted P(partial), observed
        share of partial groups (NaN where empty) and count; ``probe=True``: of the random probe only."""
        return (self._probe_calibration if probe else self._calibration).reliability_table()

    def confusion_matrix(self, cumulative: bool = False) -> np.ndarray:
        """Counts [predicted argmax state, observed state] of the last update (or of all updates)."""
        return (self._total_confusion if cumulative else self._last_confusion).copy()

    def _array_keys(self) -> tuple[str, ...]:
        return ("ids", "alpha", "prior", "lastpost", "count", "shared_alpha", "shared_prior", "shared_last",
                "last_confusion", "total_confusion", "streak", "probe_ids", "calibration_brier",
                "calibration_reliability", "probe_calibration_brier", "probe_calibration_reliability")

    def _export_arrays(self) -> dict[str, np.ndarray]:
        m = self._size
        return {
            "ids": self._gid[:m], "alpha": self._alpha[:, :, :m], "prior": self._prior[:, :m],
            "lastpost": self._last[:, :m], "count": self._count[:m], "shared_alpha": self._shared_alpha,
            "shared_prior": self._shared_prior, "shared_last": self._shared_last,
            "last_confusion": self._last_confusion, "total_confusion": self._total_confusion,
            "streak": self._streak[:m], "probe_ids": self._probe_ids,
            **self._calibration.state("calibration_"), **self._probe_calibration.state("probe_calibration_"),
        }

    def _import_arrays(self, arrays: dict[str, Any]) -> None:
        ids, probe_ids = _checked_state(arrays, self.num_prompts)
        m = ids.size
        calibration, probe_calibration = Calibration(), Calibration()
        calibration.load(arrays, "calibration_")
        probe_calibration.load(arrays, "probe_calibration_")
        self._size = 0
        self._slot[:] = -1
        self._allocate(max(m, min(self.num_prompts, 1024)))
        self._size = m
        self._gid[:m] = ids
        self._slot[ids] = np.arange(m, dtype=self._slot.dtype)
        self._alpha[:, :, :m] = arrays["alpha"]
        self._prior[:, :m] = arrays["prior"]
        self._last[:, :m] = arrays["lastpost"]
        self._count[:m] = arrays["count"]
        self._streak[:m] = arrays["streak"]
        self._shared_alpha = np.array(arrays["shared_alpha"], dtype=np.float64)
        self._shared_prior = np.array(arrays["shared_prior"], dtype=np.float64)
        self._shared_last = np.array(arrays["shared_last"], dtype=np.float64)
        self._last_confusion = np.array(arrays["last_confusion"], dtype=np.int64)
        self._total_confusion = np.array(arrays["total_confusion"], dtype=np.int64)
        self._calibration, self._probe_calibration, self._probe_ids = calibration, probe_calibration, probe_ids

    predicts_signal: ClassVar[bool] = True

    def predict(self, ids: np.ndarray) -> np.ndarray:
        """The beliefs [len(ids), 3] (unsolved, partial, solved) the next selection uses."""
        return self._per_prompt(ids, self._shared_prior, lambda slots: self._prior[:, slots].T)

    def signal_probability(self, ids: np.ndarray, k_max: int) -> np.ndarray:
        """P(k rollouts show signal) = P(partial) (1 - 2 q(k)), k = 0..k_max, with q of the reference k
        (``rollouts_per_prompt``; k_max when unset): :func:`~mmdps.selection.allocation.state_signal_table`."""
        return state_signal_table(self.predict(ids), k_max, self._reference_k or max(int(k_max), 2))

    def memory_bytes(self) -> int:
        """Bytes held by the selector's arrays (allocated capacity included)."""
        arrays = (self._slot, self._alpha, self._prior, self._last, self._buf, self._gid, self._count, self._streak)
        return int(sum(a.nbytes for a in arrays))
