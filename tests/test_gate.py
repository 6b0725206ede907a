"""bench.gate and bench.calibrate as a user runs them: A/B against a git ref, stored baselines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import baseline as stored
from bench.calibrate import plant_slowdown
from bench.roles import ROOT as CHECKOUT
from bench.roles import CodeTree, Role
from bench.runner import Plan, run_plan
from bench.trees import probe
from bench.turns import TurnWorker, WorkerFailed
from diffusion.errors import ConfigError
from diffusion.paths import NEU, parse_path
from tests.conftest import PYTHON, ROOT, TINY, python_env

FAST = ("--preset", "tiny", "--train-seconds", "0.5")


def bench(module: str, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env=python_env(**env), cwd=ROOT
    )


def one_line_exit_2(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def a_baseline(**changes: object) -> dict:
    """A valid baseline for this machine and today's paths, with ``changes`` applied."""
    record = stored.build(
        commit="0" * 40,
        preset="tiny",
        rounds=3,
        job_options={"train_seconds": 0.5},
        paths={"base": parse_path("alt"), "candidate": parse_path("neu")},
        measured={m: {"estimate": 20.0, "low": 19.0, "high": 21.0, "n": 3} for m in stored.GATED_METRICS},
        per_round={m: [19.0, 20.0, 21.0] for m in stored.GATED_METRICS},
        tolerance=0.15,
        environment={},
    )
    record.update(changes)
    return record


