"""Memory vs batch size, with the analytic footprint beside every reading; and disk per path.

``python -m bench.memory [--preset small] [--paths alt,neu] [--batches 32,64,...] [--json F [--resume]] [--markdown F]``

Every (path, batch) is one job in a fresh worker process (bench/runner.py: run_worker), measured
as the compare CLI measures it: validation, then training, each with memory-profiler's RSS
sampler (growth above the phase's start) and, on a GPU, the framework allocator's peak. Beside
each growth: what the model must hold at the least (bench/footprint.py). Disk: one epoch's logs
and checkpoint per path, with the tracking each path uses. With ``--json F`` each finished job
is appended to ``F.partial.jsonl`` (bench/partial.py): a cut run continues with ``--resume``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.footprint import Footprint
from bench.measure import Job
from diffusion.cli import TRAIN_SECONDS, Parser, check_writable_file, quiet_frameworks, run
from diffusion.errors import ConfigError
from diffusion.files import write_json_atomic
from diffusion.outputs import check_outputs
from diffusion.paths import ALT, KNOB_MAX, NEU, TrainingPath, format_path, parse_path
from diffusion.presets import Preset, get_preset

SCHEMA = "pmt-bench/memory/1"
CPU_BATCHES = (32, 64, 128, 256, 512, 1024)
GPU_BATCHES = CPU_BATCHES + (2048, 4096, 8192)
# Validation batches per pass: the peak is one batch's, and 3 x 1024 fits the 3200 fixed samples.
VAL_BATCHES = 3
PHASES = ("validate", "train")
# Each job is a whole worker process (up to a minute at seed): 200 are hours already.
MAX_JOBS = 200

Runner = Callable[[Job], dict[str, Any]]
# The disk jobs: logs and a checkpoint of a one-epoch fit, TensorBoard's histograms the most a path writes.
DISK_PATHS: tuple[TrainingPath, ...] = (ALT, NEU, dataclasses.replace(NEU, tracking="histograms"))


@dataclass(frozen=True)
class MemoryPlan:
    """What one memory run measures.

    Attributes:
        preset: the data and model.
        paths: each is measured at every batch size.
        batches: training and validation batch sizes.
        train_seconds: steady training per job; memory needs steps, not seconds, so it is short.
        disk_paths: the paths whose one-epoch logs and checkpoint are measured.
    """

    preset: Preset = field(default_factory=lambda: get_preset("small"))
    paths: tuple[TrainingPath, ...] = (ALT, NEU)
    batches: tuple[int, ...] = CPU_BATCHES
    train_seconds: float = 1.0
    disk_paths: tuple[TrainingPath, ...] = DISK_PATHS

    def __post_init__(self) -> None:
        if not self.batches or any(b < 1 for b in self.batches):
            raise ConfigError(f"`batches` must be positive integers, but got {self.batches!r}.")
        if max(self.batches) > KNOB_MAX["batch_size"]:
            raise ConfigError(f"`batches` must be at most {KNOB_MAX['batch_size']}, but got {self.batches!r}.")
        if not self.train_seconds > 0:
            raise ConfigError(f"`train_seconds` must be positive, but got {self.train_seconds!r}.")
        for name, values in (("paths", self.paths), ("batches", self.batches), ("disk_paths", self.disk_paths)):
            if len(set(values)) != len(values):  # one job per (path, batch): a repeat would reuse the first
                twice = sorted(
                    {str(v) if isinstance(v, int) else format_path(v) for v in values if values.count(v) > 1}
                )
                raise ConfigError(f"`{name}` must not repeat a value, but got {', '.join(twice)} more than once.")
        jobs = len(self.paths) * len(self.batches) + len(self.disk_paths)
        if jobs > MAX_JOBS:
            raise ConfigError(
                f"a memory run must have at most {MAX_JOBS} jobs (each a whole worker process), but "
                f"{len(self.paths)} paths x {len(self.batches)} batches + {len(self.disk_paths)} disk jobs make {jobs}."
            )

    @classmethod
    def from_specs(
        cls,
        preset: str = "small",
        paths: Iterable[str] = ("alt", "neu"),
        disk_paths: Iterable[str] | None = None,
        **rest: Any,
    ) -> MemoryPlan:
        """The plan a command line names: the preset by name, the paths as specs (parsed here, once).

        Raises:
            ConfigError: an unknown preset, path or knob, or a bad plan.
        """
        disk = DISK_PATHS if disk_paths is None else tuple(parse_path(spec) for spec in disk_paths)
        return cls(get_preset(preset), tuple(parse_path(spec) for spec in paths), disk_paths=disk, **rest)

    def validates_at(self, batch: int) -> bool:
        """Whether VAL_BATCHES batches of ``batch`` fit the preset's fixed validation set."""
        return batch * VAL_BATCHES <= self.preset.n_val

    def batch_path(self, path: TrainingPath, batch: int) -> TrainingPath:
        """``path`` training and validating at ``batch`` (VAL_BATCHES batches a pass). Above what
        the validation set holds, only training is measured; the validation batch stays in range."""
        val_batch = batch if self.validates_at(batch) else self.preset.n_val // VAL_BATCHES
        return dataclasses.replace(path, batch_size=batch, val_batch_size=val_batch, val_batches=VAL_BATCHES)

    def jobs(self) -> list[tuple[str, int | None, Job]]:
        """(path spec, batch or None for disk, job), in a fixed order: paths interleaved per batch."""
        options = {"train_seconds": self.train_seconds, "min_steps": 4, "warmup_steps": 1, "val_passes": 1}
        jobs: list[tuple[str, int | None, Job]] = [
            (
                format_path(path),
                batch,
                Job(
                    self.batch_path(path, batch),
                    self.preset,
                    PHASES if self.validates_at(batch) else ("train",),
                    **options,
                ),
            )
            for batch in self.batches
            for path in self.paths
        ]
        jobs += [(format_path(path), None, Job(path, self.preset, (), fit_disk=True)) for path in self.disk_paths]
        return jobs

    def record(self) -> dict[str, Any]:
        """The plan as records keep it: the preset by name, the paths as specs."""
        return {
            "preset": self.preset.name,
            "paths": [format_path(p) for p in self.paths],
            "batches": list(self.batches),
            "train_seconds": self.train_seconds,
            "disk_paths": [format_path(p) for p in self.disk_paths],
        }


