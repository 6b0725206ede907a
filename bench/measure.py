"""The measurement core: what one worker process measures for one path.

A job is one path spec at one preset, with the phases to measure. Phases run in the order
given (the harness puts ``validate`` before ``train`` so the validation peak does not inherit
the training peak); each records time, peak memory (sampled every 5 ms by memory-profiler), and CPU use. The same
functions serve the compare CLI, the CI gate and the pytest-benchmark suites.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.probes import CpuMeter, DeviceMemory, MemorySampler, device_peak_bytes
from diffusion.paths import TrainingPath, format_path, parse_path, path_from_knobs
from diffusion.presets import Preset, get_preset

PHASES = ("validate", "train")


@dataclass(frozen=True)
class Job:
    """One worker's task.

    Attributes:
        path: the knobs it trains with.
        preset: the data and model.
        phases: phases to measure, in order.
        train_seconds: steady-state training is timed for at least this long...
        min_steps: ...and at least this many steps, after the first (traced) step and warm-up.
        warmup_steps: untimed steps after the first, so caches and autotuning settle.
        val_passes: timed validation passes after the first (traced) one.
        val_warm_batches: in turns (``TurnTaker``), the untimed first validation call is this
            many batches, not a whole pass: an eager pass has nothing to trace, and a whole
            first pass of ALT at seed cost 7-8 s of a round's warm-ups for one figure beside the
            verdicts; the first batch's time (the traced call) is kept. None: a whole pass.
        fit_disk: also fit one epoch into a temp directory and report the bytes written.
        seed: model and data-order seed.
        cpus: pin the worker to its first this-many usable cores, with the framework's thread
            pools sized to match (bench/worker.py does it before the framework loads); None: all.
    """

    path: TrainingPath
    preset: Preset
    phases: tuple[str, ...] = PHASES
    train_seconds: float = 2.5
    min_steps: int = 10
    warmup_steps: int = 2
    val_passes: int = 3
    val_warm_batches: int | None = None
    fit_disk: bool = False
    seed: int = 0
    cpus: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, TrainingPath) or not isinstance(self.preset, Preset):
            # A spec or preset name is parsed where it enters (a CLI, a record), not here.
            raise TypeError(f"a Job takes a TrainingPath and a Preset, not {self.path!r} and {self.preset!r}.")
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown:
            raise ValueError(f"unknown phases {unknown}; valid phases: {', '.join(PHASES)}.")
        if self.val_warm_batches is not None and not 1 <= self.val_warm_batches <= self.path.val_batches:
            raise ValueError(
                f"val_warm_batches must be in 1..{self.path.val_batches} (the path's val_batches), "
                f"but got {self.val_warm_batches!r}."
            )

    @property
    def spec(self) -> str:
        return format_path(self.path)

    def options(self) -> dict[str, Any]:
        """Every field but the path and the preset."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("path", "preset")}

    def record(self) -> dict[str, Any]:
        """The job as records keep it: the spec and preset by name, then the options."""
        return {"spec": self.spec, "preset": self.preset.name, **self.options(), "phases": list(self.phases)}

    def payload(self, *, as_spec: bool = False) -> dict[str, Any]:
        """The job as a worker receives it: the path as its knob mapping, so the worker parses
        nothing. ``as_spec`` sends the spec instead, for a worker of another code tree (the gate's
        REF): there a spec means what that tree's code says, and an older tree's worker reads
        only that. Unset options stay out, so such a worker that predates an option still reads it."""
        path = {"spec": self.spec} if as_spec else {"path": self.path.knobs()}
        options = {k: v for k, v in self.options().items() if v is not None}
        return {**path, "preset": self.preset.name, **options, "phases": list(self.phases)}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Job:
        """The job a worker was sent (``payload``): the one place a worker turns names into values.

        Raises:
            ConfigError: an unknown knob, spec or preset.
        """
        fields = dict(data)
        path = path_from_knobs(fields.pop("path")) if "path" in fields else parse_path(fields.pop("spec"))
        preset = get_preset(fields.pop("preset"))
        return cls(path, preset, **{**fields, "phases": tuple(fields.get("phases", PHASES))})