@pytest.mark.slow
def test_head_against_itself_passes(tmp_path):
    out = tmp_path / "gate.json"
    # The gate's own turns, at 3 rounds (its fewest with a verdict), on one pinned core.
    result = bench(
        "bench.gate", "--against", "HEAD", "--aa", "--preset", "tiny", "--rounds", "3", "--tolerance", "0.10",
        "--train-seconds", "0.5", "--cpus", "1", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == 2 and "pinned to 1 core(s)" in result.stdout
    assert "3 rounds taking turns" in result.stdout
    record = json.loads(out.read_text())
    assert record["fired"] is False and record["ref"]["name"] == "HEAD"
    assert record["plan"]["turn_seconds"] == 0.05 and all(r["measured_in_turns"] for r in record["records"])
    # Turns of at least 50 ms until each side has trained 0.5 s: at most 10, fewer where steps
    # overrun a turn (a loaded machine), the same count for both sides of a round.
    for round_id in {r["round"] for r in record["records"]}:
        train = [r["phases"]["train"] for r in record["records"] if r["round"] == round_id]
        assert len({t["turns"] for t in train}) == 1 and train[0]["turns"] <= 10, train
        assert all(t["steady_s"] >= 0.5 for t in train), train
    trees = {r["role"]: r["tree"]["label"] for r in record["records"]}
    assert trees["ref"].startswith("REF HEAD ") and trees["head"].startswith("HEAD ")
    # --cpus reaches every worker of both trees, which pins itself before TensorFlow loads.
    assert {r["environment"]["usable_cpus"] for r in record["records"]} == {1}
    assert {r["environment"]["env"]["TF_NUM_INTRAOP_THREADS"] for r in record["records"]} == {"1"}


@pytest.mark.slow
# Whole-process pairing is measured end to end by
# test_a_ref_without_turns_is_measured_in_whole_processes_and_said_so, and fires on the same
# test statistic; the regression's line is checked here once, in turns.
def test_losing_the_compiled_step_fires_and_says_where():
    result = bench(
        "bench.gate", "--against", "HEAD", *FAST, "--rounds", "3", "--candidate", "neu:train_compile=eager",
        "--pairing", "turns",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "taking turns" in result.stdout
    line = next(x for x in result.stderr.splitlines() if x.startswith("REGRESSION train_samples_per_s"))
    for part in ("HEAD/REF", "over 3 rounds", "REF HEAD ", "samples/s", "usable cores"):
        assert part in line, line


@pytest.mark.slow
def test_a_planted_slowdown_fires(tmp_path):
    out = tmp_path / "calibration.json"
    result = bench(
        "bench.calibrate", "--aa-runs", "0", "--power-runs", "1", "--planted-slowdown", "9", "--rounds", "3",
        *FAST, "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(out.read_text())
    # Step time x10: the plant must show (else the patch did nothing), and at that size the gate
    # fires at 3 rounds unless the rounds' log-ratio sd exceeds ~0.9, beyond any measured (0.1-0.5).
    assert record["planted_measured_train_ratio"] < 0.5, result.stdout
    assert record["power_runs"] == 1 and record["detected"] == 1, result.stdout
    assert record["meets_target"] is False  # one run proves nothing about rates
    assert "planted" not in (ROOT / "diffusion" / "trainer.py").read_text()


def test_run_plan_runs_every_role_every_round_from_its_own_tree():
    ref = CodeTree(Path("/elsewhere"), "REF x", "abc")
    roles = (Role("ref", parse_path("neu"), ("train",), tree=ref), Role("head", parse_path("neu"), ("train",)))
    seen = []

    def fake_worker(job, root):
        seen.append(root)
        return {"phases": {}}

    records = run_plan(Plan(roles, TINY, 3, job_options={"train_seconds": 0.1}), runner=fake_worker)
    assert [r["round"] for r in records] == [0, 0, 1, 1, 2, 2]
    assert sorted(map(str, seen)) == sorted([str(CHECKOUT)] * 3 + ["/elsewhere"] * 3)
    assert all(r["tree"]["label"] == "REF x" for r in records if r["role"] == "ref")


class FakeWorker:
    """A turn-taking worker that answers at once, each train turn 5 steps in 50 ms;
    ``fail_at`` makes its n-th answer fail."""

    log: list[tuple[str, str]] = []

    def __init__(self, job, root, fail_at: int | None = None):
        self.job, self.name, self.asked, self.fail_at = job, str(root), 0, fail_at

    def ask(self, request):
        self.asked += 1
        if self.asked == self.fail_at:
            raise WorkerFailed("worker killed by SIGKILL")
        turn = "ready" if request is None else request["turn"]
        FakeWorker.log.append((self.name, turn))
        answers = {"finish": {"record": {"phases": {}, "from": self.name}}, "train": {"steps": 5, "seconds": 0.05}}
        return answers.get(turn, {})

    def close(self):
        pass


def turn_roles(head_phases: tuple[str, ...] = ("validate", "train")):
    neu = parse_path("neu")
    return (
        Role("ref", neu, ("validate", "train"), tree=CodeTree(Path("/ref"), "REF x", "abc")),
        Role("head", neu, head_phases, tree=CodeTree(Path("/head"), "HEAD y", "def")),
    )


def test_turns_start_both_workers_then_alternate_validation_before_training():
    FakeWorker.log = []
    plan = Plan(turn_roles(), TINY, 2, {"train_seconds": 0.2, "val_passes": 3}, turn_seconds=0.05)
    records = run_plan(plan, start=FakeWorker)
    assert [(r["round"], r["role"], r["from"]) for r in records] == [
        (0, "ref", "/ref"), (0, "head", "/head"), (1, "ref", "/ref"), (1, "head", "/head")
    ]  # fmt: skip
    # Per round: 2 ready, 2 x 3 validate, 2 x 4 train (0.2 s in 50 ms turns, 20 steps >= min_steps), 2 finish.
    assert len(FakeWorker.log) == 2 * 18
    leaders = set()
    for log in (FakeWorker.log[:18], FakeWorker.log[18:]):
        turns = [turn for _, turn in log]
        assert turns == ["ready"] * 2 + ["validate"] * 6 + ["train"] * 8 + ["finish"] * 2
        for k in range(2, 16, 2):  # every turn pair holds both workers
            assert {log[k][0], log[k + 1][0]} == {"/ref", "/head"}
            leaders.add(log[k][0])
    assert leaders == {"/ref", "/head"}  # neither side always goes first


def test_training_turns_go_on_until_every_side_has_its_steps():
    FakeWorker.log = []
    # 0.05 s but min_steps 30: six turns of 5 steps each.
    plan = Plan(turn_roles(), TINY, 1, {"train_seconds": 0.05, "val_passes": 1, "min_steps": 30}, turn_seconds=0.05)
    run_plan(plan, start=FakeWorker)
    assert sum(turn == "train" for _, turn in FakeWorker.log) == 2 * 6


def test_a_role_is_not_asked_for_a_phase_it_does_not_measure():
    FakeWorker.log = []
    plan = Plan(turn_roles(("train",)), TINY, 1, {"train_seconds": 0.1, "val_passes": 2}, turn_seconds=0.05)
    run_plan(plan, start=FakeWorker)
    assert [turn for name, turn in FakeWorker.log if name == "/head"] == ["ready", "train", "train", "finish"]
    assert [turn for name, turn in FakeWorker.log if name == "/ref"].count("validate") == 2


def test_a_worker_failing_mid_round_drops_out_and_the_round_ends_unpaired():
    FakeWorker.log = []
    plan = Plan(turn_roles(), TINY, 1, {"train_seconds": 0.1, "val_passes": 2}, turn_seconds=0.05)
    failing = {"/head": 3}  # ready, one validation pass, then it dies
    records = run_plan(plan, start=lambda job, root: FakeWorker(job, root, failing.get(str(root))))
    by_role = {r["role"]: r for r in records}
    assert by_role["head"]["error"] == "worker killed by SIGKILL"
    assert by_role["ref"]["from"] == "/ref"  # the survivor still reports
    # With one worker left nothing can be paired: no more turns, only the finish.
    assert [turn for name, turn in FakeWorker.log if name == "/ref"][-1] == "finish"
    assert "train" not in [turn for _, turn in FakeWorker.log]


def fake_worker_tree(tmp_path: Path, source: str) -> Path:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "worker.py").write_text(source)
    return tmp_path


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import time\ntime.sleep(120)\n", "worker gave no answer to its start-up within 2 s"),
        ("import time\nprint('hello', flush=True)\ntime.sleep(120)\n", "answered its start-up with 'hello', not JSON"),
        ("raise SystemExit('cannot load the model')\n", "worker exited 1: cannot load the model"),
    ],
)
@pytest.mark.slow
def test_a_worker_that_hangs_babbles_or_dies_fails_at_once_with_the_reason(tmp_path, source, message):
    import time

    from bench.measure import Job

    worker = TurnWorker(Job(NEU, TINY), fake_worker_tree(tmp_path, source), timeout=2)
    start = time.monotonic()
    with pytest.raises(WorkerFailed, match=message):
        worker.ask(None)
    assert time.monotonic() - start < 20  # not the 30 s it would wait for a worker that ended
    assert worker.proc.poll() is not None  # killed and reaped


