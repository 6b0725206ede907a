"""Rendering of a ``bench.gpu`` record: rich tables, Markdown, and a plot. Computes nothing but
the ratios it shows (each labelled as computed from the record's figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench.gpu_analysis import ceiling_rows, ceiling_targets
from bench.report import COMPACT_BELOW, _claim_table, _md_table, wide_console
from bench.report_cells import claim_cells, detail_lines
from bench.report_tables import environment_rows

TITLE = "GPU vs CPU (S3), JAX backend: ratio = CPU time / GPU time"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g} ms"


def header(record: dict[str, Any]) -> str:
    gpu, cpu = record["gpu"], record.get("cpu") or {}
    against = (
        f"vs {cpu['cores']} CPU cores of the same host"
        if "cores" in cpu
        else f"(CPU half not run: --part {record.get('part', '?')})"
    )
    return (
        f"bench.gpu at preset {record['preset']!r}: {gpu.get('device_kind')} ({gpu.get('devices')} visible) "
        f"{against}, {record['wall_s']:.0f} s"
    )


def sweep_rows(record: dict[str, Any]) -> list[list[str]]:
    cpu = {r["batch"]: r for r in (record.get("cpu") or {}).get("sweep", [])}
    rows = []
    for g in record["gpu"].get("sweep", []):
        c = cpu.get(g["batch"])
        rows.append(
            [
                str(g["batch"]),
                _ms(c and c["forward_s"]),
                _ms(g["forward_s"]),
                f"{c['forward_s'] / g['forward_s']:.3g}x" if c else "-",
                _ms(c and c["backward_s"]),
                _ms(g["backward_s"]),
                f"{c['backward_s'] / g['backward_s']:.3g}x" if c and g["backward_s"] > 0 else "-",
            ]
        )
    return rows


SWEEP_COLUMNS = ("batch", "CPU fwd", "GPU fwd", "fwd x", "CPU bwd", "GPU bwd", "bwd x")


def utilisation(record: dict[str, Any], row: dict[str, Any]) -> tuple[float, float]:
    """Achieved training FLOP/s (analytic FLOPs per sample x samples/s) and its share of the
    same-run matmul rate at the row's precision."""
    per_sample = record["gpu"]["flops_per_sample"]["train_step"]
    rates = record["gpu"]["matmul_flops_per_s"]
    rate = rates["bfloat16" if row["precision"] == "mixed_bfloat16" else "float32"]
    achieved = per_sample * row["samples_per_s"]
    return achieved, achieved / rate


def train_rows(record: dict[str, Any]) -> list[list[str]]:
    rows = []
    for row in record["train"]:
        achieved, share = utilisation(record, row)
        rows.append(
            [
                row["precision"].replace("mixed_", ""),
                row["loader"] + (f" k={row['steps_per_call']}" if row.get("steps_per_call", 1) > 1 else ""),
                str(row["batch"]),
                f"{row['samples_per_s']:,.0f}",
                f"{row['input_wait_share']:.2f}",
                f"{achieved / 1e12:.1f}",
                f"{share:.0%}",
            ]
        )
    return rows


TRAIN_COLUMNS = ("precision", "loader", "batch", "samples/s", "wait", "TFLOP/s", "of matmul")


def peer_rows(record: dict[str, Any]) -> list[list[str]]:
    rows = [
        [
            "GPU",
            str(r["batch"]),
            f"{r['samples_per_s']:,.0f}",
            f"{r['neu_host_samples_per_s']:,.0f}",
            f"{r['samples_per_s'] / r['neu_host_samples_per_s']:.2f}x",
        ]
        for r in record.get("fit_peer", [])
    ]
    for r in (record.get("cpu") or {}).get("fit_peer", []):
        rows.append(["CPU", str(r["batch"]), f"{r['samples_per_s']:,.0f}", "-", "-"])
    return rows


PEER_COLUMNS = ("device", "batch", "model.fit /s", "NEU step /s", "fit / NEU")


def parallel_rows(record: dict[str, Any]) -> list[list[str]]:
    by = {(r["batch"], r["devices"]): r for r in record.get("data_parallel", [])}
    rows = []
    for (batch, devices), r in sorted(by.items()):
        one = by.get((batch, 1))
        speedup = r["samples_per_s"] / one["samples_per_s"] if one else None
        rows.append(
            [
                str(batch),
                str(devices),
                f"{r['samples_per_s']:,.0f}",
                f"{speedup:.2f}x" if speedup else "-",
                f"{speedup / devices:.0%}" if speedup else "-",
            ]
        )
    return rows