def measure(
    plan: MemoryPlan,
    runner: Runner,
    on_job: Callable[[str, int | None, dict], None] | None = None,
    *,
    done: Mapping[tuple[str, int | None], dict[str, Any]] | None = None,
) -> dict:
    """Run the plan's jobs; returns the raw record (no analysis).

    Args:
        done: records of finished jobs, keyed (path spec, batch or None for disk), from a cut
            run (``bench.partial``): reused as they are, not run again and not passed to ``on_job``.
    """
    done = done or {}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    records, reused = [], 0
    for spec, batch, job in plan.jobs():
        if (spec, batch) in done:
            records.append(done[spec, batch])
            reused += 1
            continue
        record = {**runner(job), "path_spec": spec, "batch": batch}
        records.append(record)
        if on_job is not None:
            on_job(spec, batch, record)
    return {
        "schema": SCHEMA,
        "plan": plan.record(),
        "records": records,
        # This process's part: a resumed run's reused jobs were timed by the run that was cut.
        "seconds": time.perf_counter() - t0,
        "reused_jobs": reused,
        # Other work on the machine moves RSS little but time a lot; the load says how shared it was.
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
    }


def model_footprint(preset: Preset) -> Footprint:
    """The preset's denoiser, built once (no training), as bench/footprint.py counts it."""
    from bench.footprint import footprint, layer_shapes
    from diffusion.data import prepare
    from diffusion.model import build_denoiser

    train = prepare(preset).train
    return footprint(layer_shapes(build_denoiser(train.x.shape[1], train.cond.shape[1], preset.model)))


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (path, phase, batch): measured growth and peak beside the analytic parts (MiB)."""
    fp = Footprint(**{k: result["footprint"][k] for k in ("params", "activations_per_sample", "bytes_per_value")})
    out = []
    for rec in result["records"]:
        if rec["batch"] is None:
            continue
        for phase in PHASES:
            data = rec.get("phases", {}).get(phase)
            row = {"path": rec["path_spec"], "phase": phase, "batch": rec["batch"], "error": rec.get("error")}
            row |= {f"analytic_{k}": v for k, v in fp.parts_mib(phase, rec["batch"]).items()}
            if data is not None:
                row |= {
                    "rss_growth_mib": data["rss_growth_mib"],
                    "peak_rss_mib": data["peak_rss_mib"],
                    "device_growth_mib": data.get("device_growth_mib"),
                    "device_peak_mib": data.get("device_peak_mib"),
                }
                measured = data.get("device_growth_mib", data["rss_growth_mib"])
                row["measured_over_analytic"] = measured / row["analytic_growth_mib"]
            out.append(row)
    return sorted(out, key=lambda r: (r["phase"] != "validate", r["path"], r["batch"]))


def disk_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per disk job: log and checkpoint bytes, the checkpoint's analytic size."""
    out = []
    for rec in result["records"]:
        if rec["batch"] is None:
            disk = rec.get("disk") or {}
            out.append({"path": rec["path_spec"], "error": rec.get("error"), **disk})
    return out


