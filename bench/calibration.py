"""The pure side of a gate calibration (bench/calibrate.py runs it): the order of its runs, the
counts and rates of its record, and the progress line of a finished run. No I/O, no measuring."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.baseline import GATED_METRICS

SCHEMA = "pmt-bench/gate-calibration/1"
# The false-alarm bound holds in each direction: an A/A run whose interval lies wholly below the
# floor fires the gate; one wholly above the mirror of the floor (1 / (1 - tolerance)) would be
# reported as a gain, and a gate biased that way would fire on the reverse change.
TARGET = {"aa_runs": 60, "power_runs": 20, "false_alarm_rate_upper95": 0.05, "detection_rate": 0.90, "seconds": 180}
POWER = 0.90  # the detection rate a run's detectable loss is computed for
SCORED_TOLERANCES = (0.03, 0.04, 0.05, 0.075, 0.10, 0.15, 0.20, 0.25, 0.30)
# Per-round noise is recorded for these too: the median step time ignores a slow stretch of a
# round (another process waking up), which the gated mean throughput counts in full.
NOISE_METRICS = (*GATED_METRICS, "train_step_ms_median")


def schedule(aa_runs: int, power_runs: int) -> list[tuple[str, int]]:
    """(kind, index) of every run, the two kinds alternated: a calibration stopped early has some
    of each, and a slow drift of the machine (other work starting) falls on both."""
    runs = [("aa", i) for i in range(aa_runs)] + [("power", i) for i in range(power_runs)]
    return sorted(runs, key=lambda run: (run[1] / (aa_runs if run[0] == "aa" else power_runs), run[0]))


def fires_low(run: dict[str, Any], tolerance: float) -> bool:
    """The gate's rule: some check unmeasured, or its interval wholly below ``1 - tolerance``."""
    return any(c["measured"] is None or c["measured"]["high"] < 1 - tolerance for c in run["checks"])


def fires_high(run: dict[str, Any], tolerance: float) -> bool:
    """The mirror of the rule: some check's interval wholly above ``1 / (1 - tolerance)``."""
    return any(c["measured"] is not None and c["measured"]["low"] > 1 / (1 - tolerance) for c in run["checks"])


def detectable(run: dict[str, Any], tolerance: float) -> dict[str, float | None]:
    """Per gated metric, the loss this run would have caught with ``POWER`` (computed from its
    own per-round spread, ``bench.stats.detectable_loss``); None below 2 rounds."""
    from bench.stats import run_detectable_loss

    return {m: run_detectable_loss(run["per_round"].get(m, []), 1 - tolerance, power=POWER) for m in GATED_METRICS}


