"""Calibration of the selectors that predict before the rollout: Brier score and reliability diagram (DPS,
its random probe, MoPPS), their state, the metrics the integrations log, and ``plot_selection``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmdps.integrations.metrics import selector_metrics
from mmdps.selection import make_selector
from mmdps.selection.calibration import Calibration, brier_scores
from mmdps.selection.dps import DPSSelector
from mmdps.selection.mopps import MoPPSSelector
from mmdps.selection_plot import calibration_series, plot_selection


def test_brier_score_by_hand():
    predicted = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(brier_scores(predicted, np.array([1, 2, 0])),
                               [0.04 + 0.25 + 0.09, 1 + 0 + 1, 4 / 9 + 1 / 9 + 1 / 9])


def test_reliability_bins_and_calibration_error_by_hand():
    cal = Calibration()
    cal.add(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), np.array([0.05, 0.15, 0.12, 0.95, 1.0]),
            np.array([0.0, 1.0, 1.0, 1.0, 0.0]))
    out = cal.diagnostics()
    assert out["brier"] == pytest.approx(0.3) and out["brier_mean"] == pytest.approx(0.3)
    # bins: 0 holds 0.05; 1 holds 0.15 and 0.12; 9 holds 0.95 and 1.0 (p = 1 falls in the top bin)
    assert {key for key in out if key.startswith("reliability/")} == {
        f"reliability/bin_{i}/{what}" for i in (0, 1, 9) for what in ("predicted", "observed", "count")}
    assert out["reliability/bin_1/predicted"] == pytest.approx(0.135)
    assert out["reliability/bin_1/observed"] == 1.0 and out["reliability/bin_1/count"] == 2.0
    assert out["reliability/bin_9/predicted"] == pytest.approx(0.975) and out["reliability/bin_9/observed"] == 0.5
    assert out["calibration_error"] == pytest.approx((0.05 + 2 * 0.865 + 2 * 0.475) / 5)
    cal.add(np.array([0.7]), np.array([0.55]), np.array([1.0]))  # a second update: per step and cumulative
    out = cal.diagnostics()
    assert out["brier"] == pytest.approx(0.7) and out["brier_mean"] == pytest.approx(2.2 / 6)
    assert out["reliability/bin_5/count"] == 1.0 and out["reliability/bin_1/count"] == 2.0
    table = cal.reliability_table()
    assert table.shape == (10, 3) and np.isnan(table[2, 0]) and table[:, 2].sum() == 6


def test_dps_brier_and_reliability_by_hand():
    sel = DPSSelector(4, seed=0)
    sel.update(np.arange(4), np.array([0.5, 1.0, 0.0, 0.25]))  # uniform beliefs 1/3 before this rollout
    out = sel.diagnostics()
    assert out["brier"] == pytest.approx(2 / 3) and out["brier_mean"] == pytest.approx(2 / 3)
    assert out["reliability/bin_3/predicted"] == pytest.approx(1 / 3)
    assert out["reliability/bin_3/observed"] == 0.5 and out["reliability/bin_3/count"] == 4
    # prompt 0 was seen partial once: belief (0.3, 0.4, 0.3) (the worked example); seen partial again
    np.testing.assert_allclose(sel.predicted_state_probs()[0], [0.3, 0.4, 0.3])
    sel.update(np.array([0]), np.array([0.5]))
    out = sel.diagnostics()
    assert out["brier"] == pytest.approx(0.09 + 0.36 + 0.09)
    assert out["brier_mean"] == pytest.approx((4 * 2 / 3 + 0.54) / 5)
    assert out["reliability/bin_4/predicted"] == pytest.approx(0.4) and out["reliability/bin_4/observed"] == 1.0
    np.testing.assert_allclose(sel.reliability()[[3, 4]], [[1 / 3, 0.5, 4], [0.4, 1.0, 1]])
    assert "probe/brier" not in out  # no probe asked for


def test_dps_brier_equals_the_beliefs_that_selected_the_batch():
    sel = DPSSelector(60, seed=3, candidate_ratio=2)
    rng = np.random.default_rng(0)
    total, count = 0.0, 0
    for _ in range(15):
        ids = sel.select(8)
        beliefs = sel.predicted_state_probs()[ids]  # what selected them, before the rollout
        rates = rng.choice([0.0, 0.25, 0.5, 1.0], size=ids.size)
        states = np.where(rates == 0, 0, np.where(rates == 1, 2, 1))
        expected = ((beliefs - np.eye(3)[states]) ** 2).sum(axis=1)
        sel.update(ids, rates)
        total, count = total + expected.sum(), count + ids.size
        assert sel.diagnostics()["brier"] == pytest.approx(expected.mean())
    assert sel.diagnostics()["brier_mean"] == pytest.approx(total / count)
    assert sel.reliability()[:, 2].sum() == count


@pytest.mark.parametrize("candidate_ratio", [None, 2.0])
def test_dps_probe_is_a_uniform_share_scored_apart(candidate_ratio):
    sel = DPSSelector(20, seed=1, probe_share=0.25, candidate_ratio=candidate_ratio)
    assert sel.probe_size(8) == 2 and sel.probe_size(2) == 1 and sel.probe_size(1) == 0
    # prompts 0-9 all-wrong (belief far below 1/3): the rule never picks them, only the probe can
    sel.update(np.arange(10), np.zeros(10))
    hits = np.zeros(20)
    rng = np.random.default_rng(0)
    for _ in range(400):
        ids = sel.select(4)
        probe = sel._probe_ids
        assert probe.size == 1 and probe[0] in ids and np.unique(ids).size == 4
        hits[probe] += 1
        rates = np.where(ids < 10, 0.0, rng.choice([0.25, 1.0], size=ids.size))
        sel.update(ids, rates)
    out = sel.diagnostics()
    counts = {prefix: sum(v for k, v in out.items() if k.startswith(f"{prefix}reliability") and k.endswith("count"))
              for prefix in ("", "probe/")}
    assert counts == {"": 10 + 400 * 3, "probe/": 400}
    assert "probe/brier" in out and "probe/calibration_error" in out
    # the probe is uniform over the pool (or candidates): the never-chosen half gets about half of it
    assert 150 < hits[:10].sum() < 250 and hits.min() > 0


def test_dps_probe_share_one_batch_all_probe_and_bad_values():
    sel = DPSSelector(10, seed=0, probe_share=0.5)
    ids = sel.select(1)  # round(0.5) = 1: the whole batch is the probe
    assert ids.size == 1 and np.array_equal(ids, sel._probe_ids)
    for bad in (-0.1, 1.0, float("nan"), True):
        with pytest.raises(ValueError, match="probe_share must be a number in"):
            DPSSelector(10, probe_share=bad)


def test_calibration_state_round_trips_and_old_states_load():
    sel = DPSSelector(30, seed=2, probe_share=0.2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        ids = sel.select(10)
        sel.update(ids, rng.choice([0.0, 0.5, 1.0], size=ids.size))
    pending = sel.select(10)  # a checkpoint between select and update keeps the probe
    state = sel.state_dict()
    fresh = DPSSelector(30, seed=2, probe_share=0.2)
    fresh.load_state_dict(state)
    assert fresh.diagnostics() == sel.diagnostics()
    np.testing.assert_array_equal(fresh._probe_ids, sel._probe_ids)
    rates = rng.choice([0.0, 0.5, 1.0], size=pending.size)
    sel.update(pending, rates)
    fresh.update(pending, rates)
    assert fresh.diagnostics() == sel.diagnostics()
    old = {k: v for k, v in state.items() if "calibration" not in k and k not in ("probe_ids", "probe_share",
                                                                                  "novelty")}
    older = DPSSelector(30, seed=2, probe_share=0.2)
    older.load_state_dict(old)  # written before calibration existed: starts empty
    assert np.isnan(older.diagnostics()["brier_mean"])
    for key, value in (("calibration_brier", -np.ones(4)), ("probe_calibration_reliability", np.full((3, 10), np.nan)),
                       ("calibration_brier", np.zeros(3))):
        with pytest.raises(ValueError, match=key):
            DPSSelector(30, seed=2, probe_share=0.2).load_state_dict({**state, key: value})
    with pytest.raises(ValueError, match="probe_ids"):
        DPSSelector(30, seed=2, probe_share=0.2).load_state_dict({**state, "probe_ids": np.array([3, 3])})


def test_mopps_squared_error_and_reliability_by_hand():
    sel = MoPPSSelector(5, rollouts_per_prompt=8)
    sel.update(np.array([0, 1]), np.array([0.25, 1.0]))  # posterior mean 0.5 before the rollout
    out = sel.diagnostics()
    assert out["brier"] == pytest.approx((0.0625 + 0.25) / 2)
    assert out["reliability/bin_5/predicted"] == 0.5 and out["reliability/bin_5/observed"] == 0.625
    assert out["reliability/bin_5/count"] == 2
    sel.update(np.array([0]), np.array([0.5]))  # Beta(1 + 2, 1 + 6): mean 0.3
    out = sel.diagnostics()
    assert out["brier"] == pytest.approx(0.04) and out["brier_mean"] == pytest.approx((0.0625 + 0.25 + 0.04) / 3)
    assert out["reliability/bin_3/predicted"] == pytest.approx(0.3) and out["reliability/bin_3/observed"] == 0.5
    assert out["calibration_error"] == pytest.approx((2 * 0.125 + 0.2) / 3)
    np.testing.assert_allclose(sel.reliability()[5], [0.5, 0.625, 2])
    fresh = MoPPSSelector(5, rollouts_per_prompt=8)
    fresh.load_state_dict(sel.state_dict())
    assert {k: v for k, v in fresh.diagnostics().items() if "brier" in k or "reliab" in k or "calib" in k} == {
        k: v for k, v in out.items() if "brier" in k or "reliab" in k or "calib" in k}
    with pytest.raises(ValueError, match="calibration_reliability"):
        MoPPSSelector(5, rollouts_per_prompt=8).load_state_dict({**sel.state_dict(),
                                                                 "calibration_reliability": -np.ones((3, 10))})


def test_integration_metrics_pass_the_calibration_keys():
    sel = make_selector("dps", 12, seed=0, probe_share=0.25)
    assert not any("brier" in key for key in selector_metrics(sel))  # nothing measured yet: NaN is dropped
    ids = sel.select(4)
    sel.update(ids, np.array([0.5, 0.0, 1.0, 0.25]))
    metrics = selector_metrics(sel)
    for key in ("selector/brier", "selector/brier_mean", "selector/calibration_error", "selector/probe/brier",
                "selector/reliability/bin_3/count", "selector/probe/reliability/bin_3/observed"):
        assert key in metrics, key
    assert len(metrics) < 60  # per-step count stays small: only non-empty bins are logged
    mopps = make_selector("mopps", 12, seed=0)
    mopps.update(mopps.select(4), np.full(4, 0.5))
    assert selector_metrics(mopps)["selector/brier"] == 0.0


def _write_run(tmp_path, name, steps=6, **kwargs):
    sel = make_selector(name, 40, seed=0, **kwargs)
    rng = np.random.default_rng(0)
    lines = []
    for step in range(1, steps + 1):
        ids = sel.select(8)
        sel.update(ids, rng.choice([0.0, 0.5, 1.0], size=ids.size))
        lines.append(json.dumps({"step": step, "loss": 0.1, **selector_metrics(sel)}))
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return sel


def test_plot_selection_writes_a_png_from_metrics_jsonl(tmp_path):
    sel = _write_run(tmp_path, "dps", probe_share=0.25)
    written = plot_selection(tmp_path)
    assert written == tmp_path / "selection.png"
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    series = calibration_series(json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines())
    assert set(series) == {"selector/", "selector/probe/"} and series["selector/"]["steps"] == list(range(1, 7))
    table = series["selector/"]["reliability"]
    np.testing.assert_allclose(table[:, 3].sum(), sel.reliability()[:, 2].sum())
    # from records (TRL's log_history) or from the selector itself
    records = [{"selector/brier": 0.5, "selector/brier_mean": 0.5}]  # no step: its position is the step
    assert plot_selection(records, tmp_path / "b.png") == tmp_path / "b.png"
    assert plot_selection(sel, tmp_path / "c.png").is_file()


def test_plot_selection_without_calibration_or_with_bad_input(tmp_path):
    _write_run(tmp_path, "uniform")
    assert plot_selection(tmp_path) is None and not (tmp_path / "selection.png").exists()
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        plot_selection(tmp_path / "missing")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, oops\n')
    with pytest.raises(ValueError, match="metrics.jsonl, line 2"):
        plot_selection(tmp_path)
    with pytest.raises(ValueError, match="needs path="):
        plot_selection([{"selector/brier": 0.1}])
