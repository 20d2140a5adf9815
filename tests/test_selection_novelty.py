"""DPS's ``novelty`` option: P(partial) discounted by visits. 0 is the paper's rule, unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmdps.selection import make_selector
from mmdps.selection.dps import DPSSelector

REPO = Path(__file__).resolve().parents[1]


def _run(sel, steps=25, batch=8):
    rng = np.random.default_rng(7)
    picks = []
    for _ in range(steps):
        ids = sel.select(batch)
        picks.append(ids)
        sel.update(ids, rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=ids.size))
    return picks


@pytest.mark.parametrize("options", [{}, {"candidate_ratio": 2.0}, {"strategy": "sample"}, {"max_consecutive": 1},
                                     {"strategy": "topk+entropy", "entropy_weight": 0.3}])
def test_novelty_zero_is_the_paper_rule_bit_for_bit(options):
    """novelty=0 (and probe_share=0) select exactly what the selector selects without the options, and Top-B
    keeps every chosen prompt at or above every prompt left out (the paper's rule)."""
    plain = _run(DPSSelector(80, seed=4, **options))
    explicit = DPSSelector(80, seed=4, novelty=0.0, probe_share=0.0, **options)
    for a, b in zip(plain, _run(explicit), strict=True):
        np.testing.assert_array_equal(a, b)
    if not options:
        sel = DPSSelector(80, seed=4, novelty=0.0)
        rng = np.random.default_rng(1)
        for _ in range(10):
            before = sel.predicted_state_probs()[:, 1]
            ids = sel.select(8)
            left_out = np.setdiff1d(np.arange(80), ids)
            assert before[ids].min() >= before[left_out].max()
            sel.update(ids, rng.choice([0.0, 0.5, 1.0], size=8))


def test_novelty_ranks_a_fresh_partial_prompt_above_a_much_visited_one():
    """Prompt 0 seen partial three times (P(partial) above 0.4, 3 visits), prompt 1 once (0.4, 1 visit).
    Paper DPS picks prompt 0; with novelty 1 its score p0 / 4 < 0.4 / 2 = 0.2, so prompt 1 is picked."""
    picks = {}
    for novelty in (0.0, 1.0):
        sel = DPSSelector(2, seed=0, novelty=novelty)
        for _ in range(2):
            sel.update(np.array([0]), np.array([0.5]))
        sel.update(np.array([0, 1]), np.array([0.5, 0.5]))
        p = sel.predicted_state_probs()[:, 1]
        assert p[1] == pytest.approx(0.4) and 0.4 < p[0] < 0.8
        picks[novelty] = int(sel.select(1)[0])
        assert sel.select(1, candidates=np.array([0, 1]))[0] == picks[novelty]  # the candidate path agrees
    assert picks == {0.0: 0, 1.0: 1}


def test_novelty_discounts_by_visits_and_unseen_prompts_keep_their_score():
    """Fresh prompts (belief 1/3, 0 visits) outrank a prompt seen partial once (0.4) when 0.4 / 2^n < 1/3."""
    for novelty, fresh_first in ((0.2, False), (0.5, True)):
        sel = DPSSelector(10, seed=0, novelty=novelty)
        sel.update(np.array([0]), np.array([0.5]))
        assert (0 not in sel.select(1)) == fresh_first
        assert (0 not in sel.select(1, candidates=np.array([0, 5]))) == fresh_first


def test_novelty_is_a_checked_setting():
    state = DPSSelector(10, novelty=0.4).state_dict()
    with pytest.raises(ValueError, match="novelty: 0.4 saved, 0.0 now"):
        DPSSelector(10).load_state_dict(state)
    with pytest.raises(ValueError, match="probe_share: 0.0 saved, 0.1 now"):
        DPSSelector(10, probe_share=0.1).load_state_dict(DPSSelector(10).state_dict())
    for bad in (-1.0, float("inf"), True):
        with pytest.raises(ValueError, match="novelty must be a finite number >= 0"):
            DPSSelector(10, novelty=bad)
    with pytest.raises(ValueError, match="option novelty must be a number"):
        make_selector("dps", 10, {"novelty": "high"})


def test_sweep_script_chooses_on_validation_and_reports_test(tmp_path):
    out = tmp_path / "sweep.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "sweep_dps_novelty.py"), "--novelty", "0.5",
                           "--seeds", "0", "1", "--test-seeds", "5", "6", "--out", str(out)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["novelty"] == [0.0, 0.5] and report["chosen"] in (0.0, 0.5)
    assert set(report["validation"]) == {"uniform", "dps", "dps, novelty 0.5"}
    assert set(report["test"]) >= {"uniform", "dps"} and set(report["sensitivity"]) == {"novelty_power_0",
                                                                                         "novelty_power_1"}
    assert "chosen on validation" in proc.stdout and report["seeds"] == [0, 1] and report["test_seeds"] == [5, 6]
