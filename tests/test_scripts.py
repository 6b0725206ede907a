"""The SLURM script `hpo sbatch` writes: a user's value is data in it, never a command."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from pathlib import Path

import pytest

from diffusion.errors import ConfigError
from diffusion.hpo.cli import check_study, dispatch
from tests.conftest import PYTHON, python_env

SBATCH = ["sbatch", "--n-trials", "8", "--workers", "2"]


def sbatch(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert dispatch([*SBATCH, *args], environ={}) == 0
    return out.getvalue()


@pytest.mark.parametrize(
    "name", ["x$(touch pwned)", "a b", "../up", "-dash", "a;b", "a`id`", "é", "", "x" * 101, "s\nt"]
)
def test_a_study_name_outside_the_safe_set_is_refused_naming_it_and_the_set(name):
    with pytest.raises(ConfigError, match=r"`--study` must be 1-100 of A-Z a-z 0-9 _ \. \+ -") as info:
        dispatch([*SBATCH, f"--study={name}", "--storage", "postgresql://me@db/optuna"], environ={})
    assert repr(name) in str(info.value) and "\n" not in str(info.value)


def test_a_hostile_study_name_is_one_line_exit_2_before_tensorflow(tmp_path, blocked_tf):
    result = subprocess.run(
        [PYTHON, "-m", "diffusion.hpo", *SBATCH, "--study", "x$(touch pwned)"],
        capture_output=True,
        text=True,
        env=python_env(**blocked_tf),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "'x$(touch pwned)'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--account", "m1 2"), ("--time", "1:00\ntouch pwned"), ("--qos", "a#b"), ("--partition", "'x'")],
)
def test_a_value_sbatch_or_bash_would_misread_in_an_sbatch_line_is_refused(flag, value):
    with pytest.raises(ConfigError, match=f"`{flag}` must be printable ASCII without whitespace"):
        sbatch("--study", "s", "--storage", "postgresql://me@db/optuna", flag, value)


def fake_bin(directory: Path) -> Path:
    """`srun` recording the storage and answering "not there yet" (3), `python` recording its
    arguments, `sleep` a no-op:
    the script runs its whole retry loop in a moment and ends on its `echo`."""
    directory.mkdir()
    scripts = {
        "srun": 'printf "%s" "$OPTUNA_STORAGE" > "$STORAGE_FILE"; exit 3',
        "python": 'printf "%s\\n" "$@" > "$ARGS_FILE"',
        "sleep": "exit 0",
    }
    for name, body in scripts.items():
        (directory / name).write_text(f"#!/bin/sh\n{body}\n")
        (directory / name).chmod(0o755)
    return directory


HOSTILE_JOURNAL = "journal:/tmp/a'$(touch pwned1)'\ntouch pwned2 #.log"


def hostile_script() -> str:
    return sbatch(
        "--study", "s", "--storage", HOSTILE_JOURNAL, "--account", "$(touch${IFS}pwned3)",
        "--path", "neu:batch_size=8", "--qos", "`touch${IFS}pwned4`",
    )  # fmt: skip


def run_script(tmp_path: Path, task: str) -> subprocess.CompletedProcess:
    (tmp_path / "job.sh").write_text(hostile_script())
    bin_dir = fake_bin(tmp_path / "bin")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_ARRAY_TASK_ID": task,
        "SLURM_CPUS_PER_TASK": "1",
        "ARGS_FILE": str(tmp_path / "args.txt"),
        "STORAGE_FILE": str(tmp_path / "storage.txt"),
    }
    return subprocess.run(["bash", "job.sh"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


def test_a_script_with_hostile_values_parses_under_bash_n(tmp_path):
    (tmp_path / "job.sh").write_text(hostile_script())
    assert subprocess.run(["bash", "-n", "job.sh"], cwd=tmp_path, capture_output=True).returncode == 0


def test_a_script_with_hostile_values_runs_its_echo_path_without_running_them(tmp_path):
    result = run_script(tmp_path, task="1")
    assert result.returncode == 3, result.stderr
    assert "study s never appeared in the storage" in result.stderr
    assert not list(tmp_path.glob("pwned*"))
    assert (tmp_path / "storage.txt").read_text() == HOSTILE_JOURNAL  # the worker gets the path unchanged


def test_task_0_passes_the_hostile_values_as_plain_arguments(tmp_path):
    run_script(tmp_path, task="0")
    args = (tmp_path / "args.txt").read_text().splitlines()
    assert args[:5] == ["-m", "diffusion.hpo", "init", "--study", "s"]
    assert args[args.index("--path") + 1] == "neu:batch_size=8"
    assert not list(tmp_path.glob("pwned*"))


def test_every_study_name_the_benchmarks_give_is_accepted():
    from bench.hpo import HpoPlan, runs

    for run in runs(HpoPlan()):
        assert check_study(f"{run.name}-0") == f"{run.name}-0"
    for role in ("base", "candidate"):
        assert check_study(f"{role}-0") == f"{role}-0"
