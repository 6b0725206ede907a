"""pytest-benchmark suites: ``pytest bench/ --benchmark-autosave [--preset tiny|small|seed]``.

One benchmark per path and phase: ALT, NEU, the one-knob ablations derived from them, and
NEU with XLA; and the detector simulation. Each is a thin call into ``bench.measure``; the
first (traced) call is timed apart. Every benchmark has the params ``preset`` (and ``spec``
where a path is measured) and a group per measured thing, so tables do not mix train steps
(ms) with validation passes (s). ``extra_info`` carries the peak RSS measured over that
benchmark's calls alone and the environment. Runs land in ``results/benchmarks/PRESET``
(bench/conftest.py keeps presets apart) and open with ``pytest-benchmark --storage
results/benchmarks/PRESET compare --group-by=name``.

All benchmarks share one process, so order effects can leak between them: for verdicts use
``python -m bench.compare``, which measures in fresh, interleaved workers. These suites are
for tracking one path over commits; gate with ``python -m bench.gate``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.measure import Session
from bench.probes import MemorySampler
from bench.roles import ablation_roles
from diffusion.paths import ALT, NEU, parse_path
from diffusion.presets import get_preset

ABLATIONS = ablation_roles(ALT, NEU)
TRAIN_SPECS = ["alt", "neu"] + [r.spec for r in ABLATIONS if "train" in r.phases]
VAL_SPECS = ["alt", "neu"] + [r.spec for r in ABLATIONS if "validate" in r.phases]
ROUNDS = {"tiny": (20, 5), "small": (20, 5), "seed": (10, 3)}  # (train steps, validation passes)
DETECTOR_EVENTS = 512


@pytest.fixture
def session(preset: str, spec: str) -> Iterator[Session]:
    s = Session(get_preset(preset), parse_path(spec))  # the pytest parameters are the edge
    yield s
    s.close()


@pytest.mark.benchmark(group="train-step")
@pytest.mark.parametrize("spec", TRAIN_SPECS)
def test_train_step(benchmark, session: Session, preset: str) -> None:
    session.first_train_step()
    steps, _ = ROUNDS[preset]
    with MemorySampler() as memory:
        loss = benchmark.pedantic(session.train_step, rounds=steps, iterations=1, warmup_rounds=3)
    benchmark.extra_info.update(session.extra_info("train", memory))
    assert loss == loss  # a NaN would have raised in the trainer; this checks a loss came back


@pytest.mark.benchmark(group="validation-pass")
@pytest.mark.parametrize("spec", VAL_SPECS)
def test_validation_pass(benchmark, session: Session, preset: str) -> None:
    session.first_validation_pass()
    _, passes = ROUNDS[preset]
    with MemorySampler() as memory:
        loss = benchmark.pedantic(session.validation_pass, rounds=passes, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(session.extra_info("validate", memory))
    assert loss > 0


@pytest.mark.benchmark(group="detector-simulation")
def test_detector_simulation(benchmark, preset: str) -> None:
    """Events per second of the detector simulation at the preset's PMT count (one core: NumPy)."""
    import numpy as np

    from diffusion.detector import Detector
    from diffusion.environment import environment

    detector = Detector(get_preset(preset).detector)
    rng = np.random.default_rng(0)
    with MemorySampler() as memory:
        events = benchmark.pedantic(
            detector.simulate, args=(rng, DETECTOR_EVENTS), rounds=5, iterations=1, warmup_rounds=1
        )
    benchmark.extra_info.update(
        {
            "preset": preset,
            "events_per_call": DETECTOR_EVENTS,
            "n_pmt": detector.config.n_pmt,
            "events_per_s": DETECTOR_EVENTS / benchmark.stats.stats.median,
            **memory.summary(),
            "environment": environment(preset=preset),
        }
    )
    assert len(events) == DETECTOR_EVENTS