PARALLEL_COLUMNS = ("batch", "GPUs", "samples/s", "speedup", "efficiency")


def ceiling_table(record: dict[str, Any], part: str = "rows") -> list[list[str]]:
    """The step against its ceiling: the ceiling, each k, the path's share with its rounds'
    range, TFLOP/s and share of the matmul rate (``gpu_analysis.ceiling_rows`` computes them)."""
    out = []
    for r in ceiling_rows(record, part):
        low, high = r["share_range"]
        steps = "  ".join(f"{r['steps'][k]:,.0f} ({r['shares'][k]:.0%})" for k in sorted(r["steps"], key=int))
        out.append(
            [
                r["precision"].replace("mixed_", ""),
                str(r["batch"]),
                f"{r['ceiling']:,.0f}",
                steps,
                f"{r['share']:.1%} [{low:.1%}, {high:.1%}]",
                f"{r['flops_per_s'] / 1e12:.0f}",
                f"{r['matmul_share']:.1%} (ceiling {r['ceiling_matmul_share']:.1%})",
            ]
        )
    return out


def ceiling_columns(record: dict[str, Any], part: str = "rows") -> tuple[str, ...]:
    ks = ", ".join(str(k) for k in sorted({int(k) for r in ceiling_rows(record, part) for k in r["steps"]}))
    k = (record.get("ceiling") or {}).get("steps_per_call", "?")
    return (
        "precision",
        "batch",
        "ceiling /s",
        f"step /s at k = {ks} (of ceiling)",
        f"k={k} of ceiling [rounds]",
        "TFLOP/s",
        "of matmul",
    )


def kernel_rows(record: dict[str, Any]) -> list[list[str]]:
    """Per precision: the single step's HLO census, and the profiled kernels per step, GPU busy
    time and span per step of the ceiling and of the synchronised single step."""
    section = record.get("ceiling") or {}
    rows = []
    for precision, census in section.get("census", {}).items():
        for name, prof in section.get("profiles", {}).items():
            if not name.startswith(f"{precision} "):
                continue
            what = name[len(precision) + 1 :]
            if "error" in prof or not prof.get("kernels_per_step"):
                cells = ["-", "-", "-", "-", prof.get("error", prof.get("note", "no kernels"))[:60]]
            else:
                busy, span = prof["busy_us_per_step"], prof["span_us_per_step"]
                cells = [
                    f"{prof['kernels_per_step']:.0f}",
                    f"{busy:,.0f}",
                    f"{span:,.0f}",
                    f"{busy / span:.0%}",
                    f"{prof['matmul_share_of_busy']:.0%}",
                ]
            rows.append(
                [
                    precision.replace("mixed_", ""),
                    what,
                    str(census["entry_kernels"]),
                    str(census["lowered_converts"]),
                    *cells,
                ]
            )
    return rows


KERNEL_COLUMNS = (
    "precision",
    "run",
    "HLO kernels",
    "converts",
    "kernels/step",
    "GPU busy us/step",
    "span us/step",
    "busy",
    "matmul of busy",
)


def target_lines(record: dict[str, Any]) -> list[str]:
    return (
        [
            f"{'met' if t['met'] else 'MISSED'}: {t['target']}: "
            + ("not measured" if t["value"] is None else f"{t['value']:.1%}")
            for t in ceiling_targets(record)
        ]
        if record.get("ceiling")
        else []
    )


def sections(record: dict[str, Any]) -> list[tuple[str, tuple[str, ...], list[list[str]]]]:
    flops = record["gpu"]["flops_per_sample"]
    rates = record["gpu"]["matmul_flops_per_s"]
    rate_text = ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in rates.items())
    k = (record.get("ceiling") or {}).get("steps_per_call", "?")
    return [
        ("Forward and backward per batch (backward = forward+gradients - forward)", SWEEP_COLUMNS, sweep_rows(record)),
        (
            f"Training throughput, whole optimizer steps (Adam, clip 1.0); {flops['train_step'] / 1e6:.0f} MFLOP "
            f"per sample ({flops['source']}, 3x forward); same-run matmul: {rate_text}",
            TRAIN_COLUMNS,
            train_rows(record),
        ),
        ("Keras model.fit peer (compiled, same batch and optimiser)", PEER_COLUMNS, peer_rows(record)),
        ("Data parallel (keras.distribution.DataParallel, device loader)", PARALLEL_COLUMNS, parallel_rows(record)),
        (
            "The device-loader step against its stateless ceiling (the same step as one pure jitted function of "
            "parameters, optimizer state and key, queued back to back); samples/s, medians of alternating rounds; "
            f"the project's path runs k = {k} steps per synchronised call; same-run matmul: {rate_text}",
            ceiling_columns(record),
            ceiling_table(record),
        ),
        (
            "Small batches: the same, fp32 against mixed bf16",
            ceiling_columns(record, "small"),
            ceiling_table(record, "small"),
        ),
        (
            "Kernels per step at the smallest batch: the single step's optimized HLO (kernels it launches, "
            "converts before optimization) and a profiler trace (GPU busy time vs span from first kernel to last)",
            KERNEL_COLUMNS,
            kernel_rows(record),
        ),
    ]


