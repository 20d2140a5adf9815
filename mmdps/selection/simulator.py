"""Compare prompt selectors on a simulated prompt population, without an LLM (numpy only).

Every selector faces the same dynamics (``docs/simulator.md``):

* prompt p has a latent logit theta_p, solve probability sigmoid(theta_p); k rollouts of a selected
  prompt are k Bernoulli draws from it;
* an optimizer step on trained groups T: each informative group (0 < s < 1; GRPO gives degenerate groups
  zero advantage) raises its own prompt's logit by ``direct``, and every prompt's logit rises by
  ``transfer * c_p * (informative groups) / B`` (shared skill; c_p ~ U(0.5, 1.5) per prompt);
* drift: every prompt's logit takes a Gaussian step of sd ``drift * sqrt(|T| / B)`` (the side effects of
  an update scale with its size);
* shared skills (``skills > 0``): prompts belong to ``skills`` groups; an informative group also raises
  its group's skill, which every prompt of the group (and of the held-out set) gains, by
  ``skill_gain / B`` times the prompt's novelty ``visits ** -novelty_power`` (repeating a prompt mostly
  memorises it: only its ``direct`` gain stays full). A held-out set of ``heldout`` prompts from the same
  distribution, never trained on, measures what generalises.

Selectors run ``steps`` optimizer steps (DS takes as many rounds per step as it needs); one-shot DoPR runs
until it has spent the rollouts uniform sampling spent. Reported per selector: rollouts spent, the
effective-sample ratio (share of rolled-out prompts that were partially solved, and of trained groups),
rollouts to reach a target mean solve rate, for DPS and MoPPS the mean Brier score and calibration error of
their predictions, and for DPS the prediction accuracy and confusion matrix.
The command line, table and plot are ``mmdps simulate`` (:mod:`mmdps.commands.simulate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mmdps.selection import make_selector
from mmdps.selection.dps import DPSSelector

DEFAULT_SELECTORS = ("uniform", "ds", "dps", "mopps", "cdas", "dopr", "greso")
# MoPPS ranks candidate batches of 16 x B here (the official MATH scripts' ts_ratio) unless a variant says
# otherwise; the tables of docs/simulator.md were made with it.
MOPPS_CANDIDATE_RATIO = 16.0


@dataclass(frozen=True)
class Dynamics:
    """The simulated population and how training moves it (identical for every selector)."""

    init_mean: float = -1.5  # mean initial logit (mean solve rate about 0.33)
    init_sd: float = 3.0  # spread of initial logits: many prompts start all-wrong or all-right
    direct: float = 0.2  # logit gain of a prompt trained with an informative group
    transfer: float = 0.01  # logit gain of every prompt per fully informative batch
    drift: float = 0.1  # sd of the per-step random walk of every logit (for a full batch)
    skills: int = 0  # skill groups (0: no shared-skill component, the original toy)
    skill_gain: float = 0.0  # skill gain of a group per fully informative, never-seen batch of its prompts
    novelty_power: float = 1.0  # a prompt's skill contribution falls as visits ** -novelty_power
    heldout: int = 0  # held-out prompts (never trained on); scored as "held-out solve rate"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _selector_kwargs(name: str, k: int, seed: int, ds_oversample: float, ds_max_rounds: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"seed": seed, "rollouts_per_prompt": k}
    if name in ("ds", "dapo"):
        kwargs.update(oversample=ds_oversample, max_rounds=ds_max_rounds)
    if name == "mopps":
        kwargs.update(candidate_ratio=MOPPS_CANDIDATE_RATIO)
    return kwargs


def _spec(entry: str | tuple[str, str, dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    """A selector entry: a name, or (label, name, keyword arguments) for a configured variant."""
    if isinstance(entry, str):
        return entry, entry, {}
    label, name, kwargs = entry
    return label, name, dict(kwargs)


def _run_one(entry: str | tuple[str, str, dict[str, Any]], *, num_prompts: int, batch_size: int, k: int, steps: int,
             target: float, seed: int, dyn: Dynamics, ds_oversample: float, ds_max_rounds: int,
             equal_rollouts: bool = False) -> dict[str, Any]:
    label, name, extra = _spec(entry)
    world = np.random.default_rng(seed)  # same initial population for every selector
    theta = world.normal(dyn.init_mean, dyn.init_sd, num_prompts)
    sensitivity = world.uniform(0.5, 1.5, num_prompts)
    skills = int(dyn.skills)
    held = int(dyn.heldout)
    # The held-out set and skill groups are drawn after the pool, so the pool is the same as without them.
    held_theta = world.normal(dyn.init_mean, dyn.init_sd, held)
    held_sensitivity = world.uniform(0.5, 1.5, held)
    group = world.integers(0, max(skills, 1), num_prompts)
    held_group = world.integers(0, max(skills, 1), held)
    visits = np.zeros(num_prompts)
    rng = np.random.default_rng(seed + 1)  # rollout outcomes and drift
    sel = make_selector(name, num_prompts, **{**_selector_kwargs(name, k, seed, ds_oversample, ds_max_rounds), **extra})
    budget = steps * batch_size * k  # uniform's rollouts: one-shot selectors run until they spend this
    by_rollouts = equal_rollouts or name == "dopr"  # run until uniform's rollouts are spent
    max_steps = steps * batch_size if by_rollouts else steps

    rollouts = rolled = rolled_partial = trained = trained_partial = 0
    curve_rollouts, curve_solve, dps_acc = [0], [float(_sigmoid(theta).mean())], []
    curve_held = [float(_sigmoid(held_theta).mean())] if held else []
    repeats: list[float] = []
    reached = float(_sigmoid(theta).mean()) >= target
    rollouts_to_target: int | None = 0 if reached else None
    step = 0
    while step < max_steps and (not by_rollouts or rollouts < budget):
        step += 1
        batch_ids, batch_rates = [], []
        for _ in range(sel.max_rounds):
            ids = sel.select(batch_size)
            rates = rng.binomial(k, _sigmoid(theta[ids])) / k
            sel.update(ids, rates)
            if name == "dps":
                dps_acc.append(sel.diagnostics()["prediction_accuracy"])
            keep = sel.admit(ids, rates)
            rollouts += ids.size * k
            rolled += ids.size
            rolled_partial += int(np.count_nonzero((rates > 0) & (rates < 1)))
            batch_ids.append(ids[keep])
            batch_rates.append(rates[keep])
            if sum(b.size for b in batch_ids) >= batch_size:
                break
        ids = np.concatenate(batch_ids)[:batch_size]
        rates = np.concatenate(batch_rates)[:batch_size]
        informative = (rates > 0) & (rates < 1)
        trained += ids.size
        trained_partial += int(informative.sum())
        sel.record_trained(ids)
        repeats.append(sel.training_diagnostics()["prompts/repeat_share"])
        # The optimizer step: direct gain, shared transfer, group skills, drift.
        theta[ids[informative]] += dyn.direct
        shared = dyn.transfer * (informative.sum() / batch_size)
        theta += shared * sensitivity
        held_theta += shared * held_sensitivity
        if skills:
            learners = ids[informative]
            visits[learners] += 1
            weights = visits[learners] ** -dyn.novelty_power
            gain = np.bincount(group[learners], weights=weights, minlength=skills) * (dyn.skill_gain / batch_size)
            theta += gain[group] * sensitivity
            held_theta += gain[held_group] * held_sensitivity
        step_sd = dyn.drift * np.sqrt(ids.size / batch_size)
        theta += rng.normal(0.0, step_sd, num_prompts)
        held_theta += rng.normal(0.0, step_sd, held)
        solve = float(_sigmoid(theta).mean())
        curve_rollouts.append(rollouts)
        curve_solve.append(solve)
        if held:
            curve_held.append(float(_sigmoid(held_theta).mean()))
        if rollouts_to_target is None and solve >= target:
            rollouts_to_target = rollouts

    result: dict[str, Any] = {
        "selector": label,
        "steps": step,
        "rollouts": rollouts,
        "rollouts_vs_uniform_budget": rollouts / budget,
        "effective_ratio_rolled": rolled_partial / rolled if rolled else float("nan"),
        "effective_ratio_trained": trained_partial / trained if trained else float("nan"),
        "final_mean_solve_rate": curve_solve[-1],
        "rollouts_to_target": rollouts_to_target,
        "curve_rollouts": curve_rollouts,
        "curve_mean_solve_rate": curve_solve,
        "repeat_share": float(np.nanmean(repeats)) if repeats else float("nan"),
        "distinct_trained": int(sel.training_diagnostics()["prompts/distinct_total"]),
    }
    if held:
        result["final_heldout_solve_rate"] = curve_held[-1]
        result["curve_heldout_solve_rate"] = curve_held
    calibration = sel.diagnostics()
    if "brier_mean" in calibration:  # selectors that predict before the rollout (DPS, MoPPS)
        result["brier_mean"] = calibration["brier_mean"]
        result["calibration_error"] = calibration["calibration_error"]
    if isinstance(sel, DPSSelector):
        conf = sel.confusion_matrix(cumulative=True)
        result["dps_prediction_accuracy"] = float(np.trace(conf) / conf.sum())
        result["dps_confusion"] = conf.tolist()  # rows: predicted argmax state, columns: observed state
        result["dps_accuracy_per_step"] = dps_acc
    return result


def simulate(
    selectors: Sequence[str | tuple[str, str, dict[str, Any]]] = DEFAULT_SELECTORS,
    num_prompts: int = 2000,
    batch_size: int = 64,
    k: int = 8,
    steps: int = 150,
    target: float = 0.5,
    seed: int = 0,
    dynamics: Dynamics | None = None,
    ds_oversample: float = 1.0,
    ds_max_rounds: int = 10,
    equal_rollouts: bool = False,
) -> dict[str, Any]:
    """Run every selector on the same simulated population; returns ``{"config": ..., "results": [...]}``.

    Every selector takes ``steps`` optimizer steps, except DoPR and, with ``equal_rollouts``, every
    selector: those run until they have spent uniform's rollouts (``steps * batch_size * k``), as in the
    end-to-end benchmark.

    A selector is a name, or ``(label, name, kwargs)`` for a configured variant such as
    ``("dps-c4", "dps", {"candidate_ratio": 4})``.
    """
    if batch_size > num_prompts:
        raise ValueError(f"batch_size {batch_size} must not exceed num_prompts {num_prompts}")
    if steps < 1 or k < 1:
        raise ValueError(f"steps and k must be >= 1, got steps={steps}, k={k}")
    dyn = dynamics or Dynamics()
    results = [
        _run_one(name, num_prompts=num_prompts, batch_size=batch_size, k=k, steps=steps, target=target, seed=seed,
                 dyn=dyn, ds_oversample=ds_oversample, ds_max_rounds=ds_max_rounds, equal_rollouts=equal_rollouts)
        for name in selectors
    ]
    config = {"selectors": [_spec(entry)[0] for entry in selectors],
              "num_prompts": num_prompts, "batch_size": batch_size, "k": k, "steps": steps, "target": target,
              "seed": seed, "equal_rollouts": equal_rollouts, "ds_oversample": ds_oversample,
              "ds_max_rounds": ds_max_rounds, "dynamics": asdict(dyn)}
    return {"config": config, "results": results}
