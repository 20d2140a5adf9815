"""The selector simulator runs small, is deterministic, and writes its table, JSON and plot."""

import json

import numpy as np
import pytest

from mmdps.cli import main
from mmdps.selection.simulator import Dynamics, simulate


def test_simulate_small_reports_every_selector():
    rep = simulate(num_prompts=120, batch_size=12, k=4, steps=12, target=0.4, seed=1)
    by = {r["selector"]: r for r in rep["results"]}
    assert set(by) == {"uniform", "ds", "dps", "mopps", "cdas", "dopr", "greso"}
    budget = 12 * 12 * 4
    assert by["uniform"]["rollouts"] == budget and by["dps"]["rollouts"] == budget
    assert by["ds"]["rollouts"] >= budget and by["ds"]["effective_ratio_trained"] == 1.0
    assert by["dopr"]["rollouts"] == budget and by["dopr"]["steps"] == 12 * 12
    conf = np.array(by["dps"]["dps_confusion"])
    assert conf.shape == (3, 3) and conf.sum() == 12 * 12
    assert 0.0 <= by["dps"]["dps_prediction_accuracy"] <= 1.0
    for r in rep["results"]:
        assert len(r["curve_rollouts"]) == len(r["curve_mean_solve_rate"]) == r["steps"] + 1
    again = simulate(num_prompts=120, batch_size=12, k=4, steps=12, target=0.4, seed=1)
    assert again["results"][2]["curve_mean_solve_rate"] == by["dps"]["curve_mean_solve_rate"]


def test_no_learning_without_informative_groups():
    dyn = Dynamics(init_mean=-30.0, init_sd=0.0, drift=0.0)  # every prompt is hopeless: all groups all-wrong
    rep = simulate(["uniform", "dps"], num_prompts=50, batch_size=5, k=4, steps=5, dynamics=dyn)
    for r in rep["results"]:
        assert r["effective_ratio_rolled"] == 0.0 and r["rollouts_to_target"] is None
        assert r["final_mean_solve_rate"] == pytest.approx(r["curve_mean_solve_rate"][0])


def test_cli_writes_outputs(tmp_path, capsys):
    rc = main(["simulate", "--num-prompts", "80", "--batch-size", "8", "--k", "4", "--steps", "6",
               "--selectors", "uniform", "dps", "ds", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "simulate.json").read_text())
    assert [r["selector"] for r in report["results"]] == ["uniform", "dps", "ds"]
    assert (tmp_path / "simulate.png").stat().st_size > 1000
    assert "DPS confusion" in capsys.readouterr().out


def test_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        simulate(num_prompts=5, batch_size=10)


def test_shared_skills_reach_the_heldout_set_and_repeats_teach_less():
    """Every prompt starts half solved, so DPS keeps its first batch (partial again and again) while uniform
    sweeps the pool; with diminishing returns per prompt (novelty_power 1) the held-out set gains less
    from DPS's repeats, without them (0) both teach the skill equally."""
    base = dict(init_mean=0.0, init_sd=0.0, direct=0.0, transfer=0.0, drift=0.0, skills=2, skill_gain=0.4,
                heldout=50)
    held = {}
    for power in (0.0, 1.0):
        rep = simulate(["uniform", "dps"], num_prompts=80, batch_size=8, k=8, steps=10,
                       dynamics=Dynamics(**base, novelty_power=power))
        held[power] = {r["selector"]: r for r in rep["results"]}
        for r in rep["results"]:
            assert r["curve_heldout_solve_rate"][-1] > r["curve_heldout_solve_rate"][0] == 0.5
    assert held[1.0]["dps"]["repeat_share"] > 0.8 > held[1.0]["uniform"]["repeat_share"]
    assert held[1.0]["dps"]["final_heldout_solve_rate"] < held[1.0]["uniform"]["final_heldout_solve_rate"] - 0.02
    assert abs(held[0.0]["dps"]["final_heldout_solve_rate"] - held[0.0]["uniform"]["final_heldout_solve_rate"]) < 0.01


def test_configured_variants_run_under_their_labels():
    rep = simulate(["uniform", ("dps-c2", "dps", {"candidate_ratio": 2.0})], num_prompts=60, batch_size=6, k=4,
                   steps=4)
    assert [r["selector"] for r in rep["results"]] == ["uniform", "dps-c2"] == rep["config"]["selectors"]


def test_predicting_selectors_report_their_brier_score():
    rep = simulate(["uniform", "dps", "mopps"], num_prompts=60, batch_size=6, k=4, steps=5)
    by = {r["selector"]: r for r in rep["results"]}
    assert "brier_mean" not in by["uniform"]
    assert 0.0 <= by["dps"]["brier_mean"] <= 2.0 and 0.0 <= by["mopps"]["brier_mean"] <= 1.0
    assert 0.0 <= by["dps"]["calibration_error"] <= 1.0
