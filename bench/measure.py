"""The measurement core: what one worker process measures for one path.

A job is one path spec at one preset, with the phases to measure. Phases run in the order
given (the harness puts ``validate`` before ``train`` so the validation peak does not inherit
the training peak); each records time, peak memory (sampled every 5 ms by memory-profiler), and CPU use. The same
functions serve the compare CLI, the CI gate and the pytest-benchmark suites.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from memory_profiler import MemTimer

from diffusion.paths import format_path, parse_path
from diffusion.presets import get_preset

PHASES = ("validate", "train")
MIB = 2**20
_MEMORY_PROFILER_VERSION = metadata.version("memory-profiler")


@dataclass(frozen=True)
class Job:
    """One worker's task.

    Attributes:
        spec: path spec.
        preset: preset name.
        phases: phases to measure, in order.
        train_seconds: steady-state training is timed for at least this long...
        min_steps: ...and at least this many steps, after the first (traced) step and warm-up.
        warmup_steps: untimed steps after the first, so caches and autotuning settle.
        val_passes: timed validation passes after the first (traced) one.
        fit_disk: also fit one epoch into a temp directory and report the bytes written.
        seed: model and data-order seed.
        cpus: pin the worker to its first this-many usable cores, with the framework's thread
            pools sized to match (bench/worker.py does it before the framework loads); None: all.
    """

    spec: str
    preset: str
    phases: tuple[str, ...] = PHASES
    train_seconds: float = 2.5
    min_steps: int = 10
    warmup_steps: int = 2
    val_passes: int = 3
    fit_disk: bool = False
    seed: int = 0
    cpus: int | None = None

    def __post_init__(self) -> None:
        parse_path(self.spec)
        get_preset(self.preset)
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown:
            raise ValueError(f"unknown phases {unknown}; valid phases: {', '.join(PHASES)}.")


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


def measure_train(trainer: Any, job: Job) -> dict[str, Any]:
    """First (traced) step, warm-up, then steady-state steps for at least ``train_seconds``."""
    first, warm = train_warmup(trainer, job)
    chunks, elapsed, steps = [], 0.0, 0
    chunk = max(1, job.min_steps // 2)
    while elapsed < job.train_seconds or steps < job.min_steps:
        result = trainer.train_steps(chunk)
        chunks.append(result)
        elapsed += result.total_s()
        steps += result.steps
    return train_summary(first, warm, chunks, job)


def train_warmup(trainer: Any, job: Job) -> tuple[Any, Any]:
    """The first (traced) step and ``warmup_steps`` untimed ones."""
    first = trainer.train_steps(1)
    return first, trainer.train_steps(job.warmup_steps) if job.warmup_steps else None


def train_summary(first: Any, warm: Any, chunks: list[Any], job: Job) -> dict[str, Any]:
    """The train phase's record from its first step, warm-up and timed stretches (pure)."""
    wait = np.concatenate([c.wait_s for c in chunks])
    step = np.concatenate([c.step_s for c in chunks])
    batch = chunks[0].batch_size
    per_step = wait + step
    steps = len(per_step)
    return {
        "first_step_s": first.first_step_s,
        "steady_steps": int(steps),
        "steady_s": float(per_step.sum()),
        "train_samples_per_s": batch * steps / float(per_step.sum()),
        "step_ms_median": float(np.median(per_step) * 1e3),
        "input_wait_share": float(wait.sum() / per_step.sum()),
        # Time to N steps including the first call: a speedup that only moves time into
        # compilation shows here.
        "time_to_steps": {
            "steps": 1 + job.warmup_steps + int(steps),
            "seconds": first.total_s() + (warm.total_s() if warm else 0.0) + float(per_step.sum()),
        },
        "train_loss_last": float(chunks[-1].losses[-1]),
    }


def measure_validate(trainer: Any, job: Job) -> dict[str, Any]:
    """First (traced) validation pass, then ``val_passes`` timed passes."""
    first = trainer.validate()
    return validation_summary(first, [trainer.validate() for _ in range(job.val_passes)])


def validation_summary(first: Any, passes: list[Any]) -> dict[str, Any]:
    """The validate phase's record from its first (traced) pass and the timed ones (pure)."""
    seconds = np.array([p.seconds for p in passes])
    last = passes[-1]
    return {
        "first_val_pass_s": first.seconds,
        "val_pass_s": float(np.median(seconds)),
        "val_pass_s_all": seconds.tolist(),
        "val_samples": last.samples,
        "val_batches": last.batches,
        "val_samples_per_s": last.samples / float(np.median(seconds)),
        "val_loss": last.loss,
        "val_loss_stderr": last.stderr,
    }


