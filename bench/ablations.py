"""The one-knob ablations' rows: each ablation role's phase against its reference role, paired
by round (pure; bench.compare measures, bench.report renders)."""

from __future__ import annotations

from typing import Any

from bench.analysis import interval_dict, phase_median, role_ratios, worker_errors
from bench.claims import METRICS
from bench.stats import CONFIDENCE, rounds_interval


def ablation_metric(phase: str) -> str:
    return {"train": "train_samples_per_s", "validate": "val_pass_s"}[phase]


def first_call_s(records: list[dict[str, Any]], role: str, phase: str) -> float | None:
    """The median first (traced) call: the first step, or the first validation batch (a whole
    first pass in records from before validation was measured in turns)."""
    if phase == "train":
        return phase_median(records, role, phase, "first_step_s")
    call = phase_median(records, role, phase, "first_val_call_s")
    return call if call is not None else phase_median(records, role, phase, "first_val_pass_s")


def ablation_rows(
    records: list[dict[str, Any]], roles: list[dict[str, Any]], *, confidence: float = CONFIDENCE
) -> list[dict[str, Any]]:
    """For each ablation role: its phase's metric against its reference role, paired by round,
    with its interval at ``confidence`` (a sequential run's stopping look's, like its claims)."""
    rows = []
    for role in roles:
        name, reference = role["name"], role["reference"]
        if reference is None:
            continue
        for phase in role["phases"]:
            metric = ablation_metric(phase)
            ratios = role_ratios(records, reference, name, metric)
            interval = rounds_interval(ratios, confidence) if ratios else None
            errors = worker_errors(records, name)
            train = phase == "train"
            rows.append(
                {
                    "role": name,
                    "spec": role["spec"],
                    "knobs": role["knobs"],
                    "phase": phase,
                    "metric": metric,
                    "unit": METRICS[metric].unit,
                    "reference": reference,
                    "reference_value": phase_median(records, reference, phase, metric),
                    "value": phase_median(records, name, phase, metric),
                    "ratio": interval_dict(interval),
                    "first_call_s": first_call_s(records, name, phase),
                    "samples_per_s": phase_median(
                        records, name, phase, "train_samples_per_s" if train else "val_samples_per_s"
                    ),
                    "val_loss_stderr": None if train else phase_median(records, name, phase, "val_loss_stderr"),
                    "input_wait_share": phase_median(records, name, phase, "input_wait_share") if train else None,
                    "note": f"not measured: {errors[0]}" if interval is None and errors else "",
                }
            )
    return rows