def test_the_protocol_stream_keeps_library_prints_off_it(blocked_tf):
    code = (
        "import os\nfrom bench.worker import protocol_stream\nout = protocol_stream()\n"
        "print('a library talks', flush=True)\nos.write(1, b'so does C\\n')\nout.write('{\"ok\": 1}\\n')\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, env=python_env(**blocked_tf), cwd=ROOT, timeout=60
    )
    assert result.stdout == '{"ok": 1}\n', result
    assert "a library talks" in result.stderr and "so does C" in result.stderr


@pytest.mark.slow
def test_a_real_worker_takes_turns_and_reports_like_a_whole_job():
    from bench.measure import Job

    worker = TurnWorker(Job(NEU, TINY, train_seconds=0.1, val_passes=2))
    try:
        assert worker.ask(None)["ready"] is True
        assert worker.ask({"turn": "validate"})["seconds"] > 0
        trained = worker.ask({"turn": "train", "seconds": 0.05})
        assert trained["seconds"] >= 0.05 and trained["steps"] >= 1
        record = worker.ask({"turn": "finish"})["record"]
    finally:
        worker.close()
    assert record["measured_in_turns"] is True
    train, validate = record["phases"]["train"], record["phases"]["validate"]
    assert train["turns"] == 1 and train["steady_steps"] == trained["steps"]
    assert train["train_samples_per_s"] == pytest.approx(train["turn_samples_per_s"][0])
    assert len(validate["val_pass_s_all"]) == 1 and validate["val_pass_s"] > 0


@pytest.mark.slow
def test_a_worker_asked_for_an_unknown_turn_fails_with_its_reason():
    from bench.measure import Job

    worker = TurnWorker(Job(NEU, TINY, phases=("train",)))
    try:
        worker.ask(None)
        with pytest.raises(WorkerFailed, match="unknown turn 'nap'; valid turns: warm, validate, train, finish"):
            worker.ask({"turn": "nap"})
    finally:
        worker.close()