def fit_path(path: Any) -> Any:
    """The path the disk fit runs: ``path`` with an eager step compiled (``graph``).

    What a fit writes, the files of its tracking and the checkpoint, is decided by the tracking
    knob, the model's shapes and the steps of an epoch, not by how a step executes (a test
    compares the bytes of an eager and a compiled fit); ALT's eager epoch at seed takes ~3 min
    of the main job's 15, a compiled one well under one. The record names the path fitted.
    """
    knobs = {k: "graph" for k in ("train_compile", "val_compile") if getattr(path, k) == "eager"}
    return dataclasses.replace(path, **knobs)


def measure_disk(trainer: Any) -> dict[str, Any]:
    """Fit one epoch of a fresh run of the same path into a temp directory; bytes of logs and
    checkpoints written. A fresh run (same data, preset, path and seed) starts at step 0, so the
    bytes do not depend on how many steps the timed phases happened to take: logs that write
    every N steps would otherwise vary from run to run. An eager step is compiled for the fit
    (``fit_path``): the bytes do not depend on it.

    Logs are whatever the path's ``tracking`` writes (``metrics.jsonl``, TensorBoard event
    files); beside the checkpoint's bytes, its analytic size (weights and Adam's moments as
    float32, bench/footprint.py) shows what the file holds beyond the arrays.
    """
    from bench.footprint import footprint, layer_shapes
    from diffusion.checkpoint import CHECKPOINT_NAME
    from diffusion.trainer import Trainer, fit

    fitted = fit_path(trainer.path)
    fresh = Trainer(trainer.preset, fitted, seed=trainer.seed, data=trainer.data)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
            out = Path(tmp)
            fit(fresh, 1, out)
            sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*") if p.is_file()}
    finally:
        fresh.close()
    logs = {k: v for k, v in sizes.items() if k != CHECKPOINT_NAME}
    return {
        "tracking": trainer.path.tracking,
        "fitted": format_path(fitted),
        "log_bytes": sum(logs.values()),
        "checkpoint_bytes": sizes.get(CHECKPOINT_NAME, 0),
        "checkpoint_bytes_analytic": footprint(layer_shapes(trainer.model)).checkpoint_bytes,
        "files": sizes,
        "log_files": sorted(logs),
    }


def run_job(job: Job) -> dict[str, Any]:
    """Measure a job in this process and return its JSON-ready record."""
    from diffusion.environment import environment
    from diffusion.trainer import Trainer

    path, preset = parse_path(job.spec), get_preset(job.preset)
    with MemorySampler() as setup_mem:
        t0 = time.perf_counter()
        trainer = Trainer(preset, path, seed=job.seed)
        setup_s = time.perf_counter() - t0
    record: dict[str, Any] = {
        "job": dataclasses.asdict(job),
        "spec": format_path(path),
        "path": path.knobs(),
        "setup": {"seconds": setup_s, **setup_mem.summary()},
        "params": trainer.model.count_params(),
        "phases": {},
    }
    for phase in job.phases:
        with MemorySampler() as mem, CpuMeter() as cpu, DeviceMemory() as device:
            result = measure_validate(trainer, job) if phase == "validate" else measure_train(trainer, job)
        record["phases"][phase] = {**result, **mem.summary(), **cpu.summary(), **device.summary()}
    if job.fit_disk:
        record["disk"] = measure_disk(trainer)
    record["device_memory"] = device_peak_bytes()
    record["traces"] = dict(trainer.stepper.traces)
    record["environment"] = environment(preset=preset.name, loader_impl=trainer.loader.implementation)
    trainer.close()
    return record


