"""Scale dependence: the speed suite at tiny, small and seed, its ratios against model size.

A compiled step wins most where Python's per-op overhead dominates a step, which is where a
model is small: the same claim reads 12x at ``small`` and 3x at ``seed``. ``--suite scale``
runs the whole speed suite (bench/speed.py) at each preset, one after the other, each with
its own budget and sequential rule, and this module keeps each preset's V/T rows beside the
parameter count its workers counted, renders the table and plots the ratios against the
parameter count. Pure apart from the plot's file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.analysis import WATCHED_FAMILIES  # the V/T claims a sequential run watches

SCALE_PRESETS = ("tiny", "small", "seed")  # smallest first; the last is the report's model
# The claims plotted: the two headline ratios and the two compiled steps (the scale-bound ones).
PLOTTED = ("T1", "T3", "V1", "V4")


def params_of(records: list[dict[str, Any]]) -> int | None:
    """The model's trainable parameters, as the workers counted them (the base and candidate
    share the preset's model)."""
    counts = {rec["params"] for rec in records if isinstance(rec.get("params"), int)}
    return max(counts) if counts else None


def entry(preset: str, speed: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One preset's line of the scale record: its size, how its rounds ended, its V/T rows."""
    sequential = speed.get("sequential") or {}
    return {
        "preset": preset,
        "params": params_of(speed["records"]),
        "rounds": sequential.get("rounds"),
        "stop": sequential.get("stop"),
        "confidence": sequential.get("confidence"),
        "wall_s": sequential.get("wall_s"),
        "rows": [row for row in rows if row.get("family") in WATCHED_FAMILIES],
    }


def table(scale: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Columns and rows: a row per claim, a cell per preset (ratio [CI], verdict)."""
    presets = scale["presets"]
    columns = ("id", "claimed", *(f"{p['preset']} ({fmt_params(p['params'])}, n={p['rounds']})" for p in presets))
    ids = [row["id"] for row in presets[-1]["rows"]] if presets else []
    out = []
    for cid in ids:
        cells = []
        for p in presets:
            row = next((r for r in p["rows"] if r["id"] == cid), None)
            m = row.get("measured") if row else None
            cells.append(cell(m, row["verdict"]) if m else "-")
        claimed = next(r["claimed"] for r in presets[-1]["rows"] if r["id"] == cid)
        out.append([cid, f"{claimed:g}x", *cells])
    return columns, out


def cell(measured: dict[str, Any], verdict: str) -> str:
    """A ratio with its interval and verdict; one round has no interval, and says so."""
    if measured.get("n", 2) < 2:
        return f"{measured['estimate']:.3g}x (n = 1: no interval) {verdict}"
    return f"{measured['estimate']:.3g}x [{measured['low']:.3g}, {measured['high']:.3g}] {verdict}"


def fmt_params(params: int | None) -> str:
    if params is None:
        return "? params"
    return f"{params / 1e6:.2g}M params" if params >= 1e6 else f"{params / 1e3:.3g}k params"


def plot(scale: dict[str, Any], path: Path) -> None:
    """Each plotted claim's ratio with its interval against the model's parameter count (log
    axes), the claimed value as a dashed line of the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = [p for p in scale["presets"] if p["params"]]
    fig, ax = plt.subplots(figsize=(8, 5.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, cid in enumerate(PLOTTED):
        points = []
        for p in presets:
            row = next((r for r in p["rows"] if r["id"] == cid), None)
            if row and row.get("measured"):
                points.append((p["params"], row["measured"], row["claimed"], row["text"]))
        if not points:
            continue
        color = colors[i % len(colors)]
        xs = [x for x, *_ in points]
        ys = [m["estimate"] for _, m, *_ in points]
        ax.plot(xs, ys, "-", color=color, label=f"{cid}: {points[0][3]} (claimed {points[0][2]:g}x, dashed)")
        for x, m, *_ in points:
            if m.get("n", 2) >= 2:  # one round has no interval: a hollow marker
                ax.errorbar([x], [m["estimate"]], yerr=[[m["estimate"] - m["low"]], [m["high"] - m["estimate"]]],
                            fmt="o", color=color, capsize=4)  # fmt: skip
            else:
                ax.plot([x], [m["estimate"]], "o", mfc="white", color=color)
        ax.axhline(points[0][2], color=color, linestyle="--", linewidth=1, alpha=0.7)
    ax.plot([], [], "o", mfc="white", color="grey", label="one round: no interval")
    for p in presets:
        ax.annotate(
            f"{p['preset']} (n={p['rounds']})", (p["params"], 1), textcoords="offset points", xytext=(0, 6),
            ha="center", fontsize=8,
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xlabel("trainable parameters (counted by the workers)")
    ax.set_ylabel("NEU over ALT, times better")
    ax.set_title("Speed-ups against model size (intervals at each run's level)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
