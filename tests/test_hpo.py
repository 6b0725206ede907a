"""Hyperparameter search: space, storages (journal file and a real PostgreSQL), workers, kills."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import pgserver as pg
from diffusion.errors import ConfigError
from diffusion.hpo.search import RuntimeGate
from diffusion.hpo.space import apply_params, check_params, load_best
from diffusion.paths import NEU
from diffusion.presets import get_preset
from tests import slurm
from tests.conftest import PYTHON, ROOT, python_env

# A search's own limit (hpo(): SIGABRT and its stacks at 480 s) comes before the test's.
pytestmark = pytest.mark.timeout(900)

TINY_SEARCH = ["--preset", "tiny", "--no-progress"]  # and --epochs: the fewest that show the property


def hpo(*args: str, timeout: float = 480, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    """Run the hpo CLI; one that outlives ``timeout`` is sent SIGABRT, so its faulthandler
    prints every thread's stack into the failure instead of a bare timeout."""
    command = [PYTHON, "-m", "diffusion.hpo", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env(**env), cwd=cwd
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            hung = False
        except subprocess.TimeoutExpired:
            hung = True
            proc.send_signal(signal.SIGABRT)
            try:
                stdout, stderr = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:  # the abort itself stuck: the stacks are lost, not the test
                proc.kill()
                stdout, stderr = proc.communicate()
        except BaseException:  # pytest-timeout's failure or Ctrl-C: never leave the search running
            proc.kill()
            raise
    if hung:
        stacks = stderr[max(stderr.find("Fatal Python error"), 0) :][-6000:]
        pytest.fail(f"{shlex.join(map(str, command))} still ran after {timeout:.0f} s; its stacks:\n{stacks}")
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def trial_states(storage: str, study: str) -> list[str]:
    import optuna

    from diffusion.hpo.storage import open_storage

    return [t.state.name for t in optuna.load_study(study_name=study, storage=open_storage(storage)).get_trials()]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    missing = pg.missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must test the multi-node storage")
        pytest.skip(missing)
    with pg.postgres_server() as (host, port):
        # The README's spelling (psycopg 3). Trust auth ignores the password; it is there to
        # check that output never shows it.
        yield f"postgresql://postgres:s3cret-pw@{host}:{port}/optuna"


@pytest.fixture(scope="module")
def slurm_cluster():
    missing = slurm.missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must test the generated SLURM script on a real cluster")
        pytest.skip(missing)
    with slurm.slurm_cluster() as cluster:
        yield cluster


# ---- space and best.json ---------------------------------------------------------------------


def test_params_outside_the_space_are_rejected_with_the_choices():
    with pytest.raises(ConfigError, match="hidden_dim"):
        check_params({"hidden_dim": 100})
    with pytest.raises(ConfigError, match="unknown parameters"):
        check_params({"dropout": 0.1})
    with pytest.raises(ConfigError, match=r"learning_rate.*\[0.0001, 0.003\]"):
        check_params({"learning_rate": 1.0})


def test_params_become_a_model_and_a_path():
    preset, path = apply_params(
        get_preset("tiny"),
        NEU,
        {"hidden_dim": 128, "blocks": 3, "learning_rate": 1e-3, "batch_size": 64, "clip_norm": 0.0},
    )
    assert (preset.model.hidden_dim, preset.model.blocks, preset.model.learning_rate) == (128, 3, 1e-3)
    assert (path.batch_size, path.clip_norm, path.train_compile) == (64, None, "graph")


@pytest.mark.parametrize(
    ("content", "message"),
    [("{", "not valid JSON"), ('{"x": 1}', "no `params`"), ('{"params": {"blocks": 99}}', "blocks")],
)
def test_malformed_best_json_is_refused(tmp_path, content, message):
    path = tmp_path / "best.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_best(path)


# ---- which storage -----------------------------------------------------------------------------


def test_storage_flag_wins_over_the_environment():
    from diffusion.hpo.storage import resolve_storage

    resolved = resolve_storage("postgresql://u@h/db", "s", {"OPTUNA_STORAGE": "journal:env.log"})
    assert (resolved.url, resolved.source) == ("postgresql://u@h/db", "--storage")


def test_environment_is_used_without_the_flag():
    from diffusion.hpo.storage import resolve_storage

    resolved = resolve_storage(None, "s", {"OPTUNA_STORAGE": "postgresql://u:pw@h/db"})
    assert (resolved.url, resolved.source) == ("postgresql://u:pw@h/db", "$OPTUNA_STORAGE")
    assert resolved.line() == "storage: postgresql://u:***@h/db (postgresql, from $OPTUNA_STORAGE)"


@pytest.mark.parametrize("environ", [{}, {"OPTUNA_STORAGE": ""}], ids=["unset", "empty"])
def test_default_is_the_studys_journal_file(environ):
    from diffusion.hpo.storage import resolve_storage

    resolved = resolve_storage(None, "s", environ)
    assert (resolved.url, resolved.source) == ("journal:results/hpo/s.log", "default")


@pytest.mark.parametrize("spelling", ["runs/s.log", "journal:runs/s.log"])
def test_a_bare_path_is_a_journal_file_shown_as_the_path_dashboard_opens(spelling):
    from diffusion.hpo.storage import resolve_storage

    resolved = resolve_storage(spelling, "s", {})
    assert resolved.url == "journal:runs/s.log" and resolved.journal == Path("runs/s.log")
    assert resolved.display() == "runs/s.log"  # `optuna-dashboard runs/s.log` opens it; journal:PATH it refuses


def test_a_bad_environment_value_names_its_source():
    from diffusion.hpo.storage import resolve_storage

    with pytest.raises(ConfigError, match=r"`\$OPTUNA_STORAGE` must be .* but got 'postgresql:/db'"):
        resolve_storage(None, "s", {"OPTUNA_STORAGE": "postgresql:/db"})


def test_init_with_optuna_storage_writes_that_journal_and_nothing_under_results(tmp_path, blocked_tf):
    result = hpo(
        "init", "--study", "s", "--preset", "tiny", cwd=tmp_path, OPTUNA_STORAGE="journal:scratch/x.log", **blocked_tf
    )
    assert result.returncode == 0, result.stderr
    assert "storage: scratch/x.log (journal-file, from $OPTUNA_STORAGE)" in result.stdout
    assert (tmp_path / "scratch" / "x.log").is_file() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("command", ["init", "worker", "best"])  # `run`: test_a_search_finishes_every_trial
def test_every_subcommand_prints_the_storage_it_resolved(tmp_path, command, blocked_tf):
    args = {"init": ["--preset", "tiny"], "worker": ["--n-trials", "1"], "best": ["--out", str(tmp_path / "b.json")]}
    result = hpo(
        command, "--study", "s", *args[command], cwd=tmp_path, OPTUNA_STORAGE=str(tmp_path / "j.log"), **blocked_tf
    )
    assert f"storage: {tmp_path / 'j.log'} (journal-file, from $OPTUNA_STORAGE)" in result.stdout, result.stderr


def test_worker_exit_status_tells_not_yet_from_cannot_open(tmp_path, blocked_tf):
    journal = str(tmp_path / "j.log")
    assert hpo("init", "--study", "real", "--storage", journal, **blocked_tf).returncode == 0
    not_yet = hpo("worker", "--study", "later", "--storage", journal, "--n-trials", "1", **blocked_tf)
    assert not_yet.returncode == 3 and "no study named 'later'" in not_yet.stderr
    broken = hpo("worker", "--study", "s", "--storage", "postgresql://u@127.0.0.1:9/x", "--n-trials", "1", **blocked_tf)
    assert broken.returncode == 2 and "cannot be opened" in broken.stderr


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--study", "s", "--n-trials", "0"], "--n-trials must be at least 1"),
        (["run", "--study", "s", "--n-trials", "2", "--workers", "0"], "--workers must be at least 1"),
        (["run", "--study", "s", "--n-trials", "2", "--n-jobs", "0"], "--n-jobs must be at least 1"),
        (["run", "--study", "s", "--n-trials", "2", "--preset", "huge"], "valid presets"),
        (["run", "--study", "s", "--n-trials", "2", "--pruner", "mean"], "median, none"),
        (["run", "--study", "s", "--n-trials", "2", "--storage", "postgresql:/db"], "a scheme without //"),
        (
            ["best", "--study", "nope", "--storage", "journal:/nonexistent/x.journal", "--out", "/tmp/b.json"],
            "no study named 'nope'",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_before_tensorflow(args, message, blocked_tf):
    result = hpo(*args, **blocked_tf)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_unreachable_postgres_fails_fast_without_showing_the_password(blocked_tf):
    start = time.monotonic()
    result = hpo(
        "run",
        "--study",
        "s",
        "--n-trials",
        "1",
        "--storage",
        "postgresql://user:topsecret@127.0.0.1:9/none",
        **blocked_tf,
    )
    assert result.returncode == 2 and "cannot be opened" in result.stderr
    assert "topsecret" not in result.stderr + result.stdout
    assert time.monotonic() - start < 60  # a bound against hanging, not a speed target


def test_unknown_study_on_best_lists_the_studies(tmp_path, blocked_tf):
    storage = f"journal:{tmp_path / 's.journal'}"
    assert hpo("init", "--study", "real", "--storage", storage, "--preset", "tiny", **blocked_tf).returncode == 0
    result = hpo("best", "--study", "other", "--storage", storage, "--out", str(tmp_path / "b.json"), **blocked_tf)
    assert result.returncode == 2 and "studies there: real" in result.stderr


def test_train_refuses_a_malformed_config(tmp_path, blocked_tf):
    bad = tmp_path / "best.json"
    bad.write_text('{"params": {"hidden_dim": 3}}')
    result = subprocess.run(
        [PYTHON, "-m", "diffusion.train", "--config", str(bad), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=python_env(**blocked_tf),
        timeout=60,
    )
    assert result.returncode == 2 and "hidden_dim" in result.stderr


# ---- threads sharing one runtime ------------------------------------------------------------------


def in_thread(gate_mode, name: str, log: list[str], release: threading.Event | None = None) -> threading.Thread:
    """A thread that enters ``gate_mode``, logs its name, and holds the gate until ``release``."""

    def hold() -> None:
        with gate_mode():
            log.append(name)
            if release is not None:
                release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def wait_until(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def test_trials_train_side_by_side():
    gate, log, release = RuntimeGate(), [], threading.Event()
    first = in_thread(gate.shared, "first", log, release)
    second = in_thread(gate.shared, "second", log, release)
    assert wait_until(lambda: len(log) == 2), "a second epoch waited for the first"
    release.set()
    for thread in (first, second):
        thread.join()


def test_building_a_model_waits_for_running_epochs_and_holds_back_new_ones():
    gate, log, release, build_done = RuntimeGate(), [], threading.Event(), threading.Event()
    running = in_thread(gate.shared, "epoch", log, release)
    assert wait_until(lambda: log == ["epoch"])
    builder = in_thread(gate.exclusive, "build", log, build_done)
    assert wait_until(lambda: gate._waiting == 1)
    late = in_thread(gate.shared, "late epoch", log)
    time.sleep(0.2)  # room for a wrong order to show
    assert log == ["epoch"], "the builder or a new epoch ran beside a running epoch"
    release.set()
    assert wait_until(lambda: log == ["epoch", "build"]), log
    time.sleep(0.2)
    assert log == ["epoch", "build"], "an epoch ran while a model was being built"
    build_done.set()
    assert wait_until(lambda: log == ["epoch", "build", "late epoch"]), log
    for thread in (running, builder, late):
        thread.join()


# ---- real searches ------------------------------------------------------------------------------


def storages(tmp_path: Path, postgres_url: str | None) -> list[str]:
    return [f"journal:{tmp_path / 'study.journal'}"] + ([postgres_url] if postgres_url else [])


# The smallest search that shows each property: every worker kind finishes its trials on both
# storages (the sequential in-process search: test_best_parameters_train_with_the_training_cli).
# Two threads run the report's 20 trials on the journal: that is the run in which CI once saw a
# thread race (a hang, a SIGSEGV) that fewer trials rarely reach; the race is in building and
# tracing a trial while another's epochs run, so one epoch a trial gives more such overlaps a
# second, not fewer.
SEARCHES = [
    ("journal", ["--workers", "2"], 4, 2),
    ("journal", ["--n-jobs", "2"], 20, 1),
    ("postgres", ["--workers", "2"], 4, 2),
    ("postgres", ["--n-jobs", "2"], 4, 2),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("storage_kind", "parallel", "trials", "epochs"),
    SEARCHES,
    ids=[f"{kind}-{' '.join(p).lstrip('-').replace(' ', '-')}-{n}-trials" for kind, p, n, _ in SEARCHES],
)
def test_a_search_finishes_every_trial(tmp_path, request, storage_kind, parallel, trials, epochs):
    if storage_kind == "postgres":
        storage = request.getfixturevalue("postgres")
        study = f"search-{parallel[0].strip('-')}-{parallel[1]}"
    else:
        storage, study = f"journal:{tmp_path / 'study.journal'}", "search"
    args = ["--n-trials", str(trials), "--epochs", str(epochs), *TINY_SEARCH, *parallel]
    result = hpo("run", "--study", study, "--storage", storage, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert result.stdout.startswith("storage: ")
    assert_finished(storage, study, trials)


def assert_finished(storage: str, study: str, trials: int) -> None:
    states = trial_states(storage, study)
    finished = [s for s in states if s in ("COMPLETE", "PRUNED")]
    assert len(finished) >= trials and "COMPLETE" in states, states
    assert "RUNNING" not in states, states


@pytest.mark.slow
def test_best_parameters_train_with_the_training_cli(tmp_path):
    storage = f"journal:{tmp_path / 'study.journal'}"
    search = hpo("run", "--study", "b", "--storage", storage, "--n-trials", "3", "--epochs", "2", *TINY_SEARCH)
    assert search.returncode == 0, search.stderr[-2000:]
    assert_finished(storage, "b", 3)  # the sequential in-process search on the journal
    best = tmp_path / "best.json"
    result = hpo("best", "--study", "b", "--storage", storage, "--out", str(best))
    assert result.returncode == 0, result.stderr
    record = json.loads(best.read_text())
    summary = tmp_path / "summary.json"
    train = subprocess.run(
        [
            PYTHON,
            "-m",
            "diffusion.train",
            "--no-progress",
            "--config",
            str(best),
            "--preset",
            "tiny",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--json",
            str(summary),
        ],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=300,
    )
    assert train.returncode == 0, train.stderr
    trained = json.loads(summary.read_text())
    assert trained["model"]["hidden_dim"] == record["params"]["hidden_dim"]
    assert trained["path"]["batch_size"] == record["params"]["batch_size"]


@pytest.mark.slow  # three trials built and traced in-process: about 30 s
def test_nan_loss_prunes_the_trial_with_a_reason_and_the_study_goes_on(tmp_path, tiny_data, monkeypatch):
    import dataclasses

    import numpy as np
    import optuna

    from diffusion.data import TrainingData
    from diffusion.hpo import search
    from diffusion.hpo.storage import open_storage

    x = tiny_data.train.x.copy()
    x[:, 0] = np.nan
    poisoned = dataclasses.replace(tiny_data, train=TrainingData(x, tiny_data.train.cond))
    monkeypatch.setattr(search, "_prepared", lambda name: poisoned)
    config = search.SearchConfig(preset="tiny", epochs=2)
    study = search.create_study("nan", open_storage(f"journal:{tmp_path / 'nan.journal'}"), config)
    search.work(study, search.make_objective(config), n_trials=3)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 3
    assert all("loss became nan at step 1" in t.user_attrs["pruned_reason"] for t in trials)


def test_worker_processes_do_not_propose_the_same_configurations(tmp_path):
    from diffusion.hpo.search import SearchConfig, create_study, load_study
    from diffusion.hpo.space import suggest
    from diffusion.hpo.storage import open_storage

    storage = open_storage(f"journal:{tmp_path / 'study.journal'}")
    create_study("s", storage, SearchConfig(preset="tiny"))
    # Two workers (or a recycled worker and its successor), each loading the study: the first
    # trials come from TPE's random start-up phase, where samplers seeded alike agree.
    proposals = []
    for _ in range(2):
        study, _config = load_study("s", storage)
        trial = study.ask()
        proposals.append(suggest(trial))
        study.tell(trial, 1.0)
    assert proposals[0] != proposals[1], proposals


FIXED_PARAMS = {"learning_rate": 1e-3, "hidden_dim": 64, "blocks": 2, "batch_size": 32, "clip_norm": 1.0}


def rss_per_trial(storage: str, study: str, *run_args: str) -> list[float]:
    import optuna

    from diffusion.hpo.search import SearchConfig, create_study
    from diffusion.hpo.storage import open_storage

    # Every trial trains the same configuration, so RSS differences come from the process, not
    # from one trial's model being larger than another's.
    created = create_study(study, open_storage(storage), SearchConfig(preset="tiny", epochs=1, pruner="none"))
    for _ in range(9):
        created.enqueue_trial(FIXED_PARAMS)
    args = ["--n-trials", "9", "--preset", "tiny", "--epochs", "1", "--pruner", "none", "--no-progress"]
    result = hpo("run", "--study", study, "--storage", storage, *args, *run_args)
    assert result.returncode == 0, result.stderr[-2000:]
    trials = optuna.load_study(study_name=study, storage=open_storage(storage)).get_trials()
    assert all(t.params == FIXED_PARAMS for t in trials), [t.params for t in trials]
    return [t.user_attrs["rss_mib_end"] for t in sorted(trials, key=lambda t: t.number)]


@pytest.mark.slow
def test_recycled_workers_keep_rss_per_trial_bounded(tmp_path):
    import numpy as np

    storage = f"journal:{tmp_path / 'study.journal'}"
    # One process for all trials: TensorFlow keeps compiled-step state, so RSS climbs per trial.
    grows = rss_per_trial(storage, "one-process", "--n-jobs", "1")
    # Worker processes replaced every 3 trials: the climb restarts, so RSS stays bounded.
    bounded = rss_per_trial(storage, "recycled", "--workers", "1", "--recycle", "3")
    assert np.polyfit(np.arange(9), grows, 1)[0] > 10, grows
    assert max(bounded) < max(grows), (bounded, grows)
    # Each fresh worker starts where the first did. A slope fitted across the saw-tooth is not the
    # property: one worker's third trial landing 12 MiB higher tilted it past 10 MiB/trial in CI.
    restarts = bounded[::3]
    assert max(restarts) - min(restarts) < 50, bounded


def kill_mid_trial(storage: str, study: str, n_trials: int) -> list:
    """Start one worker, SIGKILL it while a trial runs, let a second worker finish the study."""
    import optuna

    from diffusion.hpo.storage import open_storage

    assert hpo("init", "--study", study, "--storage", storage, "--preset", "tiny", "--epochs", "4").returncode == 0
    cmd = [PYTHON, "-m", "diffusion.hpo", "worker", "--study", study, "--storage", storage, "--n-trials", str(n_trials)]
    victim = subprocess.Popen(cmd, env=python_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    handle = optuna.load_study(study_name=study, storage=open_storage(storage))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        states = [t.state.name for t in handle.get_trials()]
        if states.count("COMPLETE") + states.count("PRUNED") >= 1 and "RUNNING" in states:
            break
        time.sleep(0.2)
    else:
        victim.kill()
        pytest.fail(f"no running trial after a finished one within 180 s: {states}")
    finished_before = {t.number: t.state for t in handle.get_trials() if t.state.is_finished()}
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = subprocess.run(cmd, env=python_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert survivor.returncode == 0, survivor.stderr[-2000:]
    trials = handle.get_trials()
    for number, state in finished_before.items():
        assert trials[number].state == state, f"finished trial {number} changed after the kill"
    return trials


@pytest.mark.slow
@pytest.mark.parametrize("storage_kind", ["journal", "postgres"])
def test_worker_killed_mid_trial_loses_nothing_and_its_trial_is_retried(tmp_path, request, storage_kind):
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    storage = request.getfixturevalue("postgres") if storage_kind == "postgres" else f"journal:{tmp_path / 'k.journal'}"
    trials = kill_mid_trial(storage, f"kill-{storage_kind}", n_trials=4)
    states = [t.state.name for t in trials]
    assert states.count("FAIL") == 1, states
    failed = next(t for t in trials if t.state.name == "FAIL")
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == failed.number]
    assert len(retries) == 1 and retries[0].state.is_finished()
    assert states.count("COMPLETE") + states.count("PRUNED") >= 4


# What `pip install ".[jax,postgres]"` brings, and nothing of the test extra (which has its own
# psycopg and SQLAlchemy pins, so the suite's venv cannot show that the extra alone suffices).
EXTRA_ALONE = """
import importlib.util, json, sqlalchemy, psycopg
print(json.dumps({"sqlalchemy": sqlalchemy.__version__, "psycopg": psycopg.__version__,
                  "pytest": importlib.util.find_spec("pytest") is not None}))
"""


@pytest.mark.slow
def test_a_fresh_install_of_the_postgres_extra_alone_runs_a_search(tmp_path, postgres):
    """An empty venv, the project installed (not editable) with the `postgres` extra and a
    backend only: the URL the README spells opens PostgreSQL and a search finishes there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{ROOT}[jax,postgres]"]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    # Run from outside the checkout with no PYTHONPATH: only the installed copy can be imported.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"KERAS_BACKEND": "jax"}
    probe = subprocess.run([python, "-c", EXTRA_ALONE], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-2000:]
    versions = json.loads(probe.stdout)
    assert not versions["pytest"], "the test extra came along; the check would prove nothing"
    assert tuple(int(p) for p in versions["sqlalchemy"].split(".")[:2]) >= (2, 1), versions
    study = "extra-alone"
    args = ["run", "--study", study, "--storage", postgres, "--n-trials", "2", "--preset", "tiny", "--epochs", "1"]
    search = subprocess.run(
        [python, "-m", "diffusion.hpo", *args, "--no-progress"],
        capture_output=True, text=True, timeout=480, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert search.returncode == 0, search.stderr[-3000:]
    assert "s3cret-pw" not in search.stdout + search.stderr
    assert trial_states(postgres, study).count("COMPLETE") >= 1


@pytest.mark.slow
def test_processes_opening_an_empty_database_at_once_all_succeed(postgres):
    # SLURM array tasks start together; on an empty database each creates Optuna's tables.
    import threading

    from sqlalchemy.engine import make_url

    from diffusion.hpo.storage import open_storage

    server = make_url(postgres)
    pg.create_database(server.host, server.port, "fresh")
    url = server.set(database="fresh").render_as_string(hide_password=False)
    start, errors = threading.Barrier(4), []

    def open_together() -> None:
        start.wait()
        try:
            open_storage(url)
        except ConfigError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=open_together) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_sqlite_is_accepted_but_warned_against_for_parallel_workers(tmp_path):
    from diffusion.hpo.storage import open_storage

    with pytest.warns(UserWarning, match="SQLite is not recommended for parallel workers"):
        open_storage(f"sqlite:///{tmp_path / 'study.db'}", workers=2)


def sbatch_script(*args: str, **env: str) -> str:
    result = hpo("sbatch", "--study", "big", "--n-trials", "128", "--workers", "4", *args, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_sbatch_prints_a_valid_array_script(tmp_path, blocked_tf):
    script = sbatch_script("--storage", "postgresql://me:pw@db.example/optuna", "--cpus-per-task", "8", **blocked_tf)
    assert "#SBATCH --array=0-3" in script and "#SBATCH --cpus-per-task=8" in script
    assert "diffusion.hpo init --study big" in script
    assert "srun --ntasks=1" in script and "diffusion.hpo worker --study big --n-trials 128 --recycle 5" in script
    assert ":pw@" not in script and "OPTUNA_STORAGE" in script  # the password stays out of the script
    path = tmp_path / "job.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


def test_sbatch_site_options_and_setup_line_appear_only_when_given(blocked_tf):
    plain = sbatch_script("--storage", "postgresql://me@db/optuna", **blocked_tf)
    assert not any(f"#SBATCH --{flag}" in plain for flag in ("account", "constraint", "qos", "partition"))
    setup = "module load python/3.11; . $HOME/venv/bin/activate"
    site = sbatch_script(
        "--storage", "postgresql://me@db/optuna", "--account", "m4321", "--constraint", "cpu", "--qos", "regular",
        "--partition", "big", "--setup", setup, **blocked_tf,
    )  # fmt: skip
    for line in ("--account=m4321", "--constraint=cpu", "--qos=regular", "--partition=big"):
        assert f"#SBATCH {line}" in site.splitlines()
    assert setup in site.splitlines()


def test_sbatch_script_retries_only_while_the_study_is_not_there_yet(blocked_tf):
    script = sbatch_script("--storage", "postgresql://me@db/optuna", **blocked_tf)
    assert '[ "$status" = 3 ] || exit "$status"' in script  # 3: retry; 2 (cannot open) and others: fail at once


def test_sbatch_script_never_falls_back_to_a_journal_when_the_environment_names_the_storage(blocked_tf):
    script = sbatch_script(OPTUNA_STORAGE="postgresql://me:pw@db/optuna", **blocked_tf)
    assert "journal" not in script and ".log" not in script
    assert ":pw@" not in script and "${OPTUNA_STORAGE:?" in script


def test_postgres_fixture_finds_runuser_without_sbin_on_path(monkeypatch):
    if pg.runuser() is None:
        pytest.skip("runuser is not installed")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a login shell's PATH for a non-root user
    assert pg.runuser() is not None


def venv_setup_line() -> str:
    """The --setup line a user would write: activate the environment these tests run in."""
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "activate").exists():
        return f". {shlex.quote(str(bin_dir / 'activate'))}"
    return f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"'


def files_under(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*") if p.is_file()} if directory.exists() else set()


@pytest.mark.slow
def test_sbatch_script_runs_unchanged_on_real_slurm_into_postgres(tmp_path, postgres, slurm_cluster):
    results_before = files_under(ROOT / "results" / "hpo")
    script = hpo(
        "sbatch", "--study", "slurm", "--n-trials", "4", "--workers", "3", "--cpus-per-task", "1",
        "--recycle", "1", "--preset", "tiny", "--epochs", "1", "--pruner", "none", "--time", "00:10:00",
        "--partition", "debug", "--setup", venv_setup_line(), "--storage", postgres,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    (tmp_path / "job.sh").write_text(script.stdout)
    # As a user would: the password-bearing URL exported, the printed script submitted unchanged.
    env = slurm_cluster.env(**python_env(OPTUNA_STORAGE=postgres))
    job = subprocess.run(
        ["sbatch", "--wait", "job.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    outputs = {p.name: p.read_text() for p in tmp_path.glob("hpo-*.out")}
    report = "\n".join(f"--- {name}\n{text[-1500:]}" for name, text in sorted(outputs.items()))
    assert job.returncode == 0, f"{job.stdout}{job.stderr}\n{report}\n{slurm_cluster.logs()}"
    # Every array task ran and read the storage from the environment.
    assert sorted(name.rsplit("_", 1)[1] for name in outputs) == ["0.out", "1.out", "2.out"], report
    for text in outputs.values():
        assert "(postgresql, from $OPTUNA_STORAGE)" in text and "s3cret-pw" not in text, text[-1500:]
    # Every trial is in PostgreSQL and finished; no journal file anywhere.
    states = trial_states(postgres, "slurm")
    assert len(states) >= 4 and set(states) <= {"COMPLETE", "PRUNED"}, states
    # --recycle 1: each trial ran in a fresh worker process.
    per_process = [int(n) for text in outputs.values() for n in re.findall(r"ran (\d+) trial\(s\)", text)]
    assert max(per_process) == 1 and sum(per_process) == len(states), per_process
    assert {p.name for p in files_under(tmp_path)} == {"job.sh", *outputs}
    assert files_under(ROOT / "results" / "hpo") == results_before