class TurnTaker:
    """One job measured in turns, the worker's side of a turn-taking round (bench/turns.py).

    Several workers are alive at once and take turns, so each side's time is spread over the
    same seconds as the other's: on these VMs throughput drifts by 20-40% over seconds (other
    tenants, the host), which pairs of whole processes run one after the other do not cancel.
    Set-up, the first (traced) validation pass, the first step and warm-up happen before the
    first turn; what each turn ran is summarised as ``run_job`` summarises a phase, so both
    modes give records of one shape. Memory and CPU use are not sampled in this mode: the gate
    that uses it judges speed only.
    """

    def __init__(self, job: Job) -> None:
        from diffusion.trainer import Trainer

        self.job = job
        t0 = time.perf_counter()
        self.trainer = Trainer(get_preset(job.preset), parse_path(job.spec), seed=job.seed)
        self.setup_s = time.perf_counter() - t0
        self.first_pass: Any = None
        self.first: Any = None
        self.warm: Any = None
        self.warmed = False
        self.passes: list[Any] = []
        self.chunks: list[Any] = []
        self.turn_samples_per_s: list[float] = []

    def warm_up(self) -> dict[str, Any]:
        """The first (traced) validation pass, the first step and the warm-up steps, untimed by
        the turns: asked for on its own (the ``warm`` turn) so that it can run alone while set-up
        (imports, data, model) ran side by side with other workers; else done before the first turn."""
        if not self.warmed:
            self.warmed = True
            if "validate" in self.job.phases:
                self.first_pass = self.trainer.validate()
            if "train" in self.job.phases:
                self.first, self.warm = train_warmup(self.trainer, self.job)
        return {
            "first_val_pass_s": self.first_pass.seconds if self.first_pass is not None else None,
            "first_step_s": self.first.first_step_s if self.first is not None else None,
        }

    def validate(self) -> dict[str, float]:
        """One timed validation pass."""
        self.warm_up()
        self.passes.append(self.trainer.validate())
        return {"seconds": self.passes[-1].seconds}

    def train(self, seconds: float) -> dict[str, float]:
        """Train for at least ``seconds``, one step at a time, so a turn overruns by at most one
        step however long steps are."""
        self.warm_up()
        done, steps = 0.0, 0
        while done < seconds:
            result = self.trainer.train_steps(1)
            self.chunks.append(result)
            done += result.total_s()
            steps += result.steps
        self.turn_samples_per_s.append(self.trainer.path.batch_size * steps / done)
        return {"steps": steps, "seconds": done}

    def record(self) -> dict[str, Any]:
        """The job's record, as ``run_job`` gives it (less memory and CPU use); closes the trainer."""
        from diffusion.environment import environment

        trainer, job = self.trainer, self.job
        phases: dict[str, Any] = {}
        if self.first_pass is not None and self.passes:
            phases["validate"] = validation_summary(self.first_pass, self.passes)
        if self.first is not None and self.chunks:
            phases["train"] = {
                **train_summary(self.first, self.warm, self.chunks, job),
                "turns": len(self.turn_samples_per_s),
                "turn_samples_per_s": self.turn_samples_per_s,
            }
        record = {
            "job": dataclasses.asdict(job),
            "spec": format_path(trainer.path),
            "path": trainer.path.knobs(),
            "setup": {"seconds": self.setup_s},
            "params": trainer.model.count_params(),
            "phases": phases,
            "measured_in_turns": True,
            "device_memory": device_peak_bytes(),
            "traces": dict(trainer.stepper.traces),
            "environment": environment(preset=job.preset, loader_impl=trainer.loader.implementation),
        }
        trainer.close()
        return record


class Session:
    """One path at one preset, in this process, for the pytest-benchmark suites.

    The first call (trace/compile) is timed on its own by ``first_train_step`` and
    ``first_validation_pass``; the suites then benchmark steady-state calls.
    """

    def __init__(self, preset: str, spec: str, seed: int = 0) -> None:
        from diffusion.trainer import Trainer

        self.job = Job(spec, preset, seed=seed)
        self.trainer = Trainer(get_preset(preset), parse_path(spec), seed=seed)
        self.first_call_s: dict[str, float] = {}

    def first_train_step(self) -> float:
        self.first_call_s["train"] = self.trainer.train_steps(1).first_step_s
        return self.first_call_s["train"]

    def first_validation_pass(self) -> float:
        self.first_call_s["validate"] = self.trainer.validate().seconds
        return self.first_call_s["validate"]

    def train_step(self) -> float:
        return float(self.trainer.train_steps(1).losses[0])

    def validation_pass(self) -> float:
        return self.trainer.validate().loss

    def extra_info(self, phase: str, memory: MemorySampler) -> dict[str, Any]:
        """What a benchmark of ``phase`` stores beside its timings.

        Args:
            phase: "train" or "validate".
            memory: the sampler that was open over the benchmark's calls (not the session's
                setup or first call), so its peak belongs to this benchmark alone.

        Returns:
            The path, first-call time, traces, memory and the environment, JSON-ready.
        """
        from diffusion.environment import environment

        trainer = self.trainer
        return {
            "phase": phase,
            "spec": format_path(trainer.path),
            "path": trainer.path.knobs(),
            "preset": self.job.preset,
            "samples_per_call": trainer.path.batch_size if phase == "train" else trainer.path.val_samples,
            "first_call_s": self.first_call_s.get(phase),
            **memory.summary(),
            "traces": dict(trainer.stepper.traces),
            "environment": environment(preset=self.job.preset, loader_impl=trainer.loader.implementation),
        }

    def close(self) -> None:
        self.trainer.close()
