"""The search simulation's figures (pure), its Markdown and its plot (bench.swarm)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

SCALING_STEP = 1.25  # a count scales when it gives at least this much the throughput of the count before it
REPORT_PAIR = (4, 128)  # S4: 128 parallel trials against the 4 the report's 7 h ran with


def rated(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The counts that ran, in worker order, each with its speed-up over the fewest workers'
    rate and its parallel efficiency (speed-up per worker added)."""
    ok = sorted((r for r in records if "error" not in r and r.get("trials_per_hour")), key=lambda r: r["workers"])
    if not ok:
        return []
    base = ok[0]
    return [
        {
            **r,
            "speedup": r["trials_per_hour"] / base["trials_per_hour"],
            "efficiency": r["trials_per_hour"] / base["trials_per_hour"] / (r["workers"] / base["workers"]),
        }
        for r in ok
    ]


def saturation(rows: list[dict[str, Any]], step: float = SCALING_STEP) -> dict[str, Any] | None:
    """The first count whose throughput is under ``step`` times the count's before it (the
    default counts double): where the search stops scaling. None when every step scaled."""
    for before, after in zip(rows, rows[1:], strict=False):
        gain = after["trials_per_hour"] / before["trials_per_hour"]
        if gain < step:
            return {"after": before["workers"], "at": after["workers"], "gain": gain}
    return None


def pair_speedup(rows: list[dict[str, Any]], pair: tuple[int, int] = REPORT_PAIR) -> float | None:
    """Throughput at ``pair[1]`` workers over ``pair[0]`` (S4's 128 vs 4), where both ran."""
    by = {r["workers"]: r for r in rows}
    if pair[0] in by and pair[1] in by:
        return by[pair[1]]["trials_per_hour"] / by[pair[0]]["trials_per_hour"]
    return None


def findings(record: dict[str, Any]) -> list[str]:
    """What the simulation shows, in sentences; every figure computed from the record's counts."""
    rows = rated(record["counts"])
    if not rows:
        return ["no worker count ran to the end: nothing to report"]
    lines = []
    stop = saturation(rows)
    top = rows[-1]
    if stop is None:
        lines.append(f"throughput grew by at least {SCALING_STEP}x at every step up to {top['workers']} workers")
    else:
        lines.append(
            f"the search stops scaling after {stop['after']} workers: {stop['at']} gave {stop['gain']:.2f}x the "
            f"throughput of {stop['after']} (a step must give {SCALING_STEP}x to count)"
        )
    pair = pair_speedup(rows)
    if pair is not None:
        lines.append(
            f"{REPORT_PAIR[1]} vs {REPORT_PAIR[0]} workers (S4's 32x): {pair:.3g}x the trials per hour (simulated, "
            f"trials of {mean_trial_s(record):.3g} s on average)"
        )
    storage = top.get("storage_s_per_trial")
    if storage:
        lines.append(
            f"at {top['workers']} workers a trial spent {storage:.3g} s in storage calls ({top['storage_calls_per_trial']:.0f} "
            f"calls); the storage takes under 10% of a trial only when trials last over {10 * storage:.3g} s (computed)"
        )
    server = top.get("server_cpu_s_per_trial")
    if server:
        lines.append(
            f"the server used {server:.3g} CPU s per trial at {top['workers']} workers: one server core keeps up with "
            f"{top['workers']} workers while their trials last over {top['workers']} x {server:.3g} = "
            f"{top['workers'] * server:.3g} s (computed)"
        )
    over = [r for r in rows if r.get("study_trials") and r["trials"] > r["study_trials"]]
    if over:
        lines.append(
            "the worker loop finished more trials than the study asked for ("
            + ", ".join(f"{r['trials']} for {r['study_trials']} at {r['workers']} workers" for r in over)
            + "): workers that read the count at the same moment each start one"
        )
    failed = [r for r in rows if r.get("failed")]
    if failed:
        lines.append(
            "trials failed as stale (a heartbeat later than the storage's grace, their worker starved of CPU, and "
            "retried): " + ", ".join(f"{r['failed']} of {r['attempts']} at {r['workers']} workers" for r in failed)
        )
    ceiling = cpu_ceiling(top, record["environment"].get("usable_cpus"))
    if ceiling is not None:
        lines.append(
            f"this machine's cores allow at most {ceiling:,.0f} trials/h at {top['workers']} workers' CPU per trial "
            f"(cores / (worker + server CPU s per trial), computed); it ran {top['trials_per_hour'] / ceiling:.0%} of that"
        )
    return lines
    return lines


def cpu_ceiling(row: dict[str, Any], cores: int | None) -> float | None:
    """Trials per hour that ``cores`` could run at the row's CPU time per trial (workers' and
    server's together): where a one-machine simulation must stop scaling, whatever the storage."""
    cpu = (row.get("client_cpu_s_per_trial") or 0.0) + (row.get("server_cpu_s_per_trial") or 0.0)
    return cores * 3600 / cpu if cores and cpu > 0 else None


