"""GPU against CPU on the JAX backend: ``KERAS_BACKEND=jax python -m bench.gpu --preset seed --json F``.

Measures on the first GPU and, in a child process with ``JAX_PLATFORMS=cpu``, on the same
host's CPUs: forward, backward and epoch at batch 32 (the report's S3 rows) and a batch sweep;
training throughput with the host and the device loader in fp32 and mixed_bfloat16, with the
share of the same-run matmul rate each row reaches; the ``model.fit`` peer; and data-parallel
scaling over 1 and 2 GPUs where two are present. Writes one JSON record that
``python -m bench.compare --from F`` renders. Prints a line per finished measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.cli import TRAIN_SECONDS, Parser, bounded, check_writable_file, run, write_json_atomic
from diffusion.errors import ConfigError
from diffusion.presets import PRESETS, get_preset

SCHEMA = "pmt-bench/gpu/1"  # bench.compare --from knows it as GPU_SCHEMA
S3_BATCH = 32  # the report's training batch
SWEEP = (32, 128, 512, 1024, 4096)
TRAIN_SWEEP = (32, 256, 1024, 4096, 16384)
PRECISIONS = ("float32", "mixed_bfloat16")
ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> Parser:
    parser = Parser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="seed", help=f"one of {', '.join(PRESETS)} (default seed)")
    parser.add_argument("--json", type=Path, help="write the record here")
    parser.add_argument(
        "--repeats", type=bounded(int, low=1, high=100), default=5, help="timed repeats per reading (default 5)"
    )
    parser.add_argument("--seconds", type=TRAIN_SECONDS, default=3.0, help="steady-state seconds per throughput row")
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes (a smoke run)")
    parser.add_argument(
        "--part", default="all", help="all (default), or cpu: the CPU half, which the GPU half runs in a child process"
    )
    return parser


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def epoch_times(preset: Any, data: Any, batch: int, epochs: int) -> list[float]:
    """Wall seconds of real epochs of the NEU path (the project's Trainer and host loader),
    after one warm-up epoch that holds the compile."""
    import dataclasses

    from diffusion.paths import NEU
    from diffusion.trainer import Trainer

    trainer = Trainer(preset, dataclasses.replace(NEU, batch_size=batch), data=data)
    try:
        trainer.train_epoch()
        times = []
        for _ in range(epochs):
            t0 = time.perf_counter()
            trainer.train_epoch()
            times.append(time.perf_counter() - t0)
        return times
    finally:
        trainer.close()


def s3_readings(preset: Any, data: Any, device: Any, repeats: int, batches: tuple[int, ...]) -> dict[str, Any]:
    """Forward/backward per batch size, per-repeat times at the report's batch, and epochs."""
    import jax

    from bench import accel

    model = accel.build(preset, data)
    sweep = []
    for batch in batches:
        sweep.append(accel.forward_backward(model, batch, device))
        say(
            f"{device.platform} forward/backward batch {batch}: {sweep[-1]['forward_s'] * 1e3:.2f} / "
            f"{sweep[-1]['backward_s'] * 1e3:.2f} ms"
        )
    # Per-repeat times at the report's batch, for an interval of the GPU/CPU ratio.
    per_repeat = [accel.forward_backward(model, S3_BATCH, device) for _ in range(repeats)]
    epochs = epoch_times(preset, data, S3_BATCH, max(3, repeats // 2 + 1))
    say(f"{device.platform} epoch at batch {S3_BATCH}: {np.median(epochs):.2f} s")
    rate = accel.matmul_rate("float32", device=device)
    say(f"{device.platform} fp32 matmul: {rate / 1e12:.1f} TFLOP/s")
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


def cpu_half(preset_name: str, repeats: int, quick: bool) -> dict[str, Any]:
    """The CPU readings, in a child process that sees only the CPUs (JAX_PLATFORMS=cpu)."""
    from bench.runner import tree_env

    env = {**tree_env(ROOT), "JAX_PLATFORMS": "cpu", "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "bench.gpu", "--part", "cpu", "--preset", preset_name, "--repeats", str(repeats)]
    proc = subprocess.run(cmd + (["--quick"] if quick else []), capture_output=True, text=True, env=env, cwd=ROOT)
    for line in proc.stderr.splitlines():
        if line.startswith("["):
            print(line, flush=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"CPU half exited {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gpu_half(args: Any, preset: Any, data: Any) -> dict[str, Any]:
    import jax

    from bench import accel

    gpus = [d for d in jax.devices() if d.platform != "cpu"]
    if not gpus:
        raise ConfigError("no GPU is visible to JAX here; run on a GPU machine (CPU rows need a GPU to compare with).")
    device = gpus[0]
    batches = SWEEP[:3] if args.quick else SWEEP
    out: dict[str, Any] = {"gpu": s3_readings(preset, data, device, args.repeats, batches)}
    out["gpu"]["matmul_flops_per_s"]["bfloat16"] = accel.matmul_rate("bfloat16", device=device)
    say(f"gpu bf16 matmul: {out['gpu']['matmul_flops_per_s']['bfloat16'] / 1e12:.1f} TFLOP/s")

    train = []
    for precision in PRECISIONS:
        model = accel.build(preset, data, precision=precision)
        for loader in ("host", "device"):
            for batch in TRAIN_SWEEP[:3] if args.quick else TRAIN_SWEEP:
                if loader == "host" and batch > 4096:
                    continue  # the host loader is capped long before (see the rows below it)
                row = accel.train_throughput(model, batch, loader, seconds=args.seconds)
                train.append({**row, "precision": precision})
                say(
                    f"train {precision} {loader} batch {batch}: {row['samples_per_s']:.0f} samples/s, "
                    f"input wait {row['input_wait_share']:.2f}"
                )
    out["train"] = train
    save_partial(args, out)

    model = accel.build(preset, data)
    out["fit_peer"] = []
    for batch in (S3_BATCH, 1024):
        row = accel.fit_peer(model, batch)
        neu = accel.train_throughput(model, batch, "host", seconds=args.seconds)
        out["fit_peer"].append({**row, "neu_host_samples_per_s": neu["samples_per_s"]})
        say(f"model.fit batch {batch}: {row['samples_per_s']:.0f} samples/s (NEU step: {neu['samples_per_s']:.0f})")

    save_partial(args, out)
    out["data_parallel"] = []
    if len(gpus) >= 2:
        for batch in (1024, 4096, 16384):
            for k in (1, 2):
                row = accel.data_parallel(preset, data, batch, gpus[:k], seconds=args.seconds)
                out["data_parallel"].append(row)
                say(f"data parallel {k} GPU(s) batch {batch}: {row['samples_per_s']:.0f} samples/s")
    return out


def save_partial(args: Any, record: dict[str, Any]) -> None:
    """Write what is measured so far, so a run cut off by a time limit keeps its rows."""
    if args.json is not None:
        write_json_atomic(args.json.with_suffix(".partial.json"), record)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = get_preset(args.preset)
    if args.repeats < 3:
        raise ConfigError(f"--repeats must be at least 3 (fewer give no verdict), but got {args.repeats}.")
    if args.part not in ("all", "cpu"):
        raise ConfigError(f"--part must be all or cpu, but got {args.part!r}.")
    if args.json is not None:
        check_writable_file(args.json, "--json")
        check_writable_file(args.json.with_suffix(".partial.json"), "--json's partial record")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise ConfigError(f"bench.gpu runs on the JAX backend; KERAS_BACKEND is {keras.backend.backend()!r}.")
    import jax

    from diffusion.data import prepare

    if args.part == "all" and not [d for d in jax.devices() if d.platform != "cpu"]:
        raise ConfigError("no GPU is visible to JAX here; run on a GPU machine (CPU rows need a GPU to compare with).")
    start = time.perf_counter()
    data = prepare(preset)
    if args.part == "cpu":
        cpu = s3_readings(preset, data, jax.devices("cpu")[0], args.repeats, SWEEP[:3] if args.quick else SWEEP)
        cpu["cores"] = len(os.sched_getaffinity(0))
        from bench import accel

        cpu["fit_peer"] = [accel.fit_peer(accel.build(preset, data), S3_BATCH)]
        print(json.dumps(cpu, default=float))
        return 0
    say(f"data ready ({preset.name}: {data.train.x.shape[0]} events x {data.train.x.shape[1]} features)")
    record: dict[str, Any] = gpu_half(args, preset, data)
    record["cpu"] = cpu_half(preset.name, args.repeats, args.quick)
    from bench.analysis import gpu_claim_rows
    from diffusion.environment import environment

    record.update(
        schema=SCHEMA,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        preset=preset.name,
        wall_s=time.perf_counter() - start,
        environment=environment(preset=preset.name),
    )
    record["claims"] = gpu_claim_rows(record)
    if args.json is not None:
        write_json_atomic(args.json, record)
    from bench.gpu_report import render

    render(record)
    return 0


if __name__ == "__main__":
    run(main)
