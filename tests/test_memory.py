"""The memory sampler reports a known allocation, once, to the block that made it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.probes import MIB, MemorySampler

KNOWN_MIB = 200


def allocate_touch_free(mib: int, hold_s: float = 0.1) -> None:
    """``mib`` MiB written (so every page is resident), held for ``hold_s``, then freed."""
    block = np.ones(mib * MIB // 8)
    time.sleep(hold_s)
    del block


def test_reports_a_known_allocation_within_10_percent_as_growth_above_start() -> None:
    with MemorySampler() as memory:
        allocate_touch_free(KNOWN_MIB)
    assert memory.summary()["rss_growth_mib"] == pytest.approx(KNOWN_MIB, rel=0.10)


def test_reports_memory_allocated_and_freed_while_the_gil_is_held() -> None:
    # bytes repetition fills the buffer and count() scans it, each one C call that keeps the GIL;
    # the buffer is freed before any Python thread could run. A thread sampler sees none of it.
    # The scan keeps every page resident for tens of ms, so a 5 ms sampler cannot fall between
    # a fill and its free (on a fast CPU with huge pages a bare fill took ~2 ms at its peak).
    with MemorySampler() as memory:
        for _ in range(3):
            assert (b"\x01" * (KNOWN_MIB * MIB)).count(b"\x02") == 0
    assert memory.summary()["rss_growth_mib"] == pytest.approx(KNOWN_MIB, rel=0.10)


def test_a_block_after_a_freed_allocation_does_not_inherit_its_peak() -> None:
    with MemorySampler():
        allocate_touch_free(KNOWN_MIB)
    with MemorySampler() as later:
        time.sleep(0.05)
    assert later.summary()["rss_growth_mib"] < 0.1 * KNOWN_MIB


def test_summary_names_the_sampler_and_its_interval() -> None:
    with MemorySampler(interval_s=0.01) as memory:
        time.sleep(0.05)
    summary = memory.summary()
    assert summary["rss_sampler"].startswith("memory_profiler")
    assert summary["rss_interval_s"] == 0.01
    assert summary["rss_samples"] >= 2


@pytest.mark.parametrize("interval_s", [0.0, -0.005])
def test_rejects_a_non_positive_interval(interval_s: float) -> None:
    with pytest.raises(ValueError, match="`interval_s` must be a positive number of seconds"):
        MemorySampler(interval_s=interval_s)