def mean_trial_s(record: dict[str, Any]) -> float:
    """The simulated trials' mean length: the plan's compression, or the draws' own mean."""
    return record["plan"]["mean_trial_s"] or record["draws"]["mean_trial_s"]


def cite(path: Path) -> tuple[float | None, str] | None:
    """What a row citing the simulation record at ``path`` shows: the simulated 128 vs 4
    workers ratio (None where those counts did not run) and the findings; None when there is no
    readable record there."""
    import json

    try:
        record = json.loads(path.read_text())
        rows = rated(record["counts"])
        said = findings(record)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    env = record.get("environment", {})
    return pair_speedup(rows), f"{'; '.join(said)} ({env.get('cpu_model')}, {env.get('usable_cpus')} CPUs)"


def fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def table(record: dict[str, Any]) -> list[list[str]]:
    rows = {r["workers"]: r for r in rated(record["counts"])}
    out = []
    for r in record["counts"]:
        if r["workers"] not in rows:
            out.append([str(r["workers"]), "failed: " + r.get("error", "no rate"), *["-"] * (len(COLUMNS) - 2)])
            continue
        r = rows[r["workers"]]
        out.append(
            [
                str(r["workers"]),
                f"{r['trials']} ({r['pruned']} pruned)",
                fmt(r["wall_s"], ".1f"),
                fmt(r["trials_per_hour"], ",.0f"),
                f"{r['speedup']:.3g}x",
                f"{r['efficiency']:.0%}",
                f"{r['busy']:.0%}",
                f"{r['busy'] * r['workers']:.3g}",
                fmt(r["storage_s_per_trial"]),
                fmt(r["server_cpu_s_per_trial"]),
                fmt(r["client_cpu_s_per_trial"]),
            ]
        )
    return out


COLUMNS = (
    "workers",
    "trials",
    "wall s",
    "trials/h",
    "speed-up",
    "efficiency",
    "busy",
    "trial s/s",
    "storage s/trial",
    "server CPU s/trial",
    "worker CPU s/trial",
)


def markdown(record: dict[str, Any], plot_name: str | None = None) -> str:
    plan, env = record["plan"], record["environment"]
    parts = [
        "# S4 by simulation: one search's workers against one PostgreSQL",
        "",
        f"{len(record['counts'])} worker counts, {plan['trials_per_worker']} trials per worker, trials drawn from "
        f"{record['draws']['what']} (`{record['draws']['source']}`, mean {record['draws']['mean_trial_s']:.3g} s), "
        + (
            f"compressed to a mean of {plan['mean_trial_s']:g} s"
            if plan["mean_trial_s"]
            else "slept as long as measured"
        )
        + f"; at least {plan['min_trials']} trials a study; MedianPruner (startup {plan['startup_trials']}, from "
        f"epoch {plan['warmup_epochs']}), TPE, heartbeats; storage: {record['storage']}; {record['wall_s']:.0f} s.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row) + " |" for row in table(record)),
        "",
        "Speed-up: trials per hour over the fewest workers'; efficiency: speed-up per worker; busy: share of the "
        "workers' wall time spent in trials (sleeping); trial s/s: seconds of trials run per second (busy x workers: the rate of work, whatever share of trials the pruner cut short); storage s/trial: wall time in storage calls (every thread; "
        "waiting for a core included); server CPU: the PostgreSQL processes' CPU time over the run per trial.",
        "",
        *(f"- {line}" for line in findings(record)),
        "",
        f"Machine: {env.get('cpu_model')}, {env.get('usable_cpus')} usable CPUs; every worker and the server share them, "
        "so past a few workers per core the clients' CPU (TPE, the pruner, SQLAlchemy) is part of what is measured.",
        "",
    ]
    if plot_name:
        parts += [f"![speed-up against workers]({plot_name})", ""]
    return "\n".join(parts)


def plot_png(record: dict[str, Any]) -> bytes:
    """Speed-up against workers (log-log, ideal line), and storage time per trial beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rated(record["counts"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    workers = [r["workers"] for r in rows]
    if rows:
        left.plot(workers, [r["speedup"] for r in rows], marker="o", label="simulated")
        left.plot(workers, [w / workers[0] for w in workers], linestyle="--", color="grey", label="ideal")
        right.plot(workers, [r["storage_s_per_trial"] for r in rows], marker="o", label="storage calls (wall)")
        if any(r["server_cpu_s_per_trial"] for r in rows):
            right.plot(workers, [r["server_cpu_s_per_trial"] for r in rows], marker="s", label="server CPU")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("worker processes")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel(f"trials per hour / {workers[0] if workers else 1} worker's")
    right.set_ylabel("seconds per trial")
    fig.suptitle(f"search workers against one PostgreSQL (mean trial {mean_trial_s(record):.3g} s)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_markdown(record: dict[str, Any], path: Path) -> None:
    from diffusion.files import write_bytes_atomic, write_text_atomic

    png = path.with_suffix(".png")
    write_bytes_atomic(png, plot_png(record))
    write_text_atomic(path, markdown(record, png.name))