@pytest.mark.parametrize(
    ("turns", "disk", "message"),
    [(0, (), "in \\(0, 60\\) or None"), (True, (), "in \\(0, 60\\)"), (0.05, ("base",), "whole-process")],
)
def test_a_turn_plan_is_checked(turns, disk, message):
    with pytest.raises(ConfigError, match=message):
        Plan(turn_roles(), TINY, 2, turn_seconds=turns, disk_roles=disk)


def test_planting_patches_only_the_given_tree(tmp_path):
    (tmp_path / "diffusion").mkdir()
    shutil.copy(ROOT / "diffusion" / "trainer.py", tmp_path / "diffusion" / "trainer.py")
    plant_slowdown(tmp_path, 0.25)
    assert "0.25 * (time.perf_counter() - t1)" in (tmp_path / "diffusion" / "trainer.py").read_text()
    assert "planted" not in (ROOT / "diffusion" / "trainer.py").read_text()


def test_planting_refuses_a_training_loop_it_does_not_know(tmp_path):
    (tmp_path / "diffusion").mkdir()
    (tmp_path / "diffusion" / "trainer.py").write_text("loss = step(batch)\n")
    with pytest.raises(ConfigError, match="exactly once"):
        plant_slowdown(tmp_path, 0.25)


def old_tree(tmp_path: Path, worker: str = "") -> CodeTree:
    """A REF tree whose worker and Job are as an older commit had them."""
    for package in ("bench", "diffusion"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "bench" / "worker.py").write_text(worker)
    (tmp_path / "bench" / "measure.py").write_text(
        "from dataclasses import dataclass\n@dataclass\nclass Job:\n    spec: str\n    preset: str\n"
    )
    (tmp_path / "diffusion" / "paths.py").write_text(
        "class P:\n    def knobs(self): return {}\ndef parse_path(s): return P()\n"
    )
    return CodeTree(tmp_path, "REF old", "abc")


@pytest.mark.slow
def test_a_ref_whose_worker_lacks_a_job_field_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="Job lacks val_passes, which this checkout sends"):
        probe(old_tree(tmp_path), ["spec", "preset", "val_passes"], ["neu"])


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["", "TURNS_PROTOCOL = 0\n"])
def test_a_ref_whose_worker_does_not_take_turns_is_refused_for_turns_only(tmp_path, worker):
    tree = old_tree(tmp_path, worker)
    assert probe(tree, ["spec", "preset"], ["neu"]) == {"neu": {}}
    with pytest.raises(
        ConfigError,
        match="its worker (predates taking turns|speaks turn protocol 0, this checkout 1); .* or pass --pairing processes",
    ):
        probe(tree, ["spec", "preset"], ["neu"], turns=True)


@pytest.mark.parametrize("ref", ["no-such-ref", "HEAD~100000", "-x"])
def test_a_bad_ref_is_one_line_exit_2_and_writes_nothing(tmp_path, blocked_tf, ref):
    out = tmp_path / "gate.json"
    out.write_text("previous")
    result = bench("bench.gate", f"--against={ref}", "--json", str(out), **blocked_tf)
    one_line_exit_2(result, "must name a commit of this repository")
    assert out.read_text() == "previous"


def write(tmp_path: Path, record: dict) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(record))
    return path


def test_a_matching_baseline_loads(tmp_path):
    assert stored.load(write(tmp_path, a_baseline()))["preset"] == "tiny"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (None, "no such file"),
        ([], "not a JSON object"),
        ({"schema": "pmt-bench/baseline/1", "metrics": {}}, "expected 'pmt-bench/baseline/2'"),
        ({"metrics": {}}, "has no metrics"),
        ({"commit": "abc123-dirty"}, "must come from a clean commit"),
        ({"commit": None}, "must come from a clean commit"),
    ],
)
def test_a_bad_or_dirty_baseline_is_one_line_exit_2_and_writes_nothing(tmp_path, blocked_tf, record, message):
    path = tmp_path / "baseline.json"
    if record is not None:
        path.write_text(json.dumps(a_baseline(**record) if isinstance(record, dict) else record))
    out = tmp_path / "gate.json"
    out.write_text("previous")
    result = bench("bench.gate", "--baseline", str(path), "--json", str(out), **blocked_tf)
    one_line_exit_2(result, message)
    assert out.read_text() == "previous"


