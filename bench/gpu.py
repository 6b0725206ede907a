"""GPU against CPU on the JAX backend: ``KERAS_BACKEND=jax python -m bench.gpu --preset seed --json F``.

Measures on the first GPU and, in a child process with ``JAX_PLATFORMS=cpu``, on the same
host's CPUs: forward, backward and epoch at batch 32 (the report's S3 rows) and a batch sweep;
training throughput with the host and the device loader in fp32 and mixed_bfloat16, with the
share of the same-run matmul rate each row reaches; the ``model.fit`` peer; and data-parallel
scaling over 1 and 2 GPUs where two are present; and the device-loader step against its
stateless ceiling at batch 1024, 4096 and 16384 (``bench.ceiling``; ``--part ceiling`` measures
that section and the matmul rates alone). Writes one JSON record that
``python -m bench.compare --from F`` renders. Prints a line per finished reading on stderr
(each batch size, repeat, epoch and throughput row; the CPU half's too, as its child measures
them), or a bar on a terminal.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffusion.cli import TRAIN_SECONDS, Parser, bounded, check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import write_json_atomic
from diffusion.presets import PRESETS, get_preset

SCHEMA = "pmt-bench/gpu/1"  # bench.compare --from knows it as GPU_SCHEMA
S3_BATCH = 32  # the report's training batch
SWEEP = (32, 128, 512, 1024, 4096)
TRAIN_SWEEP = (32, 256, 1024, 4096, 16384)
PRECISIONS = ("float32", "mixed_bfloat16")
SHORT = {"float32": "fp32", "mixed_bfloat16": "bf16"}  # in progress lines, which must fit 80 columns
FIT_BATCHES = (S3_BATCH, 1024)
PARALLEL_BATCHES = (1024, 4096, 16384)
PARTS = ("all", "gpu", "ceiling", "cpu")
ROOT = Path(__file__).resolve().parent.parent
# The CPU half's child hands each reading's line to the parent on stderr, behind this tag.
CHILD_TAG = "bench.gpu reading\t"

Report = Callable[[str, str], None]  # report(what was measured, its reading): one progress line


def build_parser() -> Parser:
    parser = Parser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="seed", help=f"one of {', '.join(PRESETS)} (default seed)")
    parser.add_argument("--json", type=Path, help="write the record here (default: none, print the tables only)")
    parser.add_argument(
        "--repeats", type=bounded(int, low=1, high=100), default=5, help="timed repeats per reading (default 5)"
    )
    parser.add_argument(
        "--seconds", type=TRAIN_SECONDS, default=3.0, help="steady-state seconds per throughput row (default 3)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes, a smoke run (default: all sizes)")
    parser.add_argument(
        "--part",
        default="all",
        help="all (default); gpu: the GPU half alone; ceiling: the matmul rates and the step against its ceiling "
        "alone; cpu: the CPU half, which the GPU half runs in a child process",
    )
    return parser


def epoch_count(repeats: int) -> int:
    """Timed epochs at the report's batch (after one warm-up epoch)."""
    return max(3, repeats // 2 + 1)


def train_rows(quick: bool) -> list[tuple[str, str, int]]:
    """(precision, loader, batch) of every training-throughput row."""
    return [
        (precision, loader, batch)
        for precision in PRECISIONS
        for loader in ("host", "device")
        for batch in (TRAIN_SWEEP[:3] if quick else TRAIN_SWEEP)
        if not (loader == "host" and batch > 4096)  # the host loader is capped long before (its rows show it)
    ]


def ceiling_readings(quick: bool) -> int:
    """The ceiling section's progress lines: a round per batch, a census and two profiles per precision."""
    from bench import ceiling

    rows = 1 + 1 if quick else len(ceiling.BATCHES) + len(ceiling.SMALL_BATCHES)
    return len(ceiling.PRECISIONS) * (rows * (2 if quick else ceiling.ROUNDS) + 3)


def planned_readings(*, quick: bool, repeats: int, gpus: int, part: str = "all") -> tuple[int, int]:
    """The progress lines of the GPU half and of the CPU half: their bars' totals."""
    if part == "ceiling":
        return 2 + ceiling_readings(quick), 0
    half = len(SWEEP[:3] if quick else SWEEP) + repeats + 1 + epoch_count(repeats) + 1
    gpu = half + 1 + len(train_rows(quick)) + len(FIT_BATCHES) + (2 * len(PARALLEL_BATCHES) if gpus >= 2 else 0)
    return gpu + ceiling_readings(quick), (half + 1 if part == "all" else 0)  # the CPU half adds its model.fit peer


def epoch_times(preset: Any, data: Any, batch: int, epochs: int, report: Report) -> list[float]:
    """Wall seconds of real epochs of the NEU path (the project's Trainer and host loader),
    after one warm-up epoch that holds the compile."""
    import dataclasses

    from diffusion.paths import NEU
    from diffusion.trainer import Trainer

    trainer = Trainer(preset, dataclasses.replace(NEU, batch_size=batch), data=data)
    try:
        t0 = time.perf_counter()
        trainer.train_epoch()
        report(f"warm-up epoch batch {batch}", f"{time.perf_counter() - t0:.2f} s (compiles; not kept)")
        times = []
        for i in range(epochs):
            t0 = time.perf_counter()
            trainer.train_epoch()
            times.append(time.perf_counter() - t0)
            report(f"epoch {i + 1}/{epochs} batch {batch}", f"{times[-1]:.2f} s")
        return times
    finally:
        trainer.close()


def s3_readings(
    preset: Any, data: Any, device: Any, repeats: int, batches: tuple[int, ...], report: Report
) -> dict[str, Any]:
    """Forward/backward per batch size, per-repeat times at the report's batch, and epochs."""
    import jax

    from bench import accel

    model = accel.build(preset, data)

    def fwd_bwd(row: dict[str, Any]) -> str:
        return f"{row['forward_s'] * 1e3:.2f} / {row['backward_s'] * 1e3:.2f} ms"

    sweep = []
    for batch in batches:
        sweep.append(accel.forward_backward(model, batch, device))
        report(f"fwd/bwd batch {batch}", fwd_bwd(sweep[-1]))
    # Per-repeat times at the report's batch, for an interval of the GPU/CPU ratio.
    per_repeat = []
    for r in range(repeats):
        per_repeat.append(accel.forward_backward(model, S3_BATCH, device))
        report(f"fwd/bwd batch {S3_BATCH} #{r + 1}/{repeats}", fwd_bwd(per_repeat[-1]))
    epochs = epoch_times(preset, data, S3_BATCH, epoch_count(repeats), report)
    rate = accel.matmul_rate("float32", device=device)
    report("fp32 matmul", f"{rate / 1e12:.1f} TFLOP/s")
    return {
        "platform": device.platform,
        "device_kind": getattr(device, "device_kind", device.platform),
        "devices": len(jax.devices()),
        "sweep": sweep,
        "forward_s": [r["forward_s"] for r in per_repeat],
        "backward_s": [r["backward_s"] for r in per_repeat],
        "epoch_s": epochs,
        "matmul_flops_per_s": {"float32": rate},
        "flops_per_sample": accel.analytic_flops_per_sample(model.keras_model),
    }


def child_report(what: str, detail: str) -> None:
    """The CPU half's child: a reading's line for the parent, which counts it in its own bar."""
    print(f"{CHILD_TAG}{what}\t{detail}", file=sys.stderr, flush=True)


def cpu_half(preset_name: str, repeats: int, quick: bool, report: Report) -> dict[str, Any]:
    """The CPU readings, in a child process that sees only the CPUs (JAX_PLATFORMS=cpu); each
    of its readings is reported as the child finishes it."""
    from bench.roles import tree_env

    env = {**tree_env(ROOT), "JAX_PLATFORMS": "cpu", "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "bench.gpu", "--part", "cpu", "--preset", preset_name, "--repeats", str(repeats)]
    tail: collections.deque[str] = collections.deque(maxlen=20)
    # stdout (the record, one line) to a file: reading stderr live while a stdout pipe fills would deadlock.
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            cmd + (["--quick"] if quick else []), stdout=out, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        for line in proc.stderr or ():
            if line.startswith(CHILD_TAG):
                what, _, detail = line[len(CHILD_TAG) :].rstrip("\n").partition("\t")
                report(what, detail)
            elif line.strip():
                tail.append(line.strip())
        returncode = proc.wait()
        out.seek(0)
        stdout = out.read()
    if returncode != 0:
        return {"error": f"CPU half exited {returncode}: {tail[-1] if tail else 'no output'}"}
    return json.loads(stdout.strip().splitlines()[-1])


def gpu_half(args: Any, preset: Any, data: Any, report: Report) -> dict[str, Any]:
    import jax

    from bench import accel

    gpus = [d for d in jax.devices() if d.platform != "cpu"]
    if not gpus:
        raise ConfigError("no GPU is visible to JAX here; run on a GPU machine (CPU rows need a GPU to compare with).")
    device = gpus[0]
    if args.part == "ceiling":
        out: dict[str, Any] = {"gpu": device_rates(preset, data, device, report), "train": []}
        out["ceiling"] = ceiling_section(args, preset, data, report, out)
        return out
    batches = SWEEP[:3] if args.quick else SWEEP
    out = {"gpu": s3_readings(preset, data, device, args.repeats, batches, report)}
    out["gpu"]["matmul_flops_per_s"]["bfloat16"] = accel.matmul_rate("bfloat16", device=device)
    report("bf16 matmul", f"{out['gpu']['matmul_flops_per_s']['bfloat16'] / 1e12:.1f} TFLOP/s")

    # Throughput rows leave out the first (traced) step and three warm-up steps (accel.train_throughput).
    train = []
    models = {}
    for precision, loader, batch in train_rows(args.quick):
        if precision not in models:
            models[precision] = accel.build(preset, data, precision=precision)
        k = accel.DEVICE_STEPS_PER_CALL if loader == "device" else 1
        row = accel.train_throughput(models[precision], batch, loader, seconds=args.seconds, steps_per_call=k)
        train.append({**row, "precision": precision})
        report(
            f"{SHORT[precision]} {loader} batch {batch}",
            f"{row['samples_per_s']:.0f} samples/s, wait {row['input_wait_share']:.2f}",
        )
    out["train"] = train
    save_partial(args, out)
    out["ceiling"] = ceiling_section(args, preset, data, report, out)
    save_partial(args, out)

    model = accel.build(preset, data)
    out["fit_peer"] = []
    for batch in FIT_BATCHES:
        row = accel.fit_peer(model, batch)
        neu = accel.train_throughput(model, batch, "host", seconds=args.seconds)
        out["fit_peer"].append({**row, "neu_host_samples_per_s": neu["samples_per_s"]})
        report(f"model.fit batch {batch}", f"{row['samples_per_s']:.0f} samples/s (NEU {neu['samples_per_s']:.0f})")

    save_partial(args, out)
    out["data_parallel"] = []
    if len(gpus) >= 2:
        for batch in PARALLEL_BATCHES:
            for k in (1, 2):
                row = accel.data_parallel(preset, data, batch, gpus[:k], seconds=args.seconds)
                out["data_parallel"].append(row)
                report(f"parallel x{k} batch {batch}", f"{row['samples_per_s']:.0f} samples/s")
    return out


def device_rates(preset: Any, data: Any, device: Any, report: Report) -> dict[str, Any]:
    """What the ceiling part needs of the device: its name, matmul rates, FLOPs per sample."""
    import jax

    from bench import accel

    rates = {}
    for dtype in ("float32", "bfloat16"):
        rates[dtype] = accel.matmul_rate(dtype, device=device)
        report(f"{SHORT.get(dtype, 'bf16')} matmul", f"{rates[dtype] / 1e12:.1f} TFLOP/s")
    return {
        "platform": device.platform,
        "device_kind": getattr(device, "device_kind", device.platform),
        "devices": len(jax.devices()),
        "matmul_flops_per_s": rates,
        "flops_per_sample": accel.analytic_flops_per_sample(accel.build(preset, data).keras_model),
    }


def ceiling_section(args: Any, preset: Any, data: Any, report: Report, record: dict[str, Any]) -> dict[str, Any]:
    """The step against its stateless ceiling (``bench.ceiling.measure``), profiler traces
    under a temporary folder; the record so far saved as partial after each row."""
    from bench import ceiling

    def keep(section: dict[str, Any]) -> None:
        save_partial(args, {**record, "ceiling": section})

    with tempfile.TemporaryDirectory(prefix="bench-gpu-profile-") as tmp:
        return ceiling.measure(preset, data, report, quick=args.quick, profile_dir=Path(tmp), keep=keep)


def save_partial(args: Any, record: dict[str, Any]) -> None:
    """Write what is measured so far, so a run cut off by a time limit keeps its rows."""
    if args.json is not None:
        write_json_atomic(args.json.with_suffix(".partial.json"), record)


def measure(args: Any, preset: Any, data: Any) -> dict[str, Any]:
    """Both halves, each with a line per reading on stderr (a bar on a terminal)."""
    import jax

    from bench.progress import JobProgress
    from diffusion.progress import fit_job_detail, say

    gpus = [d for d in jax.devices() if d.platform != "cpu"]
    totals = planned_readings(quick=args.quick, repeats=args.repeats, gpus=len(gpus), part=args.part)
    for line in (
        f"bench.gpu: {preset.name}, {data.train.x.shape[0]} events x {data.train.x.shape[1]} features; "
        f"{totals[0]} GPU, {totals[1]} CPU readings (--part {args.part})",
        "fwd/bwd: forward and backward ms, medians after warm-up calls (they compile)",
        "samples/s: each row's steps after its first (traced) step and 3 warm-up steps",
    ):
        say(line)

    def reporter(bar: JobProgress) -> Report:
        return lambda what, detail: bar.done(what, {}, detail=fit_job_detail(bar, what, detail))

    with JobProgress("GPU", totals[0]) as bar:
        record: dict[str, Any] = gpu_half(args, preset, data, reporter(bar))
    if args.part != "all":
        record["cpu"] = {"error": f"the CPU half was not run (--part {args.part})"}
        return record
    with JobProgress("CPU", totals[1]) as bar:
        record["cpu"] = cpu_half(preset.name, args.repeats, args.quick, reporter(bar))
    return record


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = get_preset(args.preset)
    if args.repeats < 3:
        raise ConfigError(f"--repeats must be at least 3 (fewer give no verdict), but got {args.repeats}.")
    if args.part not in PARTS:
        raise ConfigError(f"--part must be one of {', '.join(PARTS)}, but got {args.part!r}.")
    if args.json is not None:
        check_writable_file(args.json, "--json")
        check_writable_file(args.json.with_suffix(".partial.json"), "--json's partial record")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise ConfigError(f"bench.gpu runs on the JAX backend; KERAS_BACKEND is {keras.backend.backend()!r}.")
    import jax

    from diffusion.data import prepare

    if args.part != "cpu" and not [d for d in jax.devices() if d.platform != "cpu"]:
        raise ConfigError("no GPU is visible to JAX here; run on a GPU machine (CPU rows need a GPU to compare with).")
    start = time.perf_counter()
    data = prepare(preset)
    if args.part == "cpu":
        device = jax.devices("cpu")[0]
        batches = SWEEP[:3] if args.quick else SWEEP
        cpu = s3_readings(preset, data, device, args.repeats, batches, child_report)
        cpu["cores"] = len(os.sched_getaffinity(0))
        from bench import accel

        cpu["fit_peer"] = [accel.fit_peer(accel.build(preset, data), S3_BATCH)]
        child_report(f"model.fit batch {S3_BATCH}", f"{cpu['fit_peer'][0]['samples_per_s']:.0f} samples/s")
        print(json.dumps(cpu, default=float))
        return 0
    record = measure(args, preset, data)
    from bench.gpu_analysis import gpu_claim_rows
    from diffusion.environment import environment

    record.update(
        schema=SCHEMA,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        preset=preset.name,
        wall_s=time.perf_counter() - start,
        environment=environment(preset=preset.name),
    )
    record["part"] = args.part
    record["claims"] = gpu_claim_rows(record)
    if args.json is not None:
        write_json_atomic(args.json, record)
    from bench.gpu_report import render

    render(record)
    return 0


if __name__ == "__main__":
    run(main)
