"""A history's series and their change points: one metric at one preset, measured one way, on
one machine, in git's commit order, and the commits where it stepped (pure, but for git's
commit order). bench/history.py reads and writes the history; bench/history_report.py renders."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusion.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
# Change points. Simulated on Gaussian noise (150 series per length): a flat series of 8, 12, 20
# or 40 points shows a false step in 1%, 6%, 6% and 3% of them; a step of 4 noise sd halfway is
# found at its exact commit in 81%, 91%, 89% and 91%, one of 3 sd in 51-79%.
MIN_SIZE = 2
PENALTY = 3.0
ALPHA = 0.01


def machine_key(machine: dict[str, Any]) -> str:
    """A short stable id of a fingerprint: equal keys, one series."""
    return hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:8]


def machine_label(machine: dict[str, Any]) -> str:
    return f"{machine['cpu_model']}, {machine['usable_cpus']} cores, {machine['backend']} [{machine_key(machine)}]"


@dataclass(frozen=True)
class Point:
    commit: str
    dirty: bool
    created: str
    estimate: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Series:
    """One metric at one preset, measured one way, on one machine, in commit order.

    Attributes:
        setup: how it was measured ("gate against, in turns, train_seconds 1, val_passes 10").
        ordered_by: "git commit order", or why it is the entries' time instead.
    """

    metric: str
    unit: str
    preset: str
    setup: str
    machine: dict[str, Any]
    points: tuple[Point, ...]
    ordered_by: str

    @property
    def title(self) -> str:
        """Unique among series: metric, preset, setup, machine."""
        unit = f" ({self.unit})" if self.unit else ""
        setup = f", {self.setup}" if self.setup else ""
        return f"{self.metric}{unit}, {self.preset}{setup}, {machine_label(self.machine)}"


@dataclass(frozen=True)
class ChangePoint:
    """A step: ``index`` is the first point after it; ``before``/``after`` the segments' geometric means.

    Attributes:
        change: after / before - 1 (-0.12: 12% lower from this commit on).
        pvalue: Welch's two-sided t-test between the segments on either side.
    """

    index: int
    commit: str
    before: float
    after: float
    change: float
    pvalue: float


def commit_order(root: Path = ROOT) -> list[str]:
    """This repository's commits, oldest first (``git rev-list --topo-order --reverse --all``); empty without git."""
    try:
        proc = subprocess.run(
            ["git", "rev-list", "--topo-order", "--reverse", "--all"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return proc.stdout.split() if proc.returncode == 0 else []


def build_series(
    entries: Iterable[dict[str, Any]], order: Sequence[str], metrics: Sequence[str] | None = None
) -> list[Series]:
    """Group entries into series (metric, preset, setup, machine) and order each by ``order`` (commits,
    oldest first; a short id matches its prefix) when it holds every commit, else by time.

    Raises:
        ConfigError: a name in ``metrics`` that no entry has (the valid ones listed).
    """
    entries = list(entries)
    known = sorted({name for e in entries for name in e["metrics"]})
    if metrics:
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise ConfigError(f"--metric must be one of {', '.join(known) or '(none)'}, but got {', '.join(unknown)}.")
    position = {sha: i for i, sha in enumerate(order)}

    def where(commit: str) -> int | None:
        if commit in position:
            return position[commit]
        return next((i for sha, i in position.items() if sha.startswith(commit)), None)

    groups: dict[tuple[str, str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for e in entries:
        for name, m in e["metrics"].items():
            if not metrics or name in metrics:
                key = (name, e["preset"], e.get("setup", ""), machine_key(e["machine"]))
                groups.setdefault(key, []).append((e, m))
    series = []
    for (name, preset, setup, _), rows in sorted(groups.items()):
        places = {e["commit"]: where(e["commit"]) for e, _ in rows}
        missing = sum(p is None for p in places.values())
        if missing:
            rows.sort(key=lambda r: r[0]["created"])
            ordered_by = f"time made ({missing} of {len(places)} commits are not in this repository)"
        else:
            rows.sort(key=lambda r: (places[r[0]["commit"]], r[0]["created"]))
            ordered_by = "git commit order"
        points = tuple(
            Point(e["commit"], e["dirty"], e["created"], m["estimate"], m["low"], m["high"], m["n"]) for e, m in rows
        )
        unit = rows[0][1].get("unit", "")
        series.append(Series(name, unit, preset, setup, rows[0][0]["machine"], points, ordered_by))
    return series


def noise_sd(values: Sequence[float]) -> float:
    """The point-to-point noise of a series from its first differences (median absolute difference
    over 0.6745 * sqrt 2, an sd for Gaussian noise), which one step barely moves."""
    import numpy as np

    d = np.abs(np.diff(np.asarray(values, float)))
    return float(np.median(d) / 0.6745 / math.sqrt(2)) if len(d) else 0.0


def find_steps(
    values: Sequence[float], *, penalty: float = PENALTY, alpha: float = ALPHA, min_size: int = MIN_SIZE
) -> list[tuple[int, float]]:
    """Where a series steps: (index of the first point after the step, p-value), oldest first.

    Args:
        values: the series (in log form for ratios and speeds: a step is then relative).
        penalty: PELT's cost of one more step, in units of ``sigma^2 log n``.
        alpha: a step is kept when Welch's t-test between its segments gives p below it.
        min_size: the fewest points of a segment.
    """
    import numpy as np
    import ruptures
    from scipy import stats

    x = np.asarray(values, float)
    n = len(x)
    if n < 2 * min_size:
        return []
    sd = noise_sd(x)
    if sd == 0:  # a flat stretch of equal values: any other value is a step
        sd = max(float(np.std(x)), 1e-12) * 1e-3
    # PELT finds the segmentation of least cost; `predict` ends its list with n itself.
    found = (
        ruptures.Pelt(model="l2", min_size=min_size, jump=1)
        .fit(x.reshape(-1, 1))
        .predict(pen=penalty * sd**2 * math.log(n))[:-1]
    )
    kept: list[tuple[int, float]] = []
    bounds = [0, *found, n]
    for i in range(1, len(bounds) - 1):
        left, right = x[(kept[-1][0] if kept else 0) : bounds[i]], x[bounds[i] : bounds[i + 1]]
        if np.ptp(left) == 0 and np.ptp(right) == 0:
            p = 0.0 if left[0] != right[0] else 1.0
        else:
            p = float(stats.ttest_ind(left, right, equal_var=False).pvalue)
        if p < alpha:
            kept.append((bounds[i], p))
    return kept


def change_points(series: Series) -> list[ChangePoint]:
    """The steps of a series, each at its commit: on the log of the estimates when all are positive."""
    import numpy as np

    estimates = np.array([p.estimate for p in series.points])
    positive = bool(np.all(estimates > 0))
    values = np.log(estimates) if positive else estimates
    steps = find_steps(values)
    found = []
    bounds = [0, *(i for i, _ in steps), len(values)]
    for k, (index, p) in enumerate(steps):
        before, after = values[bounds[k] : index].mean(), values[index : bounds[k + 2]].mean()
        if positive:
            before, after = math.exp(before), math.exp(after)
        change = after / before - 1 if before else math.inf
        found.append(ChangePoint(index, series.points[index].commit, float(before), float(after), change, p))
    return found


# ---- command line --------------------------------------------------------------------------------
