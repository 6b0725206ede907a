"""Stored baselines for a gate pinned to one machine: the record, its fingerprint, its checks.

A stored ratio (NEU over ALT, say) means something only on the machine and software that
measured it, for the knobs it measured, from code that is in git. So a baseline keeps all
three, and the gate refuses one that does not match rather than compare unlike numbers.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from diffusion.errors import ConfigError
from diffusion.files import read_json_record
from diffusion.paths import KNOB_BEFORE, KNOB_PHASE, MEASURED_PHASES, TrainingPath, format_path, parse_path
from diffusion.shapes import check

SCHEMA = "pmt-bench/baseline/2"
GATED_METRICS = ("train_samples_per_s", "val_pass_s")
ROLES = ("base", "candidate")


def fingerprint() -> dict[str, Any]:
    """What makes a same-run ratio machine-specific: CPU, cores, backend, versions, thread settings.

    Reads no framework, so a refusal answers before TensorFlow loads.
    """
    from diffusion.environment import SPEED_ENV_VARS, cpu_model, usable_cpus, versions

    return {
        "cpu_model": cpu_model(),
        "usable_cpus": usable_cpus(),
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "python": platform.python_version(),
        "versions": versions(),
        "threads": {name: os.environ.get(name) for name in SPEED_ENV_VARS},
    }


def fingerprint_diff(stored: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """Each difference as "field: stored -> here", nested dicts by key."""
    diffs = []
    for key in sorted(set(stored) | set(here)):
        a, b = stored.get(key), here.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [
                f"{key}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
            ]
        elif a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def knob_diff(stored: dict[str, Any], today: TrainingPath) -> list[str]:
    """The knobs that differ between a stored path and today's, among those a gated metric depends on.

    A knob an older record lacks takes the value every path had then (``KNOB_BEFORE``), and a
    knob of an unmeasured phase (``disk``: what a fit writes) cannot move a worker's figures,
    so neither makes a baseline stale. A stored knob that no longer exists counts as a difference.
    """
    stored = {**KNOB_BEFORE, **stored}
    now = today.knobs()
    return [
        f"{k}={stored.get(k)!r} -> {now.get(k)!r}"
        for k in sorted(set(stored) | set(now))
        if stored.get(k) != now.get(k) and KNOB_PHASE.get(k, MEASURED_PHASES[0]) in MEASURED_PHASES
    ]


def build(
    *,
    commit: str,
    preset: str,
    rounds: int,
    job_options: dict[str, Any],
    paths: dict[str, TrainingPath],
    measured: dict[str, dict[str, Any] | None],
    per_round: dict[str, list[float]],
    tolerance: float,
    environment: dict[str, Any],
) -> dict[str, Any]:
    """The baseline record (pure)."""
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit,
        "preset": preset,
        "rounds": rounds,
        "job_options": job_options,
        "paths": {role: {"spec": format_path(p), "knobs": p.knobs()} for role, p in paths.items()},
        "metrics": {
            m: {"ratio": iv["estimate"], "tolerance": tolerance, "interval": iv, "per_round": per_round[m]}
            for m, iv in measured.items()
            if iv
        },
        "fingerprint": fingerprint(),
        "environment": environment,
    }


def load(path: Path, *, allow_other_machine: bool = False) -> dict[str, Any]:
    """Read a baseline and check that it can be gated against here and now.

    Raises:
        ConfigError: missing or malformed; written from uncommitted code; measured on another
            machine or software (unless ``allow_other_machine``); or its paths' knobs differ
            from what the same path names mean today.
    """
    where = f"--baseline {str(path)!r}"
    data = read_json_record(path, "--baseline", schema=SCHEMA, hint=" (create one with --write-baseline)")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ConfigError(f"{where} has no metrics.")
    for name, entry in metrics.items():
        if name not in GATED_METRICS:
            raise ConfigError(f"{where}: unknown metric {name!r}; valid: {', '.join(GATED_METRICS)}.")
        ok = isinstance(entry, dict) and isinstance(entry.get("ratio"), (int, float)) and entry["ratio"] > 0
        ok = ok and isinstance(entry.get("tolerance"), (int, float)) and 0 <= entry["tolerance"] < 1
        if not ok:
            raise ConfigError(f"{where}: metric {name!r} needs a positive ratio and a tolerance in [0, 1).")
    commit = data.get("commit")
    if not isinstance(commit, str) or not commit or commit.endswith("-dirty"):
        raise ConfigError(
            f"{where} must come from a clean commit, but got commit {commit!r}; "
            "rewrite it with --write-baseline from a committed tree."
        )
    from bench.shapes import BASELINE  # here, not at the top: bench.stats loads SciPy

    check(data, BASELINE, where)
    if not allow_other_machine:
        diffs = fingerprint_diff(data["fingerprint"], fingerprint())
        if diffs:
            raise ConfigError(
                f"{where} was measured on another machine or software ({'; '.join(diffs)}); "
                "gate with --against REF instead, or pass --allow-other-machine."
            )
    for role in ROLES:
        entry = data["paths"].get(role) if isinstance(data["paths"], dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("spec"), str):
            raise ConfigError(f"{where} lacks the {role} path's spec and knobs.")
        diffs = knob_diff(entry.get("knobs") or {}, parse_path(entry["spec"]))
        if diffs:
            raise ConfigError(
                f"{where}: path {entry['spec']!r} ({role}) has other knobs today ({', '.join(diffs)}); "
                "rewrite the baseline with --write-baseline."
            )
    return data
