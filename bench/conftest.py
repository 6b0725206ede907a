from __future__ import annotations

import pytest

from diffusion.presets import PRESETS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--preset", default="small", choices=sorted(PRESETS), help="preset for the benchmark suites")


@pytest.fixture(scope="session")
def preset(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--preset")
