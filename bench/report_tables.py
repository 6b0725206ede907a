"""The tables beside the claims: the ablations, the scaling suite's cores, the quality suite's
verification, selection and time to quality, the scale suite's presets, and the environment, as
columns and rows of strings. Strings from the record's figures; computes nothing."""

from __future__ import annotations

from typing import Any

from bench.report_cells import fmt_interval, fmt_value


def ablation_cells(row: dict[str, Any]) -> list[str]:
    unit = row.get("unit")
    if row.get("val_loss_stderr") is not None:
        extra = f"{row['val_loss_stderr']:.4f}"
    elif row.get("input_wait_share") is not None:
        extra = f"{row['input_wait_share']:.2f}"
    else:
        extra = "-"
    return [
        row["role"],
        "val" if row["phase"] == "validate" else row["phase"],
        fmt_value(row["reference_value"], unit),
        fmt_value(row["value"], unit),
        fmt_interval(row["ratio"]) if row["ratio"] else (row.get("note") or "-"),
        f"{row['first_call_s']:.3g} s" if row.get("first_call_s") is not None else "-",
        extra,
    ]


# "wait | stderr": input-wait share of a training step, or the validation loss's standard error
ABLATION_COLUMNS = ("variant", "phase", "ref.", "value", "ratio [95% CI]", "1st call", "wait|stderr")

SCALING_COLUMNS = ("path", "cores", "samples/s", "speedup [95% CI]", "eff.", "val pass", "val speedup")


def scaling_cells(row: dict[str, Any]) -> list[str]:
    """One path at one core count: training and validation against 1 core (computed ratios)."""
    eff = row.get("train_samples_per_s_efficiency")
    return [
        row["path"],
        str(row["cores"]),
        fmt_value(row["train_samples_per_s"], "/s"),
        fmt_interval(row["train_samples_per_s_speedup"]),
        f"{eff:.0%}" if eff is not None else "-",
        fmt_value(row["val_pass_s"], "s"),
        fmt_interval(row["val_pass_s_speedup"]),
    ]


SCALING_TITLE = "Cores by CPU affinity: speedup over 1 core, parallel efficiency = speedup / cores"


def environment_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    settings = ", ".join(f"{k}={v}" for k, v in env.get("env", {}).items() if v is not None) or "(defaults)"
    threads = ", ".join(f"{k}={v}" for k, v in env.get("threads", {}).items())
    return [
        (
            "machine",
            f"{env.get('cpu_model')} — {env.get('usable_cpus')} usable of {env.get('logical_cpus')} CPUs, "
            f"{env.get('memory_gib')} GiB",
        ),
        ("GPU", ", ".join(env.get("gpus") or []) or "none"),
        ("backend", f"{env.get('backend')} ({env.get('platform')}, Python {env.get('python')})"),
        ("versions", versions),
        ("speed settings", settings),
        ("threads", threads or "-"),
        ("git commit", str(env.get("git_commit"))),
    ]


VERIFY_COLUMNS = ("metric", "ALT recipe", "of ceiling", "NEU recipe", "of ceiling", "ceiling (sim vs sim)")

SELECTION_COLUMNS = ("PMTs chosen by", "ALT model", "NEU model")

TTQ_COLUMNS = ("recipe", "runs", "reached", "median s [95% CI]", "epochs to target")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def scale_tables(result: dict[str, Any]) -> list[tuple[str, tuple[str, ...], list[list[str]], str]]:
    """The scale suite's table (bench/scale.py): each V/T claim at every preset; empty without one."""
    if not result.get("scale"):
        return []
    from bench.scale import table

    columns, rows = table(result["scale"])
    note = "each preset's own sequential run (n rounds, its look's level); the claim table above is the last preset's"
    return [("Scale: the speed claims at every preset (ratio [CI] verdict)", columns, rows, note)]


def verify_rows(summary: dict[str, Any]) -> list[list[str]]:
    # Records made before the shares were kept have none: their share cells read "-".
    shares = summary.get("ceiling_shares", {})
    rows = []
    for name, v in summary["metrics"].items():
        share = shares.get(name, {})
        rows.append(
            [
                name,
                _num(v["base"]),
                _share(share.get("base")),
                _num(v["candidate"]),
                _share(share.get("candidate")),
                _num(v["ceiling"]),
            ]
        )
    return rows


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def quality_tables(result: dict[str, Any]) -> list[tuple[str, tuple[str, ...], list[list[str]], str]]:
    """(title, columns, rows, note) of the quality suite's context tables; empty without one."""
    quality = result.get("quality")
    if not quality or not quality.get("verification"):
        return []
    summary = quality["verification"]
    seeds = summary["seeds"]
    tables = [
        (
            f"Verification of the final models (medians over {seeds} seeds)",
            VERIFY_COLUMNS,
            verify_rows(summary),
            "definitions: diffusion/quality.py and the README; ceiling: two simulations of the same truth; "
            "of ceiling (computed from the medians): the value's share of the ceiling's, 1 = as good as a second "
            "simulation (classifier_auc as 1 - |2 AUC - 1|, energy_violation as 1 - violation; val_loss has none)",
        ),
        (
            "PMT selection: detection rate on simulated trigger events (medians over seeds)",
            SELECTION_COLUMNS,
            [[n, _num(v["base"]), _num(v["candidate"])] for n, v in summary["detection_rate"].items()],
            "shapley_simulated: the same choice made from simulated events (what a perfect model gives)",
        ),
    ]
    ttq = quality.get("ttq_summary")
    if ttq and "error" in ttq:
        tables.append(
            ("Time to quality (MLPerf Training's definition)", ("",), [["not measured: " + ttq["error"]]], "")
        )
    elif ttq:
        rows = []
        for role, label in (("base", "ALT"), ("candidate", "NEU")):
            t = ttq.get(role) or {}
            ci = t.get("ci_s")
            interval = f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""
            median = t.get("median_s")
            rows.append(
                [
                    label,
                    str(t.get("runs", 0)) + (f" ({t['failed']} failed)" if t.get("failed") else ""),
                    str(t.get("reached", 0)),
                    (f"> budget{interval}" if median == float("inf") else f"{median:.3g}{interval}")
                    if median is not None
                    else "-",
                    ", ".join("-" if e is None else str(e) for e in t.get("epochs", [])),
                ]
            )
        note = (
            f"target: validation loss <= {ttq['target']:.4g} ({ttq['target_rule']}); budget {ttq['max_epochs']} "
            f"epochs; wall time from process start, evaluation on the clock; "
            + "; ".join(f"{r}: {ttq[r].get('ci_note', '')}" for r in ("base", "candidate") if ttq.get(r))
        )
        tables.append(("Time to quality (MLPerf Training's definition)", TTQ_COLUMNS, rows, note))
    return tables
