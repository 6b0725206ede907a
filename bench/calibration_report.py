"""Rendering of a gate calibration record (bench/calibrate.py): a Markdown summary and a plot
of every run's HEAD/REF interval against the floor. Pure functions of the record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.baseline import GATED_METRICS

KINDS = {"aa": "A/A (no change)", "power": "planted slowdown"}


def rate(events: int, runs: int, interval: list[float] | None, bound: float) -> str:
    ci = f"95% interval [{interval[0]:.1%}, {interval[1]:.1%}], " if interval else ""
    return f"{events} of {runs} ({ci}one-sided 95% upper bound {bound:.1%})"


def loss_row(record: dict[str, Any]) -> list[tuple[str, str]]:
    losses = record.get("detectable_loss")
    if not losses:
        return []
    parts = [
        f"{m} {v['median']:.1%} (median; {v['min']:.1%}-{v['max']:.1%})"
        for m in GATED_METRICS
        if (v := losses.get(m)) is not None
    ]
    return [(f"detectable loss at {losses['power']:.0%} power (computed from each run's spread)", ", ".join(parts))]


def coverage_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for metric, c in (record.get("aa_intervals") or {}).items():
        if c is None:
            continue
        lo, hi = c["coverage_interval95"]
        m = c["mean_estimate"]
        rows.append(
            (
                f"A/A: {metric}",
                f"{c['intervals_holding_1']} of {c['runs']} intervals hold 1 (coverage of the 95% interval; "
                f"[{lo:.1%}, {hi:.1%}]); estimates' geometric mean {m['estimate']:.4f} [{m['low']:.4f}, {m['high']:.4f}] (bias)",
            )
        )
    return rows


def summary_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    target = record["target"]
    planted = record.get("planted_measured_train_ratio")
    sd = record.get("per_round_log_sd", {})
    tol = record["tolerance"]
    load = record.get("background_load")
    shares = (load or {}).get("measured_core_share")
    load_text = (
        (f"{load['what']}; measured {', '.join(f'{s:.0%}' for s in shares)} of a core" if shares else load["what"])
        if load
        else "none"
    )
    averages = record.get("load_average_before")
    high = (
        [
            (
                f"false alarms above (interval wholly above the mirror floor {1 / (1 - tol):.3g}x)",
                rate(
                    record["false_alarms_high"],
                    record["aa_runs"],
                    record.get("false_alarm_high_rate_interval95"),
                    record["false_alarm_high_rate_upper95"],
                )
                + f"; target <= {target['false_alarm_rate_upper95']:.0%}",
            )
        ]
        if "false_alarms_high" in record
        else []
    )
    return [
        ("gate", f"{record['preset']}, {record['rounds']} rounds, tolerance {tol:.0%} (floor {1 - tol:.3g}x), "
                 f"pairing {record.get('pairing', 'processes')}, cores {record.get('cpus') or 'all'}"),
        ("background load", load_text),
        *([("load average before each run", f"{averages['median']:.2f} (median; {averages['min']:.2f}-{averages['max']:.2f})")]
          if averages else []),
        ("A/A runs", f"{record['aa_runs']} (target >= {target['aa_runs']})"),
        ("false alarms (interval wholly below the floor: the gate fires)",
         rate(record["false_alarms"], record["aa_runs"], record.get("false_alarm_rate_interval95"),
              record["false_alarm_rate_upper95"]) + f"; target <= {target['false_alarm_rate_upper95']:.0%}"),
        *high,
        *coverage_rows(record),
        ("planted runs", f"{record['power_runs']} (target >= {target['power_runs']})"),
        ("detected", f"{record['detected']} ({record['detection_rate']:.0%}"
                     + (f", 95% interval [{ci[0]:.1%}, {ci[1]:.1%}]" if (ci := record.get("detection_rate_interval95")) else "")
                     + f"; target >= {target['detection_rate']:.0%})"),
        ("planted slowdown", f"{record['planted_slowdown']:.1%} of step time: training x{record['planted_throughput_ratio']:.3f} "
                             f"planned, x{planted:.3f} measured (median)" if planted else f"{record['planted_slowdown']:.0%} of step time"),
        *loss_row(record),
        ("seconds per gate run", f"{record['seconds_per_run']:.0f} (median; target <= {target['seconds']})"
                                 if record.get("seconds_per_run") else "-"),
        ("per-round noise (sd of log HEAD/REF, A/A)",
         ", ".join(f"{m} {v:.3f}" for m, v in sd.items() if v is not None) or "-"),
        ("meets target", "yes" if record["meets_target"] else "no"),
        ("machine", record["machine"]),
        ("commit", record["commit"] + (f" (figures computed by {record['summary_commit']})"
                                       if record.get("summary_commit") else "")),
        ("command", f"`{record['command']}`"),
        *([("resumed", f"{record['resumed_runs']} run(s) measured by the cut calibration it continued")]
          if record.get("resumed_runs") else []),
    ]  # fmt: skip


def markdown(record: dict[str, Any], plot_name: str | None = None) -> str:
    parts = [f"# Gate calibration: {record['preset']}, {record['machine']}", "", "| | |", "|---|---|"]
    parts += [f"| {name} | {value} |" for name, value in summary_rows(record)]
    if record.get("note"):
        parts += ["", f"Note: {record['note']}"]
    parts += ["", "## The same intervals at other tolerances (post hoc: for choosing, not for claiming)", ""]
    parts += ["| tolerance | false alarms below | false alarms above | detected |", "|---|---|---|---|"]
    parts += [
        f"| {tol} | {v['false_alarms']} of {record['aa_runs']} | "
        + (f"{v['false_alarms_high']} of {record['aa_runs']}" if "false_alarms_high" in v else "-")
        + f" | {v['detected']} of {record['power_runs']} |"
        for tol, v in record["post_hoc_at_tolerance"].items()
    ]
    if plot_name:
        parts += ["", f"![every run's HEAD/REF interval against the floor]({plot_name})"]
    return "\n".join(parts) + "\n"


FIRED_LABEL = "fired: x at the top of an interval wholly below the floor"


def figure(record: dict[str, Any]) -> Any:
    """Each run's HEAD/REF estimate and 95% interval per gated metric, A/A and planted runs
    apart, with the floor (1 - tolerance) that a run must fall wholly below to fire, and one
    legend for both panels below them (inside, it covered runs). Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(GATED_METRICS), figsize=(11, 4.6), sharey=False)
    floor = 1 - record["tolerance"]
    for ax, metric in zip(axes, GATED_METRICS, strict=True):
        x = 0
        for kind, colour in (("aa", "tab:blue"), ("power", "tab:orange")):
            runs = [r for r in record["runs"] if r["kind"] == kind]
            for run in runs:
                check = next((c for c in run["checks"] if c["metric"] == metric), None)
                if check is None or check["measured"] is None:
                    continue
                m = check["measured"]
                ax.errorbar(
                    x, m["estimate"], yerr=[[m["estimate"] - m["low"]], [m["high"] - m["estimate"]]],
                    fmt="o", ms=3, color=colour, ecolor=colour, elinewidth=1,
                    label=KINDS[kind] if run is runs[0] else None,
                )  # fmt: skip
                if not check["passed"]:
                    ax.plot(x, m["high"], marker="x", color="tab:red", ms=6, ls="none")
                x += 1
            x += 3
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(floor, color="tab:red", lw=1, ls="--", label=f"floor {floor:.2f} (fires when the interval is below)")
        ax.axhline(
            1 / floor, color="tab:purple", lw=1, ls="-.", label=f"mirror {1 / floor:.3g} (a false gain: interval above)"
        )
        if metric == "train_samples_per_s":
            ax.axhline(
                record["planted_throughput_ratio"], color="tab:orange", lw=0.8, ls=":", label="planted (planned)"
            )
        ax.set_title(f"{metric}: HEAD/REF, 95% interval per run", fontsize=9)
        ax.set_xlabel("gate run (A/A, then planted)")
        ax.grid(True, axis="y", alpha=0.3)
    # One legend for both panels, outside them; the red x has its entry even where no run fired.
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    handles[FIRED_LABEL] = Line2D([], [], marker="x", color="tab:red", ms=6, ls="none")
    labels = sorted(handles, key=lambda label: label not in KINDS.values())  # the runs first
    fig.legend(
        [handles[label] for label in labels], labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=7
    )
    fig.suptitle(
        f"{record['preset']}, {record['rounds']} rounds, {record.get('pairing', 'processes')}; {record['machine']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))  # the bottom 12% holds the legend
    return fig


def legend_labels(fig: Any) -> list[str]:
    """The figure legend's entries, in order."""
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


def plot(record: dict[str, Any], path: Path) -> None:
    """Write ``figure(record)`` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(record)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(record: dict[str, Any], json_path: Path) -> tuple[Path, Path]:
    """The Markdown and PNG beside a calibration record's JSON; returns their paths."""
    png, md = json_path.with_suffix(".png"), json_path.with_suffix(".md")
    plot(record, png)
    md.write_text(markdown(record, png.name))
    return md, png