# The fields a payload may carry, either form: what bench/trees.py checks a REF tree's worker takes.
PAYLOAD_FIELDS = ("spec", "path", *(f.name for f in dataclasses.fields(Job) if f.name != "path"))


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
    # A first call of fewer batches than a pass (``val_warm_batches``) times no first pass.
    whole = first.batches >= last.batches
    return {
        **({"first_val_pass_s": first.seconds} if whole else {}),
        "first_val_call_s": float(first.batch_s[0]),
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


def run_job(job: Job, *, close: bool = True) -> dict[str, Any]:
    """Measure a job in this process and return its JSON-ready record.

    ``close=False`` leaves the trainer's batch stream open, for a worker that exits next
    (bench/worker.py): a prefetching tf.data stream took 3-9 s to close at seed.
    """
    from diffusion.environment import environment
    from diffusion.trainer import Trainer

    path, preset = job.path, job.preset
    with MemorySampler() as setup_mem:
        t0 = time.perf_counter()
        trainer = Trainer(preset, path, seed=job.seed)
        setup_s = time.perf_counter() - t0
    record: dict[str, Any] = {
        "job": job.record(),
        "spec": job.spec,
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
    if close:
        trainer.close()
    return record


class TurnTaker:
    """One job measured in turns, the worker's side of a turn-taking round (bench/turns.py).

    Several workers are alive at once and take turns, so each side's time is spread over the
    same seconds as the other's: on these VMs throughput drifts by 20-40% over seconds (other
    tenants, the host), which pairs of whole processes run one after the other do not cancel.
    Set-up, the first (traced) validation call, the first step and warm-up happen before the
    first turn; what each turn ran is summarised as ``run_job`` summarises a phase, so both
    modes give records of one shape. Memory and CPU use are not sampled in this mode: the gate
    that uses it judges speed only.
    """

    def __init__(self, job: Job) -> None:
        from diffusion.trainer import Trainer

        self.job = job
        t0 = time.perf_counter()
        self.trainer = Trainer(job.preset, job.path, seed=job.seed)
        self.setup_s = time.perf_counter() - t0
        self.first_pass: Any = None
        self.first: Any = None
        self.warm: Any = None
        self.warmed = False
        self.passes: list[Any] = []
        self.pass_steps: Any = None  # the pass under way when validation is spread over turns
        self.pass_done: list[tuple[float, float]] = []
        self.chunks: list[Any] = []
        self.turn_samples_per_s: list[float] = []

    def warm_up(self) -> dict[str, Any]:
        """The first (traced) validation call (a pass, or ``val_warm_batches``), the first step
        and the warm-up steps, untimed by the turns: asked for on its own (the ``warm`` turn) so
        that it can run alone while set-up (imports, data, model) ran side by side with other
        workers; else done before the first turn."""
        if not self.warmed:
            self.warmed = True
            if "validate" in self.job.phases:
                self.first_pass = self.trainer.validate(n_batches=self.job.val_warm_batches)
            if "train" in self.job.phases:
                self.first, self.warm = train_warmup(self.trainer, self.job)
        first = self.first_pass
        return {
            "first_val_call_s": float(first.batch_s[0]) if first is not None else None,
            "first_step_s": self.first.first_step_s if self.first is not None else None,
        }

    def validate(self, seconds: float | None = None) -> dict[str, float]:
        """One timed validation pass; with ``seconds``, only the pass's next batches, until they
        took that long (a turn overruns by at most one batch), so that one pass spreads over
        several turns and the machine's drift falls on every role's pass alike. ``passes`` says
        how many passes are complete."""
        from diffusion.trainer import ValidationResult

        self.warm_up()
        if seconds is None:
            self.passes.append(self.trainer.validate())
            return {"seconds": self.passes[-1].seconds, "passes": len(self.passes)}
        if self.pass_steps is None:
            self.pass_steps, self.pass_done = self.trainer.validation_steps(), []
        path, done, batches = self.trainer.path, 0.0, 0
        while done < seconds and len(self.pass_done) < path.val_batches:
            self.pass_done.append(next(self.pass_steps))
            done += self.pass_done[-1][1]
            batches += 1
        if len(self.pass_done) == path.val_batches:
            self.passes.append(ValidationResult.from_steps(self.pass_done, path.val_batch_size))
            self.pass_steps = None
        return {"batches": batches, "seconds": done, "passes": len(self.passes)}

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

    def record(self, *, close: bool = True) -> dict[str, Any]:
        """The job's record, as ``run_job`` gives it (less memory and CPU use); closes the trainer
        unless ``close=False`` (``run_job``'s)."""
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
            "job": job.record(),
            "spec": job.spec,
            "path": trainer.path.knobs(),
            "setup": {"seconds": self.setup_s},
            "params": trainer.model.count_params(),
            "phases": phases,
            "measured_in_turns": True,
            "device_memory": device_peak_bytes(),
            "traces": dict(trainer.stepper.traces),
            "environment": environment(preset=job.preset.name, loader_impl=trainer.loader.implementation),
        }
        if close:
            trainer.close()
        return record


class Session:
    """One path at one preset, in this process, for the pytest-benchmark suites.

    The first call (trace/compile) is timed on its own by ``first_train_step`` and
    ``first_validation_pass``; the suites then benchmark steady-state calls.
    """

    def __init__(self, preset: Preset, path: TrainingPath, seed: int = 0) -> None:
        from diffusion.trainer import Trainer

        self.job = Job(path, preset, seed=seed)
        self.trainer = Trainer(preset, path, seed=seed)
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
            "preset": self.job.preset.name,
            "samples_per_call": trainer.path.batch_size if phase == "train" else trainer.path.val_samples,
            "first_call_s": self.first_call_s.get(phase),
            **memory.summary(),
            "traces": dict(trainer.stepper.traces),
            "environment": environment(preset=self.job.preset.name, loader_impl=trainer.loader.implementation),
        }

    def close(self) -> None:
        self.trainer.close()
