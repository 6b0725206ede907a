"""Cut runs keep their work: the partial record (bench/partial.py) and the suites that resume from it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench.memory import MemoryPlan, measure
from bench.partial import Identity, Partial, code_digest, partial_path, run_identity
from bench.roles import Role
from bench.runner import Plan, run_plan, run_rounds
from diffusion.errors import ConfigError
from diffusion.paths import parse_path
from tests.conftest import PYTHON, ROOT, TINY, python_env

ID = Identity("abc123", {"rounds": 3, "roles": ["base", "candidate"]}, {"cpu_model": "X", "usable_cpus": 2})


def test_appended_jobs_come_back_on_resume_by_their_keys(tmp_path):
    path = tmp_path / "R.partial.jsonl"
    first = Partial.open(path, ID, resume=False)
    first.append((0, "base"), {"value": 1.5})
    first.append(("neu", None), {"value": 2})
    first.close()
    again = Partial.open(path, ID, resume=True)
    assert again.done() == {(0, "base"): {"value": 1.5}, ("neu", None): {"value": 2}}
    assert again.note is None


def test_each_job_is_on_disk_when_append_returns(tmp_path):
    path = tmp_path / "R.partial.jsonl"
    partial = Partial.open(path, ID, resume=False)
    partial.append((0, "base"), {"value": 1})
    lines = path.read_text().splitlines()  # read while it is still open, as after a SIGKILL
    assert json.loads(lines[0])["identity"]["code"] == "abc123"
    assert json.loads(lines[1]) == {"key": [0, "base"], "record": {"value": 1}}


def test_a_torn_last_line_is_dropped_with_a_note_and_cut_off_before_the_next_append(tmp_path):
    path = tmp_path / "R.partial.jsonl"
    partial = Partial.open(path, ID, resume=False)
    partial.append((0, "base"), {"value": 1})
    partial.close()
    with path.open("a") as f:
        f.write('{"key": [0, "candidate"], "record": {"val')  # a kill mid-append
    again = Partial.open(path, ID, resume=True)
    assert again.done() == {(0, "base"): {"value": 1}}
    assert "line 3 is a torn line" in again.note
    again.append((0, "candidate"), {"value": 2})
    again.close()
    assert Partial.open(path, ID, resume=True).done() == {(0, "base"): {"value": 1}, (0, "candidate"): {"value": 2}}


def test_a_bad_line_before_the_last_is_refused(tmp_path):
    path = tmp_path / "R.partial.jsonl"
    Partial.open(path, ID, resume=False).close()
    with path.open("a") as f:
        f.write("not json\n" + json.dumps({"key": [0, "base"], "record": {}}) + "\n")
    with pytest.raises(ConfigError, match="line 2 must be JSON"):
        Partial.open(path, ID, resume=True)


def test_a_file_that_is_no_partial_record_is_refused_not_replaced(tmp_path):
    path = tmp_path / "R.partial.jsonl"
    path.write_text("my notes")
    for resume in (False, True):
        with pytest.raises(ConfigError, match="is not a partial record"):
            Partial.open(path, ID, resume=resume)
    assert path.read_text() == "my notes"


@pytest.mark.parametrize(
    ("other", "reason"),
    [
        (Identity("def456", ID.plan, ID.machine), "code digest abc123 -> def456"),
        (Identity(ID.code, {**ID.plan, "rounds": 5}, ID.machine), "plan rounds: 3 -> 5"),
        (Identity(ID.code, ID.plan, {**ID.machine, "usable_cpus": 4}), "machine usable_cpus: 2 -> 4"),
    ],
)
def test_another_runs_record_is_refused_naming_what_differs(tmp_path, other, reason):
    path = tmp_path / "R.partial.jsonl"
    Partial.open(path, ID, resume=False).append((0, "base"), {"value": 1})
    with pytest.raises(ConfigError, match="measured by another run") as err:
        Partial.open(path, other, resume=True)
    assert reason in str(err.value)


def test_a_cut_runs_record_is_refused_without_resume(tmp_path):
    path = tmp_path / "R.partial.jsonl"
    Partial.open(path, ID, resume=False).append((0, "base"), {"value": 1})
    with pytest.raises(ConfigError, match="add --resume to continue it, or remove the file"):
        Partial.open(path, ID, resume=False)
    assert len(path.read_text().splitlines()) == 2  # untouched


def test_failed_jobs_are_kept_but_run_again_on_resume(tmp_path):
    path = tmp_path / "R.partial.jsonl"
    partial = Partial.open(path, ID, resume=False)
    partial.append((0, "base"), {"error": "worker timed out after 900 s"})
    partial.append((0, "candidate"), {"value": 1})
    assert Partial.open(path, ID, resume=True).done() == {(0, "candidate"): {"value": 1}}


def test_finish_removes_the_record(tmp_path):
    path = tmp_path / "R.partial.jsonl"
    partial = Partial.open(path, ID, resume=False)
    partial.append((0, "base"), {"value": 1})
    partial.finish()
    assert not path.exists()


def test_resume_with_nothing_to_resume_starts_afresh_and_says_so(tmp_path):
    partial = Partial.open(tmp_path / "R.partial.jsonl", ID, resume=True)
    assert partial.done() == {} and "starting afresh" in partial.note


def test_beside_no_output_keeps_nothing_and_resume_needs_an_output(tmp_path):
    keeps_nothing = Partial.beside(None, ID, resume=False)
    keeps_nothing.append((0, "base"), {"value": 1})
    keeps_nothing.finish()
    with pytest.raises(ConfigError, match="--resume needs --json"):
        Partial.beside(None, ID, resume=True)


def test_the_partial_record_lies_beside_the_output_one_per_part():
    assert partial_path(Path("out/R.json")) == Path("out/R.partial.jsonl")
    assert partial_path(Path("out/R.json"), "speed") == Path("out/R.speed.partial.jsonl")
    assert partial_path(Path("R")) == Path("R.partial.jsonl")


def test_the_code_digest_is_the_quality_suites_own():
    from bench import quality

    assert code_digest(("diffusion", "bench/quality.py", "bench/hpo.py"), salt=quality.SCHEMA) == quality.code_digest()


def test_the_code_digest_changes_with_any_file_it_covers(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\n")
    before = code_digest(("pkg", "b.py"), root=tmp_path)
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert code_digest(("pkg", "b.py"), root=tmp_path) != before


def test_an_identity_is_json_as_it_is_stored():
    identity = run_identity({"batches": (32, 64)}, "bench/memory.py")
    assert identity.record()["plan"] == {"batches": [32, 64]}
    assert {"cpu_model", "usable_cpus", "versions"} <= set(identity.record()["machine"])


# ---- the runner reuses finished jobs ---------------------------------------------------


def counting_runner(calls: list[str]):
    def runner(job, root):
        calls.append(job.spec)
        return {"value": float(len(calls)), "fit_disk": job.fit_disk}

    return runner


ROLES = [
    Role("base", parse_path("alt"), ("train",)),
    Role("candidate", parse_path("neu"), ("train",)),
    Role("other", parse_path("neu:clip_norm=none"), ("train",)),
]


def test_run_rounds_reuses_finished_jobs_and_runs_the_rest_in_the_uncut_order():
    full_calls: list[str] = []
    full = run_rounds(ROLES, TINY, 3, seed=7, runner=counting_runner(full_calls))
    done = {(rec["round"], rec["role"]): rec for rec in full[:4]}  # cut after 4 of 9 jobs
    calls: list[str] = []
    seen: list[tuple[int, str]] = []
    resumed = run_rounds(
        ROLES,
        TINY,
        3,
        seed=7,
        runner=counting_runner(calls),
        done=done,
        on_job=lambda r, role, rec: seen.append((r, role.name)),
    )
    assert resumed[:4] == full[:4]
    assert calls == full_calls[4:]  # the rest, in the order the uncut run ran them
    assert seen == [(rec["round"], rec["role"]) for rec in full[4:]]
    assert [rec["fit_disk"] for rec in resumed] == [rec["fit_disk"] for rec in full]  # disk still in round 0


def test_each_rounds_order_is_its_own():
    a = run_rounds(ROLES, TINY, 2, seed=1, runner=counting_runner([]))
    b = run_rounds(ROLES, TINY, 4, seed=1, runner=counting_runner([]))
    assert [r["role"] for r in a] == [r["role"] for r in b[:6]]


def test_run_plan_with_turns_passes_finished_rounds_on():
    plan = Plan(tuple(ROLES), TINY, 2, job_options={"train_seconds": 0.1}, turn_seconds=0.05)
    done = {(r, role.name): {"round": r, "role": role.name, "value": r} for r in range(2) for role in ROLES}

    def no_start(job, root):
        raise AssertionError("a finished round was measured again")

    assert run_plan(plan, start=no_start, done=done) == [done[r, role.name] for r in range(2) for role in ROLES]


# ---- the memory suite ------------------------------------------------------------------


def test_memory_reuses_finished_jobs_and_measures_the_rest():
    plan = MemoryPlan.from_specs(preset="tiny", paths=("neu",), batches=(32, 64), disk_paths=("alt",))
    measured: list[str] = []

    def runner(job):
        measured.append(job.spec)
        return {"phases": {}}

    done = {("neu", 32): {"phases": {}, "path_spec": "neu", "batch": 32, "mark": "reused"}}
    out = measure(plan, runner, done=done)
    assert out["records"][0]["mark"] == "reused" and out["reused_jobs"] == 1
    assert [(r["path_spec"], r["batch"]) for r in out["records"]] == [("neu", 32), ("neu", 64), ("alt", None)]
    assert len(measured) == 2


def memory_argv(out: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--paths", "neu", "--batches", "32,64", "--no-disk", "--json", str(out), *extra]


def test_memory_cli_refuses_a_cut_runs_record_without_resume(tmp_path):
    from bench.memory import main

    out = tmp_path / "M.json"
    Partial.open(partial_path(out), ID, resume=False).close()
    with pytest.raises(ConfigError, match="add --resume"):
        main(memory_argv(out, "--train-seconds", "0.3"))


def test_memory_cli_refuses_to_resume_another_plan(tmp_path):
    from bench.memory import main

    out = tmp_path / "M.json"
    plan = MemoryPlan.from_specs(preset="tiny", paths=("neu",), batches=(32,), train_seconds=0.3, disk_paths=())
    import dataclasses

    Partial.open(partial_path(out), run_identity(dataclasses.asdict(plan), "bench/memory.py"), resume=False).close()
    with pytest.raises(ConfigError, match=r"plan batches: \[32\] -> \[32, 64\]"):
        main(memory_argv(out, "--train-seconds", "0.3", "--resume"))


@pytest.mark.slow
def test_memory_killed_mid_run_resumes_with_its_finished_jobs_unchanged(tmp_path):
    """SIGKILL the run itself (and its worker) after its first job; --resume measures only the rest."""
    # From a copy of the code: an edit to this checkout between the two runs would change the
    # code digest, and the resume would be refused (rightly).
    code = tmp_path / "code"
    for package in ("bench", "diffusion"):
        shutil.copytree(ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "M.json"
    partial = partial_path(out)
    argv = [PYTHON, "-m", "bench.memory", *memory_argv(out, "--train-seconds", "0.3")]
    env = {**python_env(), "PYTHONPATH": str(code)}
    cut = subprocess.Popen(argv, cwd=code, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (partial.exists() and len(partial.read_text().splitlines()) >= 2):
            assert cut.poll() is None, f"the run ended before it was cut: {cut.stderr.read()}"
            assert time.monotonic() < deadline, "no job finished within 240 s"
            time.sleep(0.2)
        os.killpg(cut.pid, signal.SIGKILL)
    finally:
        cut.wait()
    assert cut.returncode == -signal.SIGKILL and not out.exists()
    finished = [json.loads(line) for line in partial.read_text().splitlines()[1:]]
    assert [job["key"] for job in finished] == [["neu", 32]]

    again = subprocess.run([*argv, "--resume"], cwd=code, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "batch 32: ok (reused)" in again.stderr and again.stderr.count(": ok") == 2
    result = json.loads(out.read_text())
    assert result["records"][0] == finished[0]["record"]  # the cut run's measurement, value for value
    assert result["records"][1]["batch"] == 64 and "phases" in result["records"][1]
    assert result["reused_jobs"] == 1 and not partial.exists()


# ---- calibrate ---------------------------------------------------------------------------


def test_a_calibrations_schedule_alternates_the_two_kinds():
    from bench.calibration import schedule

    assert schedule(4, 2) == [("aa", 0), ("power", 0), ("aa", 1), ("aa", 2), ("power", 1), ("aa", 3)]


class Cut(Exception):
    """Stands for the kill: the calibration stops after some runs."""


def test_a_cut_calibration_resumes_with_its_finished_runs_and_measures_the_rest(tmp_path):
    from bench.calibrate import run_schedule
    from bench.calibration import schedule

    planned = schedule(3, 2)
    measured: list[int] = []

    def measure_one(n: int, kind: str, cut_after: int | None = None) -> dict:
        if cut_after is not None and len(measured) == cut_after:
            raise Cut
        measured.append(n)
        return {"seed": n, "fired": kind == "power", "seconds": 40.0 + n}

    uncut = run_schedule(planned, measure_one, Partial(None, {}))
    measured.clear()
    path = tmp_path / "C.partial.jsonl"
    with pytest.raises(Cut):
        run_schedule(planned, lambda n, kind: measure_one(n, kind, cut_after=2), Partial.open(path, ID, resume=False))
    measured.clear()
    reused: list[tuple[str, int]] = []

    def on_run(kind: str, i: int, result: dict, was_reused: bool) -> None:
        if was_reused:
            reused.append((kind, i))

    resumed = run_schedule(planned, measure_one, Partial.open(path, ID, resume=True), on_run)
    assert resumed == uncut
    assert reused == planned[:2] and measured == [2, 3, 4]  # the rest, each with its own seed


def test_calibrate_refuses_a_cut_runs_record_without_resume(tmp_path):
    from bench.calibrate import main

    out = tmp_path / "C.json"
    Partial.open(partial_path(out), ID, resume=False).close()
    with pytest.raises(ConfigError, match="add --resume"):
        main(["--aa-runs", "1", "--power-runs", "0", "--preset", "tiny", "--json", str(out)])
    with pytest.raises(ConfigError, match="--from renders a saved one"):
        main(["--from", str(out), "--resume"])
