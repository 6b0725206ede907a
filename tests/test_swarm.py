"""The search simulation (bench.swarm): its figures, its stand-in trial, its storage clock, and
(slow) real runs against PostgreSQL that stop by themselves, keep what finished when killed, and
never show a password."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from bench import pgserver
from bench.swarm import SCHEMA, worker_counts
from bench.swarm_report import cpu_ceiling, findings, markdown, pair_speedup, plot_png, rated, saturation
from bench.swarm_trial import Draws, StorageClock, SwarmPlan, load_draws, losses, make_objective
from diffusion.errors import ConfigError
from tests.conftest import PYTHON, ROOT, python_env

RECORD = ROOT / "results" / "search-tiny-epyc-2cpu.json"


def count(workers: int, per_hour: float, **extra: float) -> dict:
    return {
        "workers": workers,
        "trials": 20,
        "pruned": 5,
        "wall_s": 10.0,
        "trials_per_hour": per_hour,
        "busy": 0.9,
        "storage_s_per_trial": 0.1,
        "storage_calls_per_trial": 90.0,
        "client_cpu_s_per_trial": 0.1,
        "server_cpu_s_per_trial": 0.02,
        **extra,
    }


def record(counts: list[dict]) -> dict:
    return {
        "schema": SCHEMA,
        "plan": {**SwarmPlan().__dict__, "workers": [c["workers"] for c in counts]},
        "draws": {"source": "results/x.json", "what": "60 trials", "mean_trial_s": 6.9, "trials": 60},
        "storage": "PostgreSQL 15 on this machine (fsync off)",
        "counts": counts,
        "wall_s": 100.0,
        "environment": {"cpu_model": "AMD EPYC", "usable_cpus": 2},
    }


# ---- figures -------------------------------------------------------------------------------------


def test_speedup_and_efficiency_are_over_the_fewest_workers_and_a_failed_count_is_left_out():
    rows = rated([count(2, 200.0), count(1, 100.0), count(4, 300.0), {"workers": 8, "error": "boom"}])
    assert [r["workers"] for r in rows] == [1, 2, 4]
    assert [r["speedup"] for r in rows] == [1.0, 2.0, 3.0]
    assert [r["efficiency"] for r in rows] == [1.0, 1.0, 0.75]


def test_scaling_stops_at_the_first_count_that_gains_less_than_the_step():
    rows = rated([count(1, 100.0), count(2, 190.0), count(4, 300.0), count(8, 320.0), count(16, 900.0)])
    assert saturation(rows) == {"after": 4, "at": 8, "gain": pytest.approx(320 / 300)}
    assert saturation(rated([count(1, 100.0), count(2, 200.0)])) is None


def test_s4_pair_is_128_over_4_workers_and_absent_without_both():
    rows = rated([count(4, 100.0), count(128, 1600.0)])
    assert pair_speedup(rows) == pytest.approx(16.0)
    assert pair_speedup(rated([count(4, 100.0), count(64, 900.0)])) is None


def test_the_cpu_ceiling_is_cores_over_cpu_per_trial():
    assert cpu_ceiling(count(1, 1.0), 2) == pytest.approx(2 * 3600 / 0.12)
    assert cpu_ceiling(count(1, 1.0, client_cpu_s_per_trial=0.0, server_cpu_s_per_trial=None), 2) is None


def test_findings_and_markdown_say_where_scaling_stops_and_the_plot_is_a_png():
    rec = record([count(1, 100.0), count(2, 200.0), count(4, 210.0), count(128, 220.0)])
    said = findings(rec)
    assert said[0].startswith("the search stops scaling after 2 workers: 4 gave 1.05x")
    assert any(line.startswith("128 vs 4 workers (S4's 32x): 1.05x") for line in said)
    text = markdown(rec, "s.png")
    assert "| 128 | 20 (5 pruned) | 10.0 | 220 | 2.2x | 2% |" in text and "![speed-up against workers](s.png)" in text
    assert plot_png(rec)[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_count_that_failed_shows_its_error_in_the_table():
    assert "| 2 | failed: 2 workers not ready in 120 s |" in markdown(
        record([count(1, 100.0), {"workers": 2, "error": "2 workers not ready in 120 s"}])
    )


# ---- the stand-in trial --------------------------------------------------------------------------


def test_draws_are_the_complete_sequential_trials_of_the_committed_search_record():
    draws = load_draws(RECORD, epochs=6)
    assert len(draws.epoch_s) == len(draws.loss) == 60 and draws.source == "results/search-tiny-epyc-2cpu.json"
    assert 1 < draws.mean_trial_s < 60 and all(0 < v < 10 for v in draws.loss)


def test_draws_name_their_record_relative_to_the_repository_however_the_path_was_given(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert load_draws(RECORD.relative_to(ROOT), epochs=6).source == "results/search-tiny-epyc-2cpu.json"


def test_a_file_that_is_no_search_record_or_has_too_few_trials_is_refused(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("[]")
    with pytest.raises(ConfigError, match="holds a list, not a JSON object"):
        load_draws(bad, 6)
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="is not a search record"):
        load_draws(bad, 6)
    bad.write_text(json.dumps({"search": {"records": [{"run": {"name": "sequential"}, "trials": []}]}}))
    with pytest.raises(ConfigError, match="holds 0 complete sequential trials; at least 5"):
        load_draws(bad, 6)


def test_a_stand_in_curve_falls_from_about_1_5x_to_the_final_loss():
    rng = np.random.default_rng(0)
    curves = np.array([losses(0.2, 6, rng) for _ in range(2000)])
    assert curves[:, 0].mean() == pytest.approx(0.3, rel=0.01) and curves[:, -1].mean() == pytest.approx(0.2, rel=0.01)
    assert np.all(np.diff(curves.mean(axis=0)) < 0)


class FakeTrial:
    def __init__(self, prune_at: int | None) -> None:
        self.reports: list[tuple[float, int]] = []
        self.params: dict = {}
        self.prune_at = prune_at

    def suggest_float(self, name, low, high, log=False):
        self.params[name] = low
        return low

    def suggest_categorical(self, name, options):
        self.params[name] = options[0]
        return options[0]

    def report(self, value, step):
        self.reports.append((value, step))

    def should_prune(self):
        return self.reports[-1][1] == self.prune_at


def test_a_stand_in_trial_suggests_the_real_space_reports_every_epoch_and_sleeps_its_draw():
    import optuna

    draws = Draws((0.06,), (0.25,))
    slept: list[float] = []
    objective = make_objective(draws, SwarmPlan(epochs=6), scale=1.0, seed=0, slept=slept)
    trial = FakeTrial(prune_at=None)
    start = time.perf_counter()
    value = objective(trial)
    assert time.perf_counter() - start >= 0.06 and slept == [pytest.approx(0.06)]
    assert [s for _, s in trial.reports] == [1, 2, 3, 4, 5, 6] and value == trial.reports[-1][0]
    assert set(trial.params) == {"learning_rate", "hidden_dim", "blocks", "batch_size", "clip_norm"}
    pruned = FakeTrial(prune_at=3)
    with pytest.raises(optuna.TrialPruned, match="epoch 3"):
        objective(pruned)
    assert len(pruned.reports) == 3 and slept[-1] == pytest.approx(0.03)


def test_the_storage_clock_times_every_public_call_and_leaves_the_rest():
    class Storage:
        url = "postgresql://u@h/d"

        def get_trial(self, n):
            time.sleep(0.01)
            return n

        def _private(self):
            return "p"

    storage = Storage()
    clock = StorageClock(storage)
    assert storage.get_trial(3) == 3 and storage.get_trial(4) == 4 and storage._private() == "p"
    assert clock.calls == 3 and clock.seconds >= 0.02  # _private too: Optuna's cache calls its backend's


def test_worker_counts_are_ascending_distinct_and_bounded():
    import argparse

    assert worker_counts("1,2,4") == (1, 2, 4)
    for text, message in (
        ("0,2", "1..128"),
        ("1,129", "1..128"),
        ("2,1", "ascending"),
        ("1,1", "distinct"),
        ("a", "like"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            worker_counts(text)


def test_an_output_on_the_trials_record_or_a_storage_that_is_no_server_is_one_line_exit_2(tmp_path, blocked_tf):
    for args, message in (
        (["--json", str(RECORD)], "--json"),
        (["--storage", "sqlite:///s.db", "--json", "s.json"], "--storage must be a postgresql:// URL"),
        (["--from", "missing.json"], "--from"),
        (
            [
                "--from",
                str(tmp_path / "r.json"),
                "--markdown",
                str(tmp_path / "r.md"),
                "--trials-from",
                str(tmp_path / "r.png"),
            ],
            "--markdown's plot",
        ),
    ):
        result = subprocess.run(
            [PYTHON, "-m", "bench.swarm", *args],
            cwd=tmp_path,
            env=python_env(**blocked_tf),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


# ---- real runs (slow) ----------------------------------------------------------------------------


def swarm(tmp_path: Path, *args: str, wait: bool = True, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    command = [PYTHON, "-m", "bench.swarm", *args]
    if not wait:
        return subprocess.Popen(command, cwd=tmp_path, env=python_env(), text=True, **popen)
    return subprocess.run(command, cwd=tmp_path, env=python_env(), capture_output=True, text=True, timeout=300)


needs_pg = pytest.mark.skipif(not pgserver.available(), reason=pgserver.missing() or "")

FAST_PLAN = ("--trials-per-worker", "2", "--mean-trial-s", "0.2", "--deadline-s", "60")


@pytest.mark.slow
@needs_pg
def test_a_simulation_runs_the_real_worker_loop_and_storage_and_measures_each_count(tmp_path):
    result = swarm(tmp_path, "--workers", "1,2", *FAST_PLAN, "--json", "s.json", "--markdown", "s.md")
    assert result.returncode == 0, result.stderr
    rec = json.loads((tmp_path / "s.json").read_text())
    for c in rec["counts"]:
        assert c["trials"] >= 20 and c["complete"] + c["pruned"] >= 20 and c["failed"] == 0, c
        assert c["storage_s_per_trial"] > 0 and c["storage_calls_per_trial"] > 10 and c["server_cpu_s_per_trial"] > 0
        assert c["lost_workers"] == 0 and c["errors"] == []
    assert sum(c["pruned"] for c in rec["counts"]) > 0  # the MedianPruner acted on the stand-in curves
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG" and "| 2 |" in (tmp_path / "s.md").read_text()
    assert not (tmp_path / "s.swarm.partial.jsonl").exists()
    assert result.stderr.count("workers in") == 2  # a line per finished count when piped


@pytest.mark.slow
@needs_pg
def test_a_worker_stops_at_its_deadline_and_the_count_ends_soon_after(tmp_path):
    start = time.perf_counter()
    result = swarm(tmp_path, "--workers", "1", "--mean-trial-s", "4", "--deadline-s", "10", "--json", "s.json")
    assert result.returncode == 0, result.stderr
    (c,) = json.loads((tmp_path / "s.json").read_text())["counts"]
    assert c["stopped_by_deadline"] == 1 and 1 <= c["trials"] < 20
    assert time.perf_counter() - start < 10 + 30 + 60  # deadline, one trial's grace, start-up and teardown


@pytest.mark.slow
@needs_pg
def test_a_killed_simulation_leaves_no_process_and_resumes_from_its_finished_counts(tmp_path):
    proc = swarm(tmp_path, "--workers", "1,2,4", *FAST_PLAN, "--json", "s.json", wait=False, stderr=subprocess.PIPE)
    partial = tmp_path / "s.swarm.partial.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (partial.exists() and len(partial.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    assert partial.exists(), "the first count never finished"
    family = psutil.Process(proc.pid).children(recursive=True)
    assert any("pg_ctl" in " ".join(p.cmdline()) for p in family), "no watchdog of the server among its children"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The workers die with their parent; the watchdog stops the server (pg_ctl waits for it) and exits.
    _, alive = psutil.wait_procs(family, timeout=20)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running after SIGKILL: {[p.cmdline() for p in alive]}"
    result = swarm(tmp_path, "--workers", "1,2,4", *FAST_PLAN, "--json", "s.json", "--resume")
    assert result.returncode == 0, result.stderr
    rec = json.loads((tmp_path / "s.json").read_text())
    assert rec["reused"] >= 1 and [c["workers"] for c in rec["counts"]] == [1, 2, 4]
    assert "swarm 4 workers" in result.stderr and "swarm 1 workers" not in result.stderr


@pytest.mark.slow
@needs_pg
def test_a_given_storage_url_never_shows_its_password(tmp_path):
    with pgserver.postgres_server() as (host, port):
        url = f"postgresql://postgres:s3cret-pw@{host}:{port}/optuna"
        result = swarm(
            tmp_path, "--workers", "1", *FAST_PLAN, "--storage", url, "--json", "s.json", "--markdown", "s.md"
        )
    assert result.returncode == 0, result.stderr
    for text in (result.stdout, result.stderr, *(p.read_text() for p in tmp_path.glob("s.*") if p.suffix != ".png")):
        assert "s3cret-pw" not in text
    assert "CPU time not measured" in json.loads((tmp_path / "s.json").read_text())["storage"]
