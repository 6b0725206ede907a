"""The gate calibration's figures: the loss a run can detect (its power, checked by simulation
at the round counts the gate uses), Clopper-Pearson intervals of its rates, false alarms in
both directions, refiguring a saved record, the calibration in force, and the background load."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.calibration import summarise
from bench.load import JITTER, Load, LoadPlan, stretches
from bench.stats import detectable_loss, rate_interval, t_quantile
from tests.conftest import ROOT
from tests.test_gate import bench as run_module
from tests.test_gate import one_line_exit_2

RECORD = ROOT / "results" / "gate-calibration-tiny-epyc-2cpu.json"


def caught(true_loss: float, sd: float, n: int, floor: float, experiments: int, seed: int) -> float:
    """The share of simulated gate runs (normal log ratios) whose 95% t-interval lies wholly below ``floor``."""
    logs = np.random.default_rng(seed).normal(math.log(1 - true_loss), sd, (experiments, n))
    high = logs.mean(axis=1) + t_quantile(0.95, n - 1) * logs.std(axis=1, ddof=1) / math.sqrt(n)
    return float(np.mean(high < math.log(floor)))


@pytest.mark.parametrize(("n", "sd"), [(3, 0.05), (5, 0.03), (5, 0.06), (8, 0.02)])
def test_a_loss_at_the_detectable_size_is_caught_in_90_percent_of_simulated_runs(n, sd):
    floor = 0.96
    loss = detectable_loss(sd, n, floor)
    assert 0.88 <= caught(loss, sd, n, floor, 20_000, seed=n) <= 0.92
    # Treating the spread as known (a normal quantile for the power) claims 90% too early: the
    # test would catch that formula.
    naive = 1 - floor * math.exp(-(t_quantile(0.95, n - 1) + scipy_stats.norm.ppf(0.9)) * sd / math.sqrt(n))
    assert naive < loss and caught(naive, sd, n, floor, 20_000, seed=n + 1) < 0.88


def test_the_detectable_loss_falls_with_rounds_and_rises_with_spread_and_floor():
    assert detectable_loss(0.03, 8, 0.96) < detectable_loss(0.03, 5, 0.96) < detectable_loss(0.03, 3, 0.96)
    assert detectable_loss(0.02, 5, 0.96) < detectable_loss(0.04, 5, 0.96)
    assert detectable_loss(0.03, 5, 0.96) < detectable_loss(0.03, 5, 0.90)
    assert detectable_loss(0.0, 5, 0.96) == pytest.approx(0.04)
    for bad in ((0.03, 1, 0.96), (-0.1, 5, 0.96), (0.03, 5, 1.5)):
        with pytest.raises(ValueError, match="need n >= 2"):
            detectable_loss(*bad)


def test_rate_intervals_are_clopper_pearson():
    low, high = rate_interval(0, 60)
    assert low == 0 and high == pytest.approx(1 - 0.025 ** (1 / 60))
    low, high = rate_interval(20, 20)
    assert low == pytest.approx(0.025 ** (1 / 20)) and high == 1
    low, high = rate_interval(3, 20)
    assert (low, high) == pytest.approx(
        (scipy_stats.beta.ppf(0.025, 3, 18), scipy_stats.beta.ppf(0.975, 4, 17)), rel=1e-9
    )


def run(kind: str, low: float, high: float, per_round: list[float]) -> dict:
    measured = {"estimate": math.sqrt(low * high), "low": low, "high": high, "n": len(per_round)}
    check = {"metric": "train_samples_per_s", "measured": measured}
    fired = high < 0.96
    return {
        "kind": kind,
        "fired": fired,
        "seconds": 40.0,
        "checks": [check],
        "per_round": {"train_samples_per_s": per_round},
    }


def test_false_alarms_are_counted_in_both_directions_and_each_must_meet_the_bound():
    rounds = [1.0, 1.02, 0.98, 1.01, 0.99]
    aa = [run("aa", 0.98, 1.02, rounds)] * 59
    planted = [run("power", 0.86, 0.92, [0.9 * r for r in rounds])] * 20
    fine = summarise([*aa, run("aa", 0.98, 1.02, rounds), *planted], 0.04, 5, None, "turns")
    assert (fine["false_alarms"], fine["false_alarms_high"], fine["detected"]) == (0, 0, 20)
    assert fine["meets_target"] is True
    assert fine["false_alarm_high_rate_interval95"] == pytest.approx([0.0, 1 - 0.025 ** (1 / 60)])
    assert fine["detection_rate_interval95"] == pytest.approx([0.025 ** (1 / 20), 1.0])
    # One A/A run reading a 5% gain, wholly above 1 / 0.96: the gate would not fire, but a gate
    # biased this way fires on the reverse change; the bound is then 7.7% and the target missed.
    biased = summarise([*aa, run("aa", 1.045, 1.06, rounds), *planted], 0.04, 5, None, "turns")
    assert (biased["false_alarms"], biased["false_alarms_high"]) == (0, 1)
    assert biased["false_alarm_high_rate_upper95"] == pytest.approx(0.0766, abs=1e-4)
    assert biased["meets_target"] is False
    assert biased["post_hoc_at_tolerance"]["0.04"]["false_alarms_high"] == 1
    # Each run's detectable loss, from its own spread, summarised over the runs.
    loss = biased["detectable_loss"]["train_samples_per_s"]
    expected = detectable_loss(float(np.std(np.log(rounds), ddof=1)), 5, 0.96)
    assert loss["median"] == pytest.approx(expected) and loss["min"] == pytest.approx(expected)
    assert biased["detectable_loss"]["val_pass_s"] is None  # not in these runs


def test_a_saved_calibration_is_refigured_by_this_code_into_a_new_record(tmp_path, blocked_tf):
    out = tmp_path / "refigured.json"
    result = run_module(
        "bench.calibrate", "--from", str(RECORD), "--json", str(out), "--note", "Learnt later.", **blocked_tf
    )
    assert result.returncode == 0, result.stderr
    old, new = json.loads(RECORD.read_text()), json.loads(out.read_text())
    assert new["note"].endswith(". Learnt later." if old.get("note") else "Learnt later.")
    assert new["runs"] == old["runs"] and new["commit"] == old["commit"] and new["summary_commit"]
    assert (new["false_alarms"], new["detected"]) == (old["false_alarms"], old["detected"])
    assert new["false_alarms_high"] == 0 and new["detectable_loss"]["train_samples_per_s"]["median"] > 0
    assert "false alarms above" in out.with_suffix(".md").read_text() and out.with_suffix(".png").exists()
    one_line_exit_2(run_module("bench.calibrate", "--from", str(out), "--json", str(out), **blocked_tf), "--json")
    one_line_exit_2(run_module("bench.calibrate", **blocked_tf), "give --json FILE")


def test_the_calibration_in_force_is_the_newest_that_met_its_target(tmp_path, monkeypatch):
    import bench.gate_options

    def record(created: str, tolerance: float, met: bool = True) -> str:
        return json.dumps(
            {"meets_target": met, "created": created, "tolerance": tolerance, "rounds": 5, "pairing": "turns"}
        )

    (tmp_path / "gate-calibration-tiny-a.json").write_text(record("2026-12-03T09:00:00+0000", 0.04))
    (tmp_path / "gate-calibration-tiny-b.json").write_text(record("2026-11-20T09:00:00+0000", 0.10))
    (tmp_path / "gate-calibration-tiny-c.json").write_text(record("2026-12-04T09:00:00+0000", 0.02, met=False))
    monkeypatch.setattr(bench.gate_options, "RESULTS", tmp_path)
    defaults = bench.gate_options.calibrated_defaults("tiny")
    assert (defaults["tolerance"], defaults["source"]) == (0.04, "gate-calibration-tiny-a.json")


def test_the_background_load_is_seeded_and_busy_its_duty_on_average():
    draws = stretches(0.5, 0.1, seed=3)
    first = [next(draws) for _ in range(2000)]
    again = stretches(0.5, 0.1, seed=3)
    assert [next(again) for _ in range(2000)] == first
    spin, sleep = (sum(x) for x in zip(*first, strict=True))
    assert spin / (spin + sleep) == pytest.approx(0.5, abs=0.02)
    assert all(JITTER[0] * 0.05 <= s <= JITTER[1] * 0.05 for s, _ in first)
    assert LoadPlan(0.3).record()["duty"] == 0.3


@pytest.mark.slow
def test_the_background_load_takes_its_share_of_a_core_and_stops_with_its_block():
    import psutil

    with Load(LoadPlan(0.5, period_ms=20)) as load:
        time.sleep(2.0)
        pids = [p.pid for p in load.procs]
    (share,) = load.shares
    assert 0.15 < share < 0.85, share  # about half a core, however busy the machine is
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


def test_bad_load_arguments_are_one_line_exit_2(blocked_tf, tmp_path):
    one_line_exit_2(run_module("bench.load", "--duty", "0", **blocked_tf), "--duty must be positive")
    one_line_exit_2(
        run_module("bench.calibrate", "--background-load", "1.5", "--json", str(tmp_path / "c.json"), **blocked_tf),
        "--background-load must be at most 1.0",
    )


def test_the_aa_runs_report_how_many_intervals_hold_1_and_the_bias_across_runs():
    rounds = [1.0, 1.02, 0.98, 1.01, 0.99]
    aa = [run("aa", 0.98, 1.02, rounds)] * 18 + [run("aa", 1.01, 1.05, rounds)] * 2
    summary = summarise(aa, 0.04, 5, None, "turns")
    train = summary["aa_intervals"]["train_samples_per_s"]
    assert (train["runs"], train["intervals_holding_1"]) == (20, 18)
    assert train["coverage_interval95"] == pytest.approx(list(rate_interval(18, 20)))
    geometric = math.exp((18 * math.log(math.sqrt(0.98 * 1.02)) + 2 * math.log(math.sqrt(1.01 * 1.05))) / 20)
    assert train["mean_estimate"]["estimate"] == pytest.approx(geometric)
    assert train["mean_estimate"]["low"] < geometric < train["mean_estimate"]["high"]
    assert summary["aa_intervals"]["val_pass_s"] is None
