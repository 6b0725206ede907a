"""The main job's plots: measured ratios against the claims' bands, and the scaling suite's
throughput and efficiency against cores (bench/report.py renders the tables)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from bench.report import header_line
from bench.stats import verdict_word
from diffusion.files import write_bytes_atomic

VERDICT_COLOR = {  # the plot's colours, one per verdict, with a key
    "holds": "tab:green",
    "refuted": "tab:red",
    "refuted (reversed)": "darkred",
    "exceeded": "tab:cyan",
    "inconclusive": "tab:orange",
    "projection": "tab:blue",
}


def _save(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` atomically: a reader sees the old plot or the new one."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def plot(result: dict[str, Any], path: Path) -> None:
    """Measured ratios with 95% CI whiskers against the claims' bands, on a log axis, coloured
    by verdict with a key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, LogLocator

    rows = [r for r in result["claims"] if r["measured"] and r.get("kind", "ratio") != "share"]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 2.2))
    for y, row in enumerate(rows):
        m = row["measured"]
        color = VERDICT_COLOR.get(verdict_word(row["verdict"]), "grey")
        ax.errorbar(
            m["estimate"],
            y,
            xerr=[[m["estimate"] - m["low"]], [m["high"] - m["estimate"]]],
            fmt="o",
            color=color,
            capsize=4,
        )
        low, high = row.get("band") or (
            row["claimed"] / (1 + row["tolerance"]),
            row["claimed"] * (1 + row["tolerance"]),
        )
        ax.plot([low, high], [y, y], color="black", alpha=0.2, linewidth=8, solid_capstyle="butt")
        ax.plot(row.get("claimed_here", row["claimed"]), y, "|", color="black", markersize=12)
    ax.set_yticks(range(len(rows)), [f"{r['id']} ({r['verdict']}, n={r['rounds']})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("ratio, times better for the candidate (log scale)")
    used = sorted({verdict_word(r["verdict"]) for r in rows} & set(VERDICT_COLOR))
    handles = [Patch(color=VERDICT_COLOR[v], label=v) for v in used]
    handles += [
        Line2D([], [], color="black", alpha=0.2, linewidth=8, label="claim's band"),
        Line2D([], [], color="black", marker="|", linestyle="", markersize=12, label="claimed"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=8, frameon=False)
    env = result["environment"]
    ax.set_title(f"{header_line(result)}\n{env.get('cpu_model')}, {env.get('usable_cpus')} CPUs", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_scaling(result: dict[str, Any], path: Path) -> None:
    """Training samples/s and parallel efficiency against cores, per path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["scaling"]["table"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    for path_name in result["scaling"]["paths"]:
        rows = [r for r in table if r["path"] == path_name and r["train_samples_per_s"]]
        cores = [r["cores"] for r in rows]
        left.plot(cores, [r["train_samples_per_s"] for r in rows], marker="o", label=path_name)
        right.plot(cores, [r["train_samples_per_s_efficiency"] or 0 for r in rows], marker="o", label=path_name)
    left.set_xlabel("cores (CPU affinity)")
    left.set_ylabel("training samples/s")
    left.set_yscale("log")
    right.set_xlabel("cores (CPU affinity)")
    right.set_ylabel("parallel efficiency (speedup / cores)")
    right.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    for ax in (left, right):
        ax.set_xticks(result["scaling"]["counts"])
        ax.legend(fontsize=8)
    fig.suptitle(header_line(result), fontsize=8)
    fig.tight_layout()
    _save(fig, path)
