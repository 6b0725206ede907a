"""CI tests both Keras backends: the fairness tests again, under JAX, in a fresh process."""

from __future__ import annotations

import pytest

from tests.conftest import run_test_file


@pytest.mark.slow
def test_step_fairness_holds_on_the_jax_backend():
    # On JAX `graph` and `xla` are both jax.jit (paths.compile_semantics), so the XLA cases,
    # slow under TensorFlow, would rerun the graph ones: the fast tier's selection covers JAX.
    result = run_test_file("test_steps.py", "-m", "not slow", timeout=600, KERAS_BACKEND="jax")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