def test_a_baseline_from_another_machine_is_refused(tmp_path, blocked_tf):
    record = a_baseline()
    record["fingerprint"]["cpu_model"] = "Some Other CPU"
    result = bench("bench.gate", "--baseline", str(write(tmp_path, record)), **blocked_tf)
    one_line_exit_2(result, "cpu_model: 'Some Other CPU' -> ")


def test_allow_other_machine_skips_the_fingerprint_but_not_the_knobs(tmp_path, blocked_tf):
    record = a_baseline()
    record["fingerprint"]["versions"] = {"keras": "0.0"}
    record["paths"]["candidate"]["knobs"]["clip_norm"] = None
    path = write(tmp_path, record)
    one_line_exit_2(bench("bench.gate", "--baseline", str(path), **blocked_tf), "another machine")
    result = bench("bench.gate", "--baseline", str(path), "--allow-other-machine", **blocked_tf)
    one_line_exit_2(result, "path 'neu' (candidate) has other knobs today (clip_norm=None -> 1.0)")


def test_the_committed_baseline_loads_though_it_predates_the_tracking_knob():
    data = stored.load(ROOT / "baselines" / "tiny.json", allow_other_machine=True)
    assert "tracking" not in data["paths"]["candidate"]["knobs"]  # what this test is about


def test_a_knob_an_old_record_lacks_takes_its_value_from_before():
    knobs = parse_path("alt").knobs()
    del knobs["tracking"]
    assert stored.knob_diff(knobs, parse_path("alt")) == []
    assert stored.knob_diff(knobs, parse_path("alt:batch_size=64")) == ["batch_size=32 -> 64"]


def test_a_knob_no_measured_phase_depends_on_does_not_make_a_baseline_stale():
    assert stored.knob_diff(parse_path("neu:tracking=none").knobs(), parse_path("neu")) == []


def test_a_stored_knob_that_no_longer_exists_is_a_difference():
    knobs = {**parse_path("neu").knobs(), "retired": 1}
    assert stored.knob_diff(knobs, parse_path("neu")) == ["retired=1 -> None"]


def test_a_baseline_whose_knobs_changed_is_refused(tmp_path, blocked_tf):
    record = a_baseline()
    record["paths"]["base"]["knobs"]["batch_size"] = 64
    result = bench("bench.gate", "--baseline", str(write(tmp_path, record)), **blocked_tf)
    one_line_exit_2(result, "path 'alt' (base) has other knobs today (batch_size=64 -> 32)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--cpus", "0"], "--cpus must be between 1 and this machine's"),
        (["--cpus", "4096"], "but got 4096"),
        (["--cpus", "1", "--baseline", "b.json"], "--cpus applies to the A/B gate"),
        (["--pairing", "turns", "--baseline", "b.json"], "--pairing applies to the A/B gate"),
        (["--pairing", "both"], "invalid choice: 'both' (choose from 'turns', 'processes')"),
        (["--tolerance", "1.5"], "--tolerance must be in [0, 1)"),
        (["--candidate", "fast"], "unknown path 'fast'"),
        (["--write-baseline"], "must come with --baseline"),
        (["--against", "HEAD", "--baseline", "b.json"], "not allowed with argument"),
    ],
)
def test_bad_arguments_are_one_line_exit_2_before_tensorflow(blocked_tf, args, message):
    one_line_exit_2(bench("bench.gate", *args, **blocked_tf), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cpus", "0"], "--cpus must be between 1 and this machine's"),
        (["--aa-runs", "-1"], "--aa-runs must be at least 0"),
        (["--aa-runs", "0", "--power-runs", "0"], "must not both be 0"),
        (["--planted-slowdown", "0"], "--planted-slowdown must be positive"),
    ],
)
def test_bad_calibration_arguments_are_one_line_exit_2_and_write_nothing(tmp_path, blocked_tf, args, message):
    out = tmp_path / "calibration.json"
    one_line_exit_2(bench("bench.calibrate", *args, "--json", str(out), **blocked_tf), message)
    assert not out.exists()


def a_run(kind: str, fired: bool, high: float, per_round: dict[str, list[float]]) -> dict:
    check = {"metric": "train_samples_per_s", "measured": {"estimate": 1.0, "low": 0.9, "high": high, "n": 3}}
    return {"kind": kind, "fired": fired, "seconds": 100.0, "checks": [check], "per_round": per_round}


