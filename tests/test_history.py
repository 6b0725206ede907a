"""bench.history: entries from gate and compare records, the history file, series and their change points."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench import history, history_series
from diffusion.cli import run
from diffusion.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
COMPARE_RECORD = ROOT / "results" / "compare-alt-neu-seed-epyc-2cpu.json"
ENVIRONMENT = {
    "cpu_model": "AMD EPYC",
    "usable_cpus": 2,
    "backend": "tensorflow",
    "python": "3.11.7",
    "versions": {"keras": "3.15.1", "numpy": "2.4.6"},
    "env": {"TF_NUM_INTRAOP_THREADS": None, "OMP_NUM_THREADS": None},
    "git_commit": "ab" * 20,
    "preset": "tiny",
}
MACHINE = history.fingerprint_of(ENVIRONMENT)


def commit(i: int) -> str:
    return f"{i:04x}" + "c" * 36


def entry(i: int, estimate: float, *, machine: dict | None = None, setup: str = "") -> dict:
    return history.make_entry(
        setup=setup,
        commit=commit(i),
        dirty=False,
        source="gate",
        preset="tiny",
        machine=machine or MACHINE,
        metrics={
            "train_samples_per_s": {"estimate": estimate, "low": estimate * 0.97, "high": estimate * 1.03, "n": 5}
        },
        created=f"2026-12-01T{i // 60:02d}:{i % 60:02d}:00+0000",
    )


def series_of(estimates: list[float]) -> history_series.Series:
    (series,) = history_series.build_series(
        [entry(i, e) for i, e in enumerate(estimates)], [commit(i) for i in range(99)]
    )
    return series


def test_a_planted_step_is_found_at_its_commit():
    rng = np.random.default_rng(20)
    speeds = 100 * np.exp(rng.normal(0, 0.02, 16))
    speeds[10:] *= 0.88  # commit 10 makes training 12% slower
    (step,) = history_series.change_points(series_of(speeds.tolist()))
    assert step.commit == commit(10) and step.index == 10
    assert step.change == pytest.approx(-0.12, abs=0.03) and step.pvalue < history_series.ALPHA


def test_a_flat_noisy_series_has_no_change_point():
    rng = np.random.default_rng(21)
    assert history_series.change_points(series_of((100 * np.exp(rng.normal(0, 0.02, 16))).tolist())) == []


def test_a_series_too_short_for_two_segments_has_no_change_point():
    assert history_series.find_steps([1.0, 1.0, 2.0]) == []


def test_equal_values_with_one_step_are_a_change_point():
    assert [i for i, _ in history_series.find_steps([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])] == [3]


def test_a_series_follows_git_order_not_the_time_made():
    entries = [entry(i, 100.0) for i in range(4)]
    order = [commit(i) for i in (2, 0, 3, 1)]
    (series,) = history_series.build_series(entries, order)
    assert [p.commit for p in series.points] == order and series.ordered_by == "git commit order"


def test_a_short_commit_id_matches_its_commit_in_git_order():
    e = entry(1, 100.0)
    e["commit"] = commit(1)[:10]
    (series,) = history_series.build_series([entry(0, 100.0), e], [commit(0), commit(1)])
    assert series.ordered_by == "git commit order"


def test_commits_not_in_the_repository_are_ordered_by_time_and_said_so():
    entries = [entry(i, 100.0) for i in (3, 1, 2)]
    (series,) = history_series.build_series(entries, [commit(1)])
    assert [p.commit for p in series.points] == [commit(1), commit(2), commit(3)]
    assert series.ordered_by.startswith("time made (2 of 3 commits")


def test_another_machine_is_another_series():
    other = {**MACHINE, "cpu_model": "Intel Xeon"}
    series = history_series.build_series([entry(0, 100.0), entry(1, 60.0, machine=other)], [commit(0), commit(1)])
    assert len(series) == 2 and {len(s.points) for s in series} == {1}
    from bench.history_report import notes

    assert notes(series) == [
        "train_samples_per_s: 2 series, whose numbers are not compared (another machine, preset or setup is "
        "another series); they differ in cpu_model"
    ]


def test_an_unknown_metric_is_refused_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"--metric must be one of train_samples_per_s, but got V9"):
        history_series.build_series([entry(0, 100.0)], [], ["V9"])


def test_entries_of_a_committed_compare_record():
    (e,) = history.entries_from_compare(json.loads(COMPARE_RECORD.read_text()))
    assert e["commit"] == "739834966f57fbf2d04ce60837f6f91f26609a03" and not e["dirty"]
    assert e["source"] == "compare" and e["preset"] == "seed"
    assert e["machine"]["cpu_model"] == "AMD EPYC" and e["machine"]["usable_cpus"] == 2
    assert e["metrics"]["V1"] == {
        "estimate": pytest.approx(6.7678, rel=1e-4),
        "low": pytest.approx(5.0362, rel=1e-4),
        "high": pytest.approx(9.0947, rel=1e-4),
        "n": 3,
        "unit": "x",
    }
    assert "M3" not in e["metrics"]  # not measured in that run
    assert e["subject"] == "neu against alt, speed suite"


def gate_record(*, commit_id: str = "ab" * 20 + "-dirty") -> dict:
    """A gate-run/2 record as bench.gate writes it, with three paired rounds of turns."""
    records = []
    for r, (ref, head) in enumerate([(50.0, 45.0), (52.0, 46.0), (49.0, 44.5)]):
        for role, speed in (("ref", ref), ("head", head)):
            env = {**ENVIRONMENT, "git_commit": commit_id if role == "head" else None}
            phases = {"train": {"train_samples_per_s": speed}, "validate": {"val_pass_s": 0.05}}
            records.append({"role": role, "round": r, "phases": phases, "environment": env})
    measured = {"estimate": 0.9, "low": 0.88, "high": 0.92, "n": 3}
    return {
        "schema": "pmt-bench/gate-run/2",
        "seconds": 120.0,
        "fired": True,
        "mode": "against",
        "subject": "HEAD abababab+uncommitted (neu) against REF HEAD~1 = cdcdcdcdcd (neu)",
        "head": {"label": "HEAD abababab+uncommitted", "commit": "abababab+uncommitted", "knobs": {}},
        "plan": {
            "preset": "tiny",
            "rounds": 3,
            "turn_seconds": 0.05,
            "job_options": {"train_seconds": 1.0, "val_passes": 10},
        },
        "records": records,
        "checks": [
            {"metric": "train_samples_per_s", "ratio": "HEAD/REF", "measured": measured},
            {"metric": "val_pass_s", "ratio": "HEAD/REF", "measured": None},
        ],
    }


def test_entries_of_a_gate_record():
    (e,) = history.entries_from_gate(gate_record())
    assert e["commit"] == "ab" * 20 and e["dirty"] and e["source"] == "gate" and e["preset"] == "tiny"
    assert e["metrics"]["train_samples_per_s HEAD/REF"]["estimate"] == 0.9
    assert "val_pass_s HEAD/REF" not in e["metrics"]  # its check measured nothing
    head = e["metrics"]["train_samples_per_s"]
    assert head["n"] == 3 and head["unit"] == "/s" and head["estimate"] == pytest.approx(45.15, rel=1e-3)
    assert e["metrics"]["val_pass_s"]["estimate"] == pytest.approx(0.05)
    assert e["machine"] == MACHINE and e["setup"] == "gate against, in turns, train_seconds 1, val_passes 10"


def test_another_setup_is_another_series():
    entries = [entry(0, 100.0, setup="gate against, in turns"), entry(1, 60.0, setup="gate against, whole processes")]
    assert len(history_series.build_series(entries, [commit(0), commit(1)])) == 2


def test_a_gate_record_without_a_commit_is_refused():
    record = gate_record(commit_id=None)
    record["head"]["commit"] = None
    with pytest.raises(ConfigError, match="has no commit"):
        history.entries_from_gate(record)


def test_appended_entries_read_back_one_line_each(tmp_path: Path):
    path = tmp_path / "h.jsonl"
    for i in range(2):
        history.append(path, entry(i, 100.0 + i))
    assert len(path.read_text().splitlines()) == 2
    assert history.read(path) == [entry(i, 100.0 + i) | {"created": history.read(path)[i]["created"]} for i in range(2)]


def test_a_malformed_line_is_refused_naming_file_and_line(tmp_path: Path):
    path = tmp_path / "h.jsonl"
    history.append(path, entry(0, 100.0))
    bad = entry(1, 100.0)
    bad["metrics"]["train_samples_per_s"]["low"] = "fast"
    path.write_text(path.read_text() + json.dumps(bad) + "\n")
    with pytest.raises(ConfigError, match=rf"{path} line 2: `metrics.train_samples_per_s.low` must be a finite number"):
        history.read(path)


def test_a_cut_line_is_refused_as_not_json(tmp_path: Path):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(entry(0, 100.0))[:50] + "\n")
    with pytest.raises(ConfigError, match=rf"{path} line 1 is not JSON"):
        history.read(path)


def test_an_interval_that_misses_its_estimate_is_refused():
    bad = entry(0, 100.0)
    bad["metrics"]["train_samples_per_s"]["low"] = 101.0
    with pytest.raises(ConfigError, match="low <= estimate <= high"):
        history.validate(bad, "h.jsonl line 1")


def test_the_command_refuses_a_malformed_history_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "h.jsonl"
    path.write_text("{}\n")
    with pytest.raises(SystemExit) as exit_:
        run(history.main, ["--file", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {path} line 1: `schema` must be present, but it is missing.\n"


def test_the_command_refuses_a_plot_over_the_history(tmp_path: Path):
    path = tmp_path / "h.jsonl"
    with pytest.raises(ConfigError, match="`--plot` must not be the file of `--file`"):
        history.main(["--file", str(path), "--plot", str(path)])


def test_the_command_adds_a_compare_record_and_writes_plot_and_markdown(tmp_path: Path):
    path, png, md = tmp_path / "h.jsonl", tmp_path / "h.png", tmp_path / "h.md"
    for i, speed in enumerate([100, 101, 99, 100, 88, 87, 89, 88]):
        history.append(path, entry(i, float(speed)))
    assert (
        history.main(["--file", str(path), "--add", str(COMPARE_RECORD), "--plot", str(png), "--markdown", str(md)])
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert "![history](h.png)" in text and "## V1 (x), seed, compare, speed suite, AMD EPYC, 2 cores" in text
    assert f"1 change point(s): `{commit(4)[:10]}` 100 -> 88 (-12.0%" in text
    assert f"| `{commit(4)[:10]}` | 12-01 00:04 | 88 [85.36, 90.64] | 5 | -12.0% p=" in text
    assert len(history.read(path)) == 9


def test_commit_order_is_git_order_oldest_first(tmp_path: Path):
    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout.strip()

    git("init", "-q")
    made = []
    for i in range(3):
        git("commit", "-q", "--allow-empty", "-m", f"c{i}")
        made.append(git("rev-parse", "HEAD"))
    assert history_series.commit_order(tmp_path) == made


def test_the_gate_refuses_a_history_that_is_its_json(tmp_path: Path):
    from bench import gate

    path = str(tmp_path / "h.jsonl")
    with pytest.raises(ConfigError, match="`--history` must not be the file of `--json`"):
        gate.main(["--against", "HEAD", "--json", path, "--history", path])


def test_the_gate_refuses_a_history_of_a_baseline_write(tmp_path: Path):
    from bench import gate

    args = ["--baseline", str(tmp_path / "b.json"), "--write-baseline", "--history", str(tmp_path / "h.jsonl")]
    with pytest.raises(ConfigError, match="--write-baseline measures no check"):
        gate.main(args)


def test_a_record_added_twice_is_kept_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "h.jsonl"
    for _ in range(2):
        history.main(["--file", str(path), "--add", str(COMPARE_RECORD), "--metric", "V1"])
    assert len(history.read(path)) == 1
    assert f"added 0 entries from {COMPARE_RECORD} to {path} (1 already there)" in capsys.readouterr().out
