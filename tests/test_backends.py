"""CI tests both Keras backends: the fairness tests again, under JAX, in a fresh process."""

from __future__ import annotations

import subprocess

from tests.conftest import PYTHON, ROOT, python_env


def test_step_fairness_holds_on_the_jax_backend():
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_steps.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env=python_env(KERAS_BACKEND="jax"),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