def aa_holds_one(aa: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Per gated metric, over the A/A runs (where the truth is 1): how many intervals hold 1 (the
    coverage of the gate's 95% interval at its own rounds, on this machine), and the geometric
    mean of the estimates with its 95% interval across runs (a bias that a fixed order or the
    machine would give shows there; each run draws its own order)."""
    from bench.stats import interval_of, rate_interval

    out: dict[str, dict[str, Any] | None] = {}
    for metric in GATED_METRICS:
        measured = [c["measured"] for r in aa for c in r["checks"] if c["metric"] == metric and c["measured"]]
        if len(measured) < 2:
            out[metric] = None
            continue
        held = sum(m["low"] <= 1 <= m["high"] for m in measured)
        bias = interval_of(np.array([m["estimate"] for m in measured]))
        out[metric] = {
            "runs": len(measured),
            "intervals_holding_1": held,
            "coverage_interval95": list(rate_interval(held, len(measured))),
            "mean_estimate": {"estimate": bias.estimate, "low": bias.low, "high": bias.high},
        }
    return out


def spread(values: list[float]) -> dict[str, float] | None:
    return {"median": float(np.median(values)), "min": min(values), "max": max(values)} if values else None


def upper95(events: int, n: int) -> float:
    """One-sided 95% Clopper-Pearson upper bound of a rate (0 of 60 gives 0.049)."""
    if n == 0:
        return 1.0
    if events >= n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(0.95, events + 1, n - events))


def summarise(
    runs: list[dict[str, Any]], tolerance: float, rounds: int, cpus: int | None, pairing: str
) -> dict[str, Any]:
    """The record's counts and rates (pure)."""
    from bench.stats import rate_interval

    aa = [r for r in runs if r["kind"] == "aa"]
    power = [r for r in runs if r["kind"] == "power"]
    false_alarms = sum(r["fired"] for r in aa)
    high_alarms = sum(fires_high(r, tolerance) for r in aa)
    detected = sum(r["fired"] for r in power)
    seconds = float(np.median([r["seconds"] for r in runs])) if runs else None
    noise = {}
    for metric in NOISE_METRICS:
        logs = [math.log(x) for r in aa for x in r["per_round"].get(metric, [])]
        noise[metric] = float(np.std(logs, ddof=1)) if len(logs) > 2 else None
    # What the plant really did: sleeping or spinning threads lose more than planned on a busy machine.
    planted = [
        c["measured"]["estimate"]
        for r in power
        for c in r["checks"]
        if c["metric"] == "train_samples_per_s" and c["measured"]
    ]
    rate_bound = upper95(false_alarms, len(aa))
    high_bound = upper95(high_alarms, len(aa))
    detection = detected / len(power) if power else 0.0
    losses = [detectable(r, tolerance) for r in runs]
    meets = (
        len(aa) >= TARGET["aa_runs"]
        and len(power) >= TARGET["power_runs"]
        and rate_bound <= TARGET["false_alarm_rate_upper95"]
        and high_bound <= TARGET["false_alarm_rate_upper95"]
        and detection >= TARGET["detection_rate"]
        and seconds is not None
        and seconds <= TARGET["seconds"]
    )
    return {
        "aa_runs": len(aa),
        "false_alarms": false_alarms,
        "false_alarm_rate_upper95": rate_bound,
        "false_alarm_rate_interval95": list(rate_interval(false_alarms, len(aa))) if aa else None,
        "false_alarms_high": high_alarms,
        "false_alarm_high_rate_upper95": high_bound,
        "false_alarm_high_rate_interval95": list(rate_interval(high_alarms, len(aa))) if aa else None,
        "power_runs": len(power),
        "detected": detected,
        "detection_rate": detection,
        "detection_rate_interval95": list(rate_interval(detected, len(power))) if power else None,
        "detectable_loss": {
            "power": POWER,
            "computed": "from each run's own per-round spread (bench.stats.detectable_loss)",
            **{m: spread([d[m] for d in losses if d[m] is not None]) for m in GATED_METRICS},
        },
        "aa_intervals": aa_holds_one(aa),
        "load_average_before": spread([r["load_average_before"] for r in runs if "load_average_before" in r]),
        "seconds_per_run": seconds,
        "planted_measured_train_ratio": float(np.median(planted)) if planted else None,
        "meets_target": meets,
        "per_round_log_sd": noise,
        "post_hoc_at_tolerance": {
            tolerance_key(t): {
                "false_alarms": sum(fires_low(r, t) for r in aa),
                "false_alarms_high": sum(fires_high(r, t) for r in aa),
                "detected": sum(fires_low(r, t) for r in power),
            }
            for t in SCORED_TOLERANCES
        },
        "rounds": rounds,
        "tolerance": tolerance,
        "cpus": cpus,
        "pairing": pairing,
    }


def tolerance_key(tolerance: float) -> str:
    """A post hoc tolerance as its record key: two decimals ("0.05"), three where it needs them ("0.075")."""
    return f"{tolerance:.2f}" if round(tolerance, 2) == tolerance else f"{tolerance:.3f}"


SHORT_METRICS = {"train_samples_per_s": "train", "val_pass_s": "val"}


def run_label(kind: str, i: int, aa_runs: int, power_runs: int) -> str:
    """``A/A 3/60`` or ``planted 1/20``: which run of its kind finished."""
    return f"A/A {i + 1}/{aa_runs}" if kind == "aa" else f"planted {i + 1}/{power_runs}"


def run_detail(result: dict[str, Any]) -> str:
    """A finished gate run, for its progress line: fired or not, and HEAD/REF per gated metric,
    with the interval of the metric that fired (else of the first); pure."""
    checks = result["checks"]
    shown = next((c for c in checks if not c["passed"]), checks[0] if checks else None)
    parts = []
    for check in sorted(checks, key=lambda c: c is not shown):
        name, m = SHORT_METRICS.get(check["metric"], check["metric"]), check["measured"]
        if m is None:
            parts.append(f"{name} not measured")
        elif check is shown:
            parts.append(f"{name} {m['estimate']:.2f}x [{m['low']:.2f}, {m['high']:.2f}]")
        else:
            parts.append(f"{name} {m['estimate']:.2f}x")
    errors = f"; {result['errors'][0]}" if result.get("errors") else ""
    return f"{'FIRED' if result['fired'] else 'passed'}: " + ", ".join(parts) + errors