def test_calibration_summary_counts_bounds_and_noise():
    from bench.calibration import TARGET, summarise

    quiet = {"train_samples_per_s": [1.0, 1.1, 0.9], "train_step_ms_median": [1.0, 1.0, 1.0], "val_pass_s": []}
    runs = [a_run("aa", False, 1.1, quiet)] * 60 + [a_run("power", True, 0.8, quiet)] * 19
    runs.append(a_run("power", False, 0.9, quiet))
    summary = summarise(runs, tolerance=0.15, rounds=6, cpus=1, pairing="turns")
    assert (summary["aa_runs"], summary["false_alarms"], summary["power_runs"], summary["detected"]) == (60, 0, 20, 19)
    assert summary["false_alarm_rate_upper95"] == pytest.approx(0.0487, abs=1e-4)  # 1 - 0.05 ** (1 / 60)
    assert summary["detection_rate"] == 0.95 and summary["seconds_per_run"] == 100.0
    assert summary["meets_target"] is (100.0 <= TARGET["seconds"])
    assert summary["cpus"] == 1
    assert summary["per_round_log_sd"]["train_step_ms_median"] == 0.0
    assert summary["per_round_log_sd"]["train_samples_per_s"] > 0.05
    assert summary["per_round_log_sd"]["val_pass_s"] is None  # no paired round: nothing to say
    # Post hoc, a tolerance whose floor sits above a power run's high end catches it.
    assert summary["post_hoc_at_tolerance"]["0.05"]["detected"] == 20
    assert summary["post_hoc_at_tolerance"]["0.15"]["detected"] == 19


def test_a_calibration_record_renders_its_summary_and_plot(tmp_path, blocked_tf):
    from bench.calibration import SCHEMA, TARGET, summarise

    def checked(kind: str, high: float) -> dict:
        run = a_run(kind, high < 0.9, high, {"train_samples_per_s": [1.0, 0.95, 1.02]})
        run["checks"][0] |= {
            "passed": high >= 0.9,
            "measured": {"estimate": high - 0.05, "low": high - 0.1, "high": high, "n": 3},
        }
        return run

    runs = [checked("aa", 1.03)] * 3 + [checked("power", 0.82), checked("power", 0.95)]
    record = {
        "schema": SCHEMA, "command": "python -m bench.calibrate ...", "machine": "AMD EPYC, 2 usable cores",
        "commit": "0" * 40, "preset": "tiny", "planted_slowdown": 0.25, "planted_throughput_ratio": 0.8,
        "target": TARGET, "note": "synthetic", **summarise(runs, 0.10, 5, None, "turns"), "runs": runs,
    }  # fmt: skip
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(record))
    result = bench("bench.calibrate", "--from", str(path), **blocked_tf)
    assert result.returncode == 0, result.stderr
    md = path.with_suffix(".md").read_text()
    for part in (
        "| false alarms (interval wholly below the floor: the gate fires) | 0 of 3 (95% interval [0.0%, 70.8%], "
        "one-sided 95% upper bound 63.2%)",
        "| false alarms above (interval wholly above the mirror floor 1.11x) | 0 of 3",
        "| detected | 1 (50%, 95% interval [1.3%, 98.7%]",
        "pairing turns",
        "| 0.10 | 0 of 3 | 0 of 3 | 1 of 2 |",
    ):
        assert part in md, md
    assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("not json", "is not valid JSON"),
        (
            json.dumps({"schema": "pmt-bench/gate-run/2"}),
            "has schema 'pmt-bench/gate-run/2'; expected 'pmt-bench/gate-calibration/1'",
        ),
    ],
)
def test_rendering_something_that_is_not_a_calibration_record_is_one_line_exit_2(
    tmp_path, blocked_tf, content, message
):
    path = tmp_path / "record.json"
    if content is not None:
        path.write_text(content)
    one_line_exit_2(bench("bench.calibrate", "--from", str(path), **blocked_tf), message)
    assert not path.with_suffix(".png").exists()


