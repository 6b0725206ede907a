"""pytest-benchmark suites: ``pytest bench/ --benchmark-autosave [--preset tiny|small|seed]``.

One benchmark per path and phase: ALT, NEU, the one-knob ablations derived from them, and
NEU with XLA. Each is a thin call into ``bench.measure.Session``; the first (traced) call is
timed apart and stored in ``extra_info`` with memory and the environment. Runs land in
``results/benchmarks`` and open with ``pytest-benchmark compare``.

All benchmarks share one process, so order effects can leak between them: for verdicts use
``python -m bench.compare``, which measures in fresh, interleaved workers. These suites are
for tracking one path over commits.
"""

from __future__ import annotations

import pytest

from bench.measure import Session
from bench.runner import ablation_roles
from diffusion.paths import ALT, NEU

ABLATIONS = ablation_roles(ALT, NEU)
TRAIN_SPECS = ["alt", "neu"] + [r.spec for r in ABLATIONS if "train" in r.phases]
VAL_SPECS = ["alt", "neu"] + [r.spec for r in ABLATIONS if "validate" in r.phases]
ROUNDS = {"tiny": (20, 5), "small": (20, 5), "seed": (10, 3)}  # (train steps, validation passes)


@pytest.fixture
def session(preset: str, request: pytest.FixtureRequest):
    s = Session(preset, request.param)
    yield s
    s.close()


@pytest.mark.parametrize("session", TRAIN_SPECS, indirect=True, ids=TRAIN_SPECS)
def test_train_step(benchmark, session: Session, preset: str) -> None:
    session.first_train_step()
    steps, _ = ROUNDS[preset]
    loss = benchmark.pedantic(session.train_step, rounds=steps, iterations=1, warmup_rounds=3)
    benchmark.extra_info.update(session.extra_info("train"))
    assert loss == loss  # a NaN would have raised in the trainer; this checks a loss came back


@pytest.mark.parametrize("session", VAL_SPECS, indirect=True, ids=VAL_SPECS)
def test_validation_pass(benchmark, session: Session, preset: str) -> None:
    session.first_validation_pass()
    _, passes = ROUNDS[preset]
    loss = benchmark.pedantic(session.validation_pass, rounds=passes, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(session.extra_info("validate"))
    assert loss > 0


def test_detector_simulation(benchmark, preset: str) -> None:
    """Events per second of the detector simulation at the preset's PMT count (one core: NumPy)."""
    import numpy as np

    from diffusion.detector import Detector
    from diffusion.presets import get_preset

    detector = Detector(get_preset(preset).detector)
    rng = np.random.default_rng(0)
    n = 512
    events = benchmark.pedantic(detector.simulate, args=(rng, n), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(
        {"events_per_call": n, "n_pmt": detector.config.n_pmt, "events_per_s": n / benchmark.stats.stats.median}
    )
    assert len(events) == n
