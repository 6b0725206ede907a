from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion.presets import get_preset

ROOT = Path(__file__).resolve().parent.parent
TINY = get_preset("tiny")  # the preset most tests run at, as the plans and jobs carry it


@pytest.fixture(scope="session", autouse=True)
def _dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep simulated data sets of the test session (and its subprocesses) in one temp cache."""
    if "PMT_DIFFUSION_CACHE" not in os.environ:
        os.environ["PMT_DIFFUSION_CACHE"] = str(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="session")
def tiny():
    from diffusion.presets import get_preset

    return get_preset("tiny")


@pytest.fixture(scope="session")
def tiny_data(tiny, _dataset_cache):
    from diffusion.data import prepare

    return prepare(tiny)


def python_env(**extra: str) -> dict[str, str]:
    """Environment for a subprocess running this checkout's Python code."""
    # pytest-xdist's worker variables describe this session, not the child's: a child pytest
    # that sees PYTEST_XDIST_WORKER takes itself for a worker (pytest-benchmark then disables
    # its timing and every benchmark reads None).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


PYTHON = sys.executable


def run_test_file(test_file: str, *pytest_args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """Run one test file in a fresh process with extra environment (e.g. another Keras backend)."""
    return subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args, str(ROOT / "tests" / test_file)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=python_env(**env),
        cwd=ROOT,
    )


BLOCK_TF = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, _Block())
"""


@pytest.fixture(scope="session")
def blocked_tf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for a subprocess in which `import tensorflow` fails (a sitecustomize hook):
    a command that still works there provably answers before TensorFlow loads."""
    site = tmp_path_factory.mktemp("no_tf")
    (site / "sitecustomize.py").write_text(BLOCK_TF)
    return {"PYTHONPATH": f"{site}{os.pathsep}{python_env()['PYTHONPATH']}", TF_BLOCKED: "1"}


# ---- the fast tier's promise -------------------------------------------------------------
# `-m "not slow"` answers in minutes because none of its tests starts a process that can
# train, measure, search or serve. A test that does is marked `slow`; this guard holds every
# other test to that: it may start git, a shell or uname, and Python only with TensorFlow blocked (an argument
# error answering before the backend loads, `blocked_tf`). Checked on Python's audit event,
# so `subprocess.run`, `Popen` and `check_output` from any thread are all seen.
TF_BLOCKED = "PMT_TEST_TF_BLOCKED"
FAST_TIER_PROGRAMS = frozenset({"git", "bash", "sh", "uname"})  # uname: platform.uname(), once
_fast_test: str | None = None


def _guard_processes(event: str, args: tuple) -> None:
    if event != "subprocess.Popen" or _fast_test is None:
        return
    executable, _argv, _cwd, env = args  # Popen has resolved `executable` by now
    program = Path(os.fsdecode(executable)).name
    environ = os.environ if env is None else env
    if program in FAST_TIER_PROGRAMS or (program.startswith("python") and environ.get(TF_BLOCKED) == "1"):
        return
    raise RuntimeError(
        f"{_fast_test} starts `{program}` but is not marked slow: mark it @pytest.mark.slow, "
        "or start Python with the `blocked_tf` environment (the fast tier never loads a backend in a subprocess)."
    )


sys.addaudithook(_guard_processes)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Setup, call and teardown of a test not marked slow run under the guard."""
    global _fast_test
    _fast_test = None if item.get_closest_marker("slow") else item.nodeid
    try:
        yield
    finally:
        _fast_test = None
