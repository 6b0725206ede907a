"""Rendering of a ``bench.gpu`` record: rich tables, Markdown, and a plot. Computes nothing but
the ratios it shows (each labelled as computed from the record's figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench.report import COMPACT_BELOW, _claim_table, _md_table, wide_console
from bench.report_cells import claim_cells, detail_lines
from bench.report_tables import environment_rows

TITLE = "GPU vs CPU (S3), JAX backend: ratio = CPU time / GPU time"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g} ms"


def header(record: dict[str, Any]) -> str:
    gpu, cpu = record["gpu"], record.get("cpu") or {}
    return (
        f"bench.gpu at preset {record['preset']!r}: {gpu.get('device_kind')} ({gpu.get('devices')} visible) vs "
        f"{cpu.get('cores', '?')} CPU cores of the same host, {record['wall_s']:.0f} s"
    )


def sweep_rows(record: dict[str, Any]) -> list[list[str]]:
    cpu = {r["batch"]: r for r in (record.get("cpu") or {}).get("sweep", [])}
    rows = []
    for g in record["gpu"]["sweep"]:
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
                row["loader"],
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


def sections(record: dict[str, Any]) -> list[tuple[str, tuple[str, ...], list[list[str]]]]:
    flops = record["gpu"]["flops_per_sample"]
    rates = record["gpu"]["matmul_flops_per_s"]
    rate_text = ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in rates.items())
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
    ]


def render(record: dict[str, Any], console: Console | None = None) -> None:
    console = console or wide_console()
    console.print(f"[bold]{header(record)}[/bold]")
    console.print(_claim_table(TITLE, record["claims"], compact=console.width < COMPACT_BELOW, labels=("CPU", "GPU")))
    for row in record["claims"]:
        for line in detail_lines(row):
            console.print(f"  [dim]{row['id']}: {line}[/dim]")
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
    for title, columns, rows in sections(record):
        if rows:
            parts += [f"## {title}", "", _md_table(columns, rows), ""]
    parts += ["## Environment", "", _md_table(("", ""), [list(r) for r in environment_rows(record["environment"])]), ""]
    if plot_name:
        parts += [f"![training throughput vs batch]({plot_name})", ""]
    return "\n".join(parts)


def plot(record: dict[str, Any], path: Path) -> None:
    """Training samples/s against batch size per loader and precision, log-log, with the share
    of the matmul rate on a second axis's labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
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
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("training samples/s (labels: share of same-run matmul rate)")
    ax.set_title(header(record), fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