def build_parser() -> Parser:
    parser = Parser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="preset (default small)")
    parser.add_argument("--paths", default="alt,neu", help="path specs, separated by ';' or ',' between names")
    parser.add_argument("--batches", help=f"batch sizes (default {CPU_BATCHES}; with --gpu {GPU_BATCHES})")
    parser.add_argument("--gpu", action="store_true", help="GPU batch sizes; read the allocator's peak beside RSS")
    parser.add_argument("--train-seconds", type=TRAIN_SECONDS, default=1.0, help="steady training per job (default 1)")
    parser.add_argument("--no-disk", action="store_true", help="skip the one-epoch disk jobs")
    parser.add_argument("--json", type=Path, help="write the record here (raw measurements first)")
    parser.add_argument("--markdown", type=Path, help="write a Markdown table, and a PNG plot beside it")
    parser.add_argument("--from", dest="source", type=Path, help="render a saved record instead of measuring")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the cut run of the same --json: reuse its finished jobs (kept beside it), measure the rest",
    )
    return parser


def parse_specs(text: str) -> tuple[str, ...]:
    """``alt,neu`` or ``alt;neu:batch_size=64,clip_norm=none``: ';' separates specs that carry overrides."""
    parts = text.split(";") if ";" in text else text.split(",")
    return tuple(p.strip() for p in parts if p.strip())


def main(argv: list[str] | None = None) -> int:
    from bench.partial import Partial, partial_path, run_identity

    args = build_parser().parse_args(argv)
    png = args.markdown.with_suffix(".png") if args.markdown is not None else None
    partial_file = partial_path(args.json) if args.json is not None and args.source is None else None
    outputs = [("--json", args.json), ("--markdown", args.markdown), ("--markdown's plot", png)]
    check_outputs([*outputs, ("--json's partial record", partial_file)], [("--from", args.source)])
    for what, path in [*outputs, ("--json's partial record", partial_file)]:
        if path is not None:
            check_writable_file(path, what)
    if args.source is not None:
        if args.resume:
            raise ConfigError("--resume continues a measurement; --from renders a saved one: give one of them.")
        from bench.shapes import MEMORY, read_checked

        result = read_checked(args.source, "--from", MEMORY, schema=SCHEMA)
    else:
        try:
            batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else None
        except ValueError:
            raise ConfigError(f"--batches must be integers separated by commas, but got {args.batches!r}.") from None
        plan = MemoryPlan.from_specs(
            args.preset,
            parse_specs(args.paths),
            disk_paths=() if args.no_disk else None,
            batches=batches or (GPU_BATCHES if args.gpu else CPU_BATCHES),
            train_seconds=args.train_seconds,
        )
        from bench.shapes import MEMORY_JOB

        partial = Partial.beside(
            args.json, run_identity(plan.record(), "bench/memory.py"), resume=args.resume, shape=MEMORY_JOB
        )
        quiet_frameworks()
        from bench.runner import run_worker

        def line(spec: str, batch: int | None, outcome: str) -> None:
            what = f"batch {batch}" if batch is not None else "disk"
            print(f"{spec:>28} {what:>10}: {outcome}", file=sys.stderr)

        def progress(spec: str, batch: int | None, record: dict) -> None:
            partial.append((spec, batch), record)
            line(spec, batch, record.get("error", "ok"))

        done = partial.done()
        for spec, batch, _ in plan.jobs():
            if (spec, batch) in done:
                line(spec, batch, "ok (reused)")
        result = measure(plan, run_worker, progress, done=done)
        if args.json is not None:
            write_json_atomic(args.json, result)  # raw measurements, before anything can fail
        from diffusion.environment import environment

        result["footprint"] = model_footprint(plan.preset).record()
        result["environment"] = environment(preset=plan.preset.name)
    if args.json is not None:
        write_json_atomic(args.json, result)
    if args.source is None:
        partial.finish()
    from bench.memory_report import markdown, plot_png, render
    from diffusion.files import write_bytes_atomic, write_text_atomic

    table, disk = rows(result), disk_rows(result)
    if args.markdown is not None:
        png = args.markdown.with_suffix(".png")
        write_bytes_atomic(png, plot_png(result, table))
        write_text_atomic(args.markdown, markdown(result, table, disk, plot_name=png.name))
    render(result, table, disk)
    return 0


if __name__ == "__main__":
    run(main)