def test_a_calibration_short_of_the_counts_does_not_meet_the_target():
    from bench.calibration import summarise

    quiet = {"train_samples_per_s": [1.0, 1.0]}
    summary = summarise(
        [a_run("aa", False, 1.1, quiet)] * 8 + [a_run("power", True, 0.8, quiet)] * 6, 0.15, 6, None, "turns"
    )
    assert summary["meets_target"] is False and summary["false_alarm_rate_upper95"] > 0.3


def test_a_pinned_gate_sends_cpus_so_a_ref_without_the_field_is_refused():
    from bench.gate import sent_fields
    from bench.gate_options import JOB_OPTIONS

    assert "cpus" in sent_fields(NEU, TINY, JOB_OPTIONS, 1)
    assert "cpus" not in sent_fields(NEU, TINY, JOB_OPTIONS, None)


@pytest.mark.parametrize("cpus", [0, 4096])
def test_cpus_from_a_calibration_of_a_larger_machine_is_refused_naming_it(cpus):
    from bench.gate_options import check_cpus

    with pytest.raises(
        ConfigError, match=f"cpus of gate-calibration-tiny-big.json must be between 1 and .* but got {cpus}"
    ):
        check_cpus(cpus, "cpus of gate-calibration-tiny-big.json")
    assert check_cpus(None, "--cpus") is None and check_cpus(1, "--cpus") == 1


def test_a_calibration_that_pinned_more_cores_than_this_machine_has_is_refused(tmp_path, monkeypatch):
    import bench.gate_options

    record = {"meets_target": True, "tolerance": 0.05, "rounds": 8, "cpus": 4096}
    (tmp_path / "gate-calibration-tiny-big.json").write_text(json.dumps(record))
    monkeypatch.setattr(bench.gate_options, "RESULTS", tmp_path)
    with pytest.raises(ConfigError, match="cpus of gate-calibration-tiny-big.json must be between 1 and"):
        bench.gate_options.calibrated_defaults("tiny")
    (tmp_path / "gate-calibration-tiny-big.json").write_text(json.dumps({**record, "cpus": 1}))
    assert bench.gate_options.calibrated_defaults("tiny")["cpus"] == 1
    # A record from before turns measured whole processes; the gate then runs it that way.
    assert bench.gate_options.calibrated_defaults("tiny")["pairing"] == "processes"
    (tmp_path / "gate-calibration-tiny-big.json").write_text(json.dumps({**record, "cpus": 1, "pairing": "turns"}))
    assert bench.gate_options.calibrated_defaults("tiny")["pairing"] == "turns"


@pytest.fixture(scope="module")
def repo_with_an_old_ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository of this checkout's files (uncommitted changes included) whose previous
    commit's worker predates turns."""
    repo = tmp_path_factory.mktemp("repo")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True
        )

    worker = repo / "bench" / "worker.py"
    today = worker.read_text()
    worker.write_text(today.replace("TURNS_PROTOCOL = 1\n", ""))
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "old: a worker without turns")
    worker.write_text(today)
    git("commit", "-qam", "new")
    return repo


def gate_in(repo: Path, *args: str, site: str | None = None) -> subprocess.CompletedProcess:
    """``bench.gate --against HEAD~1`` run from ``repo``'s own code (``site``: a sitecustomize dir first)."""
    env = python_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, str(repo)]))
    return subprocess.run(
        [PYTHON, "-m", "bench.gate", "--against", "HEAD~1", *args],
        capture_output=True, text=True, timeout=900, cwd=repo, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_turns_asked_for_by_name_against_a_ref_without_them_is_refused(repo_with_an_old_ref, blocked_tf):
    site = blocked_tf["PYTHONPATH"].split(os.pathsep)[0]
    result = gate_in(repo_with_an_old_ref, "--pairing", "turns", site=site)
    one_line_exit_2(result, "its worker predates taking turns; gate against a later ref, or pass --pairing processes")


@pytest.mark.slow
def test_a_ref_without_turns_is_measured_in_whole_processes_and_said_so(repo_with_an_old_ref):
    result = gate_in(repo_with_an_old_ref, "--preset", "tiny", "--rounds", "2", "--train-seconds", "0.2")
    assert result.returncode in (0, 1), result.stdout + result.stderr  # measured, whatever the verdict
    assert (
        "predates taking turns; gate against a later ref, or pass --pairing processes. Measuring whole processes instead."
        in result.stdout
    )
    assert "2 rounds of whole processes" in result.stdout