def render(record: dict[str, Any], console: Console | None = None) -> None:
    console = console or wide_console()
    console.print(f"[bold]{header(record)}[/bold]")
    console.print(_claim_table(TITLE, record["claims"], compact=console.width < COMPACT_BELOW, labels=("CPU", "GPU")))
    for row in record["claims"]:
        for line in detail_lines(row):
            console.print(f"  [dim]{row['id']}: {line}[/dim]")
    for line in target_lines(record):
        console.print(f"[bold]{line}[/bold]")
    for title, columns, rows in sections(record):
        if not rows:
            continue
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in columns:
            table.add_column(col, no_wrap=True)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    table = Table(title="Environment", title_justify="left", show_header=False)
    for name, value in environment_rows(record["environment"]):
        table.add_row(name, value)
    console.print(table)


def markdown(record: dict[str, Any], plot_name: str | None = None) -> str:
    from bench.report_cells import COLUMNS

    parts = [
        f"# {header(record)}",
        "",
        f"## {TITLE}",
        "",
        _md_table(COLUMNS, [claim_cells(r) for r in record["claims"]]),
    ]
    parts += [""] + [f"- {r['id']}: {line}" for r in record["claims"] for line in detail_lines(r)] + [""]
    if target_lines(record):
        parts += ["## Targets (issue 23)", ""] + [f"- {line}" for line in target_lines(record)] + [""]
    for title, columns, rows in sections(record):
        if rows:
            parts += [f"## {title}", "", _md_table(columns, rows), ""]
    parts += ["## Environment", "", _md_table(("", ""), [list(r) for r in environment_rows(record["environment"])]), ""]
    if plot_name:
        parts += [f"![training throughput vs batch]({plot_name})", ""]
    return "\n".join(parts)


def plot(record: dict[str, Any], path: Path) -> None:
    """Training samples/s against batch size, log-log: per loader and precision (labels: the
    largest batch's share of the matmul rate), and the step at each k beside its ceiling, in
    a panel of its own, where the record has them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p, present in (("train", record["train"]), ("ceiling", ceiling_rows(record))) if present]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(7 * max(1, len(panels)), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=False):
        (_train_panel if panel == "train" else _ceiling_panel)(record, ax)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.legend(fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(header(record), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _train_panel(record: dict[str, Any], ax: Any) -> None:
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in record["train"]:
        series.setdefault((row["precision"], row["loader"]), []).append(row)
    for (precision, loader), rows in sorted(series.items()):
        rows = sorted(rows, key=lambda r: r["batch"])
        ax.plot(
            [r["batch"] for r in rows],
            [r["samples_per_s"] for r in rows],
            marker="o",
            linestyle="-" if loader == "device" else "--",
            label=f"{loader} loader, {precision}",
        )
        last = rows[-1]
        ax.annotate(f"{utilisation(record, last)[1]:.0%}", (last["batch"], last["samples_per_s"]), fontsize=8)
    ax.set_ylabel("training samples/s (labels: share of same-run matmul rate)")


def _ceiling_panel(record: dict[str, Any], ax: Any) -> None:
    rows = sorted(ceiling_rows(record) + ceiling_rows(record, "small"), key=lambda r: r["batch"])
    for precision in sorted({r["precision"] for r in rows}):
        mine = [r for r in rows if r["precision"] == precision]
        short = precision.replace("mixed_", "")
        line = ax.plot([r["batch"] for r in mine], [r["ceiling"] for r in mine], marker="s", label=f"ceiling, {short}")
        for k in sorted({k for r in mine for k in r["steps"]}, key=int):
            at = [r for r in mine if k in r["steps"]]
            ax.plot(
                [r["batch"] for r in at],
                [r["steps"][k] for r in at],
                marker=".",
                linestyle=":" if k == "1" else "--",
                color=line[0].get_color(),
                alpha=0.4 + 0.6 * (int(k) == mine[0]["k"]),
                label=f"step k={k}, {short}",
            )
    ax.set_ylabel("samples/s: the step at k steps per call and its ceiling")
