from __future__ import annotations

import pytest

from diffusion.presets import PRESETS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--preset", default="small", choices=sorted(PRESETS), help="preset for the benchmark suites")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # The preset is a parameter, not a plain fixture, so that it is in every benchmark's name
    # and `params` (tiny and small runs are different benchmarks, and
    # `--benchmark-group-by=param:preset` works on all of them).
    if "preset" in metafunc.fixturenames:
        metafunc.parametrize("preset", [metafunc.config.getoption("--preset")], scope="session")
