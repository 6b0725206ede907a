from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


PYTHON = sys.executable
