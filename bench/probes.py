"""What a worker reads while a phase runs: resident memory sampled every 5 ms by
memory-profiler's sampler process, CPU time, and an accelerator's allocator peak."""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from importlib import metadata
from typing import Any

import psutil
from memory_profiler import MemTimer

MIB = 2**20
_MEMORY_PROFILER_VERSION = metadata.version("memory-profiler")


class MemorySampler:
    """Peak RSS of this process over a ``with`` block, sampled by memory-profiler from a second process.

    Reports the absolute peak and the growth above the RSS at the block's start, so a phase
    is judged on what it added, not on what earlier phases left behind.

    The sampler is memory-profiler's own (``MemTimer``, what ``memory_usage`` starts): a
    separate process polling this one's RSS through psutil. A thread in this process would
    sample only when it holds the GIL, and so misses memory that a C call allocates and frees
    without releasing it (measured: a thread at 200 Hz saw 0 of 200 MiB; this sampler 195-199).
    ``memory_usage`` itself is not called because it takes a function and calls it again
    when it got fewer than 5 samples; a measured block must run once. ``include_children``
    stays off: the sampler process is a child of this one, so it would count its own
    (copy-on-write) RSS, 2.3x the true growth in a TensorFlow process.

    Args:
        interval_s: seconds between samples. Starting the sampler forks this process
            (~25 ms with TensorFlow loaded), once per block, as ``memory_usage`` does.

    Raises:
        ValueError: if ``interval_s`` is not positive.
    """

    name = f"memory_profiler {_MEMORY_PROFILER_VERSION} MemTimer (psutil RSS, own process)"

    def __init__(self, interval_s: float = 0.005) -> None:
        if not interval_s > 0:
            raise ValueError(f"`interval_s` must be a positive number of seconds, but got {interval_s=}.")
        self.interval_s = interval_s

    def __enter__(self) -> MemorySampler:
        self._conn, child_conn = multiprocessing.Pipe()
        # backend "psutil" is RSS in MiB; the timer reads the baseline in its constructor.
        self._timer = MemTimer(os.getpid(), self.interval_s, child_conn, "psutil", max_usage=True)
        self.start_mib: float = self._timer.mem_usage[0]
        with warnings.catch_warnings():
            # JAX warns on every fork of a process that imported it. The forked sampler only
            # reads /proc through psutil and writes to a pipe; it never touches JAX or TF state.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            self._timer.start()
        child_conn.close()  # the child's end; with ours closed, a child that dies reads as EOF at once
        # The sampler is polling once it says so; a child that never does must fail the
        # measurement, not hang it.
        try:
            if not self._conn.poll(60):
                raise EOFError
            self._conn.recv()
        except EOFError:
            self._timer.terminate()
            self._timer.join()
            self._conn.close()
            raise RuntimeError(
                f"the memory sampler process did not start within 60 s (exit code {self._timer.exitcode})"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send(0)
        self.peak_mib: float = max(self._conn.recv()[0], self.start_mib)
        self.samples: int = self._conn.recv()
        self._timer.join()
        self._conn.close()

    def summary(self) -> dict[str, Any]:
        return {
            "peak_rss_mib": self.peak_mib,
            "rss_growth_mib": self.peak_mib - self.start_mib,
            "rss_start_mib": self.start_mib,
            "rss_samples": self.samples,
            "rss_interval_s": self.interval_s,
            "rss_sampler": self.name,
        }


class CpuMeter:
    """CPU time of this process over a block, as cores busy and as a share of usable cores."""

    def __enter__(self) -> CpuMeter:
        self.process = psutil.Process()
        self.cpu0, self.wall0 = self._cpu(), time.perf_counter()
        return self

    def _cpu(self) -> float:
        t = self.process.cpu_times()
        return t.user + t.system

    def __exit__(self, *exc: object) -> None:
        self.cpu_s, self.wall_s = self._cpu() - self.cpu0, time.perf_counter() - self.wall0

    def summary(self) -> dict[str, float]:
        cores = self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return {"cpu_s": self.cpu_s, "wall_s": self.wall_s, "cores_busy": cores, "cpu_utilisation": cores / usable}


def device_peak_bytes() -> dict[str, Any]:
    """The framework allocator's peak, where the device reports one; else says why not."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        stats = device.memory_stats() if hasattr(device, "memory_stats") else None
        if stats and "peak_bytes_in_use" in stats:
            return {"device_peak_mib": stats["peak_bytes_in_use"] / MIB, "device": str(device)}
        return {"device_peak_mib": None, "device_peak_note": f"not measured: {device} reports no allocator peak"}
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        info = tf.config.experimental.get_memory_info(gpus[0].name)
        return {"device_peak_mib": info["peak"] / MIB, "device": gpus[0].name}
    return {
        "device_peak_mib": None,
        "device_peak_note": "not measured: TensorFlow reports no allocator peak on CPU (RSS is used)",
    }


class DeviceMemory:
    """The framework allocator's reading over a block, on a GPU; nothing on a CPU (RSS is used there).

    TensorFlow resets its peak at the block's start, so the peak is the block's own. JAX has no
    reset: ``peak_bytes_in_use`` is the process's, so the block's growth (peak minus in-use at
    its start) is exact only when the block reaches a new peak; the harness runs validation
    before training for that reason.
    """

    def __enter__(self) -> DeviceMemory:
        self.reading: dict[str, Any] = {}
        import keras

        if keras.backend.backend() == "jax":
            import jax

            device = jax.devices()[0]
            stats = device.memory_stats() if hasattr(device, "memory_stats") else None
            if stats and "peak_bytes_in_use" in stats:
                self._read = lambda: device.memory_stats()
                self.start = stats["bytes_in_use"]
                self.reading["device"] = str(device)
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_logical_devices("GPU")
            if gpus:
                tf.config.experimental.reset_memory_stats(gpus[0].name)
                info = tf.config.experimental.get_memory_info(gpus[0].name)
                self._read = lambda: {"peak_bytes_in_use": tf.config.experimental.get_memory_info(gpus[0].name)["peak"]}
                self.start = info["current"]
                self.reading["device"] = gpus[0].name
        return self

    def __exit__(self, *exc: object) -> None:
        if "device" in self.reading:
            peak = self._read()["peak_bytes_in_use"]
            self.reading |= {"device_peak_mib": peak / MIB, "device_growth_mib": (peak - self.start) / MIB}

    def summary(self) -> dict[str, Any]:
        return self.reading
