"""The pure side of a gate calibration (bench/calibrate.py runs it): the order of its runs, the
counts and rates of its record, and the progress line of a finished run. No I/O, no measuring."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.baseline import GATED_METRICS

SCHEMA = "pmt-bench/gate-calibration/1"
TARGET = {"aa_runs": 60, "power_runs": 20, "false_alarm_rate_upper95": 0.05, "detection_rate": 0.90, "seconds": 180}
SCORED_TOLERANCES = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30)
# Per-round noise is recorded for these too: the median step time ignores a slow stretch of a
# round (another process waking up), which the gated mean throughput counts in full.
NOISE_METRICS = (*GATED_METRICS, "train_step_ms_median")


def schedule(aa_runs: int, power_runs: int) -> list[tuple[str, int]]:
    """(kind, index) of every run, the two kinds alternated: a calibration stopped early has some
    of each, and a slow drift of the machine (other work starting) falls on both."""
    runs = [("aa", i) for i in range(aa_runs)] + [("power", i) for i in range(power_runs)]
    return sorted(runs, key=lambda run: (run[1] / (aa_runs if run[0] == "aa" else power_runs), run[0]))


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
    aa = [r for r in runs if r["kind"] == "aa"]
    power = [r for r in runs if r["kind"] == "power"]

    def fires(run: dict[str, Any], tol: float) -> bool:
        return any(c["measured"] is None or c["measured"]["high"] < 1 - tol for c in run["checks"])

    false_alarms = sum(r["fired"] for r in aa)
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
    detection = detected / len(power) if power else 0.0
    meets = (
        len(aa) >= TARGET["aa_runs"]
        and len(power) >= TARGET["power_runs"]
        and rate_bound <= TARGET["false_alarm_rate_upper95"]
        and detection >= TARGET["detection_rate"]
        and seconds is not None
        and seconds <= TARGET["seconds"]
    )
    return {
        "aa_runs": len(aa),
        "false_alarms": false_alarms,
        "false_alarm_rate_upper95": rate_bound,
        "power_runs": len(power),
        "detected": detected,
        "detection_rate": detection,
        "seconds_per_run": seconds,
        "planted_measured_train_ratio": float(np.median(planted)) if planted else None,
        "meets_target": meets,
        "per_round_log_sd": noise,
        "post_hoc_at_tolerance": {
            f"{t:.2f}": {
                "false_alarms": sum(fires(r, t) for r in aa),
                "detected": sum(fires(r, t) for r in power),
            }
            for t in SCORED_TOLERANCES
        },
        "rounds": rounds,
        "tolerance": tolerance,
        "cpus": cpus,
        "pairing": pairing,
    }


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
