"""The benchmark suites' options, and pytest-benchmark's storage kept apart by preset.

The preset is part of every benchmark's name (``test_train_step[tiny-alt]``), so a saved run
of one preset holds nothing that another preset's run can be compared with. In one shared
folder, ``--benchmark-compare`` took the latest run, a ``small`` one, for a ``tiny`` session:
no name matched, nothing was compared, and ``--benchmark-compare-fail`` passed. So the storage
is a folder per preset (``--benchmark-storage`` + ``/PRESET``), and a comparison that would
compare nothing is refused before any benchmark runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from diffusion.presets import PRESETS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--preset",
        default="small",
        choices=sorted(PRESETS),
        help="preset for the benchmark suites (default small); runs are saved in STORAGE/PRESET",
    )


def preset_storage(storage: str, preset: str) -> str:
    """``--benchmark-storage`` narrowed to one preset's folder (an Elasticsearch URL stays as it is)."""
    if storage.startswith("file://"):
        return "file://" + (Path(storage.removeprefix("file://")) / preset).as_posix()
    if "://" in storage:
        return storage
    return (Path(storage) / preset).as_posix()


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark opens the storage in its own pytest_configure
def pytest_configure(config: pytest.Config) -> None:
    storage = getattr(config.option, "benchmark_storage", None)
    if storage is not None:
        config.option.benchmark_storage = preset_storage(storage, config.getoption("--preset"))


def compare_refusal(preset: str, storage: str, compared: dict[Any, dict[str, Any]], asked: object) -> str | None:
    """Why a ``--benchmark-compare`` would compare nothing, or None when it compares like with like.

    Args:
        preset: this session's preset.
        storage: the storage searched (for the message).
        compared: pytest-benchmark's loaded runs: path -> {fullname: saved benchmark}.
        asked: the option's value: True for the latest run, else the run id given.
    """
    if not compared and asked is True:
        return (
            f"--benchmark-compare: no saved run at preset {preset} in {storage}; "
            f"save one first with `pytest bench/ --preset {preset} --benchmark-autosave`."
        )
    if not compared:
        return (
            f"--benchmark-compare: no saved run matching {asked!r} at preset {preset} in {storage}; "
            f"`pytest-benchmark --storage {storage} list` lists them."
        )
    for path, benchmarks in compared.items():
        presets = {(b.get("params") or {}).get("preset") for b in benchmarks.values()}
        if preset not in presets:
            other = ", ".join(sorted(str(p) for p in presets))
            return (
                f"--benchmark-compare: run {Path(str(path)).name.split('_')[0]} was saved at preset {other}, "
                f"this session runs {preset}: no benchmark name is shared, nothing would be compared."
            )
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is None or not bs.compare or bs.disabled:
        return
    refusal = compare_refusal(
        session.config.getoption("--preset"), str(bs.storage), bs.compared_mapping or {}, bs.compare
    )
    if refusal:
        raise pytest.UsageError(refusal)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # The preset is a parameter, not a plain fixture, so that it is in every benchmark's name
    # and `params` (tiny and small runs are different benchmarks, and
    # `--benchmark-group-by=param:preset` works on all of them).
    if "preset" in metafunc.fixturenames:
        metafunc.parametrize("preset", [metafunc.config.getoption("--preset")], scope="session")
