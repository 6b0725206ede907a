"""The device-loader step against its stateless ceiling, on the JAX backend.

The ceiling is the same model's training step (the same ``bench.accel.update_fn``: Adam after
clipping the gradients' global norm to 1.0, the same batch size, events drawn from the same
resident data set and noised inside the step) as one pure jitted function of parameters,
optimizer state and a PRNG key, the next key among its outputs. It is dispatched back to back
and synchronised once at the end of a round, so the host only queues work and the GPU never
waits for it: what one step costs on the device, with nothing of the host's loop in it.

The project's step (``bench.accel.train_throughput`` with the device loader) synchronises
every call, as the Trainer does, and takes its step number from the host; with ``k`` steps
per call (a ``lax.scan``) that cost is paid once per k steps. Rounds alternate ceiling and
step, so drift of the card's clocks falls on both.

Pure measurement functions; ``bench.gpu`` runs them and writes the record.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import accel

STEPS_PER_CALL = (1, 16, accel.DEVICE_STEPS_PER_CALL)  # the k sweep beside the ceiling
ROUNDS = 3  # alternating rounds of ceiling and step per batch: their spread is the noise
BATCHES = (1024, 4096, 16384)  # where the step must come within 5% of its ceiling
SMALL_BATCHES = (32, 256)  # where mixed bf16 ran slower than fp32
PRECISIONS = ("float32", "mixed_bfloat16")
SHORT = {"float32": "fp32", "mixed_bfloat16": "bf16"}  # in progress lines
# The ops of an optimized HLO module's entry computation that launch no kernel of their own.
NO_KERNEL = {"parameter", "tuple", "get-tuple-element", "constant", "bitcast", "after-all", "partition-id"}


def ceiling_step_fn(model: accel.Model, *, batch: int, clip_norm: float | None = 1.0) -> Any:
    """``step(state, key, x0_all, cond_all, alpha_bar) -> (loss, state, key)``, jitted, the
    state and key donated. The data set is an argument only so that it is not baked into the
    program as a constant; nothing of it changes. The key's implementation is ``ceiling_key``'s."""
    jax = accel._jax()
    update = accel.update_fn(model, clip_norm=clip_norm)

    def step(state, key, x0_all, cond_all, alpha_bar):
        key, sub = jax.random.split(key)
        loss, state = update(state, *accel.draw_from_key(sub, x0_all, cond_all, alpha_bar, batch))
        return loss, state, key

    return jax.jit(step, donate_argnums=(0, 1))


def ceiling_key(prng: str = accel.PRNG_IMPL) -> Any:
    """The ceiling's first key (another stream than the device loader's, the same distribution)."""
    return accel._jax().random.key(1, impl=prng)


def ceiling_throughput(
    model: accel.Model, batch: int, *, seconds: float = 1.0, step: Any = None, prng: str = accel.PRNG_IMPL
) -> dict[str, Any]:
    """Samples/s of the ceiling: about ``seconds`` of steps queued back to back, then one
    synchronisation (after a compile call and 3 warm-up steps)."""
    jax = accel._jax()
    step = step or ceiling_step_fn(model, batch=batch)
    state = jax.tree.map(lambda a: a.copy(), model.state)
    key = ceiling_key(prng)
    resident = jax.device_put((model.x0, model.cond, model.alpha_bar))
    t0 = time.perf_counter()
    loss, state, key = step(state, key, *resident)
    jax.block_until_ready(loss)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(3):
        loss, state, key = step(state, key, *resident)
    jax.block_until_ready(state)
    per_step = (time.perf_counter() - t0) / 3  # an over-estimate: the first of them may wait for the queue
    n = max(10, int(seconds / per_step))
    t0 = time.perf_counter()
    for _ in range(n):
        loss, state, key = step(state, key, *resident)
    jax.block_until_ready(state)
    elapsed = time.perf_counter() - t0
    return {
        "batch": batch,
        "first_step_s": first_s,
        "steps": n,
        "samples_per_s": batch * n / elapsed,
        "step_ms": 1000 * elapsed / n,
        "loss_last": float(loss),
    }


def step_against_ceiling(
    model: accel.Model,
    batch: int,
    *,
    ks: tuple[int, ...] = STEPS_PER_CALL,
    seconds: float = 1.0,
    rounds: int = ROUNDS,
    prng: str = accel.PRNG_IMPL,
    report: Any = None,
) -> dict[str, Any]:
    """The ceiling and the device-loader step at each k in ``ks``, in ``rounds`` alternating
    rounds of about ``seconds`` each; every function compiled once, before the first round.

    Returns:
        ``{"batch", "ceiling": [samples/s per round], "step": {k: [samples/s per round]},
        "compile_s": {"ceiling" | k: first call's seconds}}``.
    """
    ceiling = ceiling_step_fn(model, batch=batch)
    steps = {k: accel.train_step_fn(model, loader="device", batch=batch, steps_per_call=k, prng=prng) for k in ks}
    out: dict[str, Any] = {"batch": batch, "ceiling": [], "step": {k: [] for k in ks}, "compile_s": {}}
    for r in range(rounds):
        got = ceiling_throughput(model, batch, seconds=seconds, step=ceiling, prng=prng)
        out["ceiling"].append(got["samples_per_s"])
        out["compile_s"].setdefault("ceiling", got["first_step_s"])
        for k in ks:
            row = accel.train_throughput(model, batch, "device", seconds=seconds, steps_per_call=k, step=steps[k])
            out["step"][k].append(row["samples_per_s"])
            out["compile_s"].setdefault(k, row["first_step_s"])
        if report is not None:
            best = max(ks, key=lambda k: out["step"][k][-1])
            report(
                f"ceiling batch {batch} #{r + 1}/{rounds}",
                f"{got['samples_per_s']:.0f}/s; k={best} {out['step'][best][-1] / got['samples_per_s']:.0%}",
            )
    out["step"] = {str(k): v for k, v in out["step"].items()}  # JSON keys
    out["compile_s"] = {str(k): v for k, v in out["compile_s"].items()}
    return out


def measure(
    preset: Any,
    data: Any,
    report: Any,
    *,
    seconds: float = 0.6,
    quick: bool = False,
    profile_dir: Path | None = None,
    keep: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The section ``bench.gpu`` records: at each precision the step against its ceiling at
    ``BATCHES`` (k in ``STEPS_PER_CALL``) and at ``SMALL_BATCHES`` (k = 1 and the path's k), the
    HLO census of the single step at the smallest batch, and kernel profiles there (the
    ceiling, and the single synchronised step) where the profiler traces the GPU. ``keep`` is
    handed the section so far after each row (a partial record for a run cut short)."""
    import tempfile

    k = accel.DEVICE_STEPS_PER_CALL
    batches, small = (BATCHES[:1], SMALL_BATCHES[:1]) if quick else (BATCHES, SMALL_BATCHES)
    rounds = 2 if quick else ROUNDS
    out: dict[str, Any] = {"steps_per_call": k, "rounds": rounds, "seconds": seconds, "rows": [], "small": []}
    out["census"], out["profiles"] = {}, {}
    for precision in PRECISIONS:
        model = accel.build(preset, data, precision=precision)

        def said(what: str, detail: str, label: str = SHORT[precision]) -> None:
            report(f"{label} {what}", detail)

        for batch in batches:
            row = step_against_ceiling(model, batch, seconds=seconds, rounds=rounds, report=said)
            out["rows"].append({**row, "precision": precision})
            if keep is not None:
                keep(out)
        for batch in small:
            row = step_against_ceiling(model, batch, ks=(1, k), seconds=seconds, rounds=rounds, report=said)
            out["small"].append({**row, "precision": precision})
            if keep is not None:
                keep(out)
        out["census"][precision] = census(model, small[0])
        said(f"HLO census batch {small[0]}", f"{out['census'][precision]['entry_kernels']} kernels")
        for name, run in profiled_runs(model, small[0]).items():
            try:
                got = kernel_profile(run, PROFILED_STEPS, Path(tempfile.mkdtemp(dir=profile_dir)))
            except Exception as e:  # the profiler is best-effort: a missing CUPTI must not cost the rows
                got = {"error": f"{type(e).__name__}: {e}"}
            out["profiles"][f"{precision} {name} batch {small[0]}"] = got
            said(f"profile {name}", f"{got.get('kernels_per_step', 0):.0f} kernels/step")
    return out


PROFILED_STEPS = 20


def profiled_runs(model: accel.Model, batch: int) -> dict[str, Callable[[], None]]:
    """Warmed-up runs of ``PROFILED_STEPS`` steps: the ceiling (queued, one synchronisation)
    and the single device-loader step (synchronised after each)."""
    jax = accel._jax()
    import numpy as np

    resident = jax.device_put((model.x0, model.cond, model.alpha_bar))
    ceiling = ceiling_step_fn(model, batch=batch)
    single = accel.train_step_fn(model, loader="device", batch=batch)
    fresh = lambda: jax.tree.map(lambda a: a.copy(), model.state)  # noqa: E731 - the steps donate their state
    held: dict[str, Any] = {"c": (fresh(), ceiling_key()), "s": fresh(), "i": 0}

    def run_ceiling(n: int = PROFILED_STEPS) -> None:
        state, key = held["c"]
        for _ in range(n):
            _, state, key = ceiling(state, key, *resident)
        held["c"] = jax.block_until_ready((state, key))

    def run_single(n: int = PROFILED_STEPS) -> None:
        for _ in range(n):
            loss, held["s"] = single(held["s"], np.int32(held["i"]), *resident)
            held["i"] += 1
            jax.block_until_ready(loss)

    run_ceiling(3)  # compile and warm up outside the trace
    run_single(3)
    return {"ceiling": run_ceiling, "single step": run_single}


def hlo_census(fn: Any, *args: Any) -> dict[str, Any]:
    """Ops of one jitted call: the lowered program's ops by name (before XLA optimizes it) and
    the optimized entry computation's instructions that launch work (fusions, library calls,
    copies): the kernels one call queues, but for those inside loops."""
    lowered = fn.lower(*args)
    before = Counter(re.findall(r"(?:stablehlo|mhlo|chlo)\.([a-z_]+)", lowered.as_text()))
    text = lowered.compile().as_text()
    entry = text[text.index("ENTRY") :] if "ENTRY" in text else text
    entry = entry[: entry.find("\n}")]
    ops = Counter(
        m.group(1)
        for m in re.finditer(r"=\s*[^\s]+(?:\s*\{[^}]*\})?\s+([a-z][a-z0-9-]*)\(", entry)
        if m.group(1) not in NO_KERNEL
    )
    return {
        "lowered_ops": sum(before.values()),
        "lowered_converts": before.get("convert", 0),
        "entry_kernels": sum(ops.values()),
        "entry_ops": dict(ops.most_common()),
    }


def census(model: accel.Model, batch: int) -> dict[str, Any]:
    """``hlo_census`` of the single device-loader step at ``batch``."""
    jax = accel._jax()
    import numpy as np

    step = accel.train_step_fn(model, loader="device", batch=batch)
    state = jax.tree.map(lambda a: a.copy(), model.state)
    resident = jax.device_put((model.x0, model.cond, model.alpha_bar))
    return hlo_census(step, state, np.int32(0), *resident)


def kernel_profile(run: Callable[[], Any], steps: int, log_dir: Path) -> dict[str, Any]:
    """``summarise_trace`` of a profiler trace of ``run()`` (which runs ``steps`` steps and
    synchronises). Raises what the profiler raises where it cannot trace."""
    jax = accel._jax()
    with jax.profiler.trace(str(log_dir), create_perfetto_trace=True):
        run()
    path = next(log_dir.rglob("perfetto_trace.json.gz"))
    with gzip.open(path, "rt") as f:
        return summarise_trace(json.load(f), steps)


MATMUL_KERNEL = re.compile(r"gemm|cublas|cutlass|xmma|nvjet|wgmma|gemv", re.IGNORECASE)


def summarise_trace(trace: dict[str, Any], steps: int, top: int = 15) -> dict[str, Any]:
    """The GPU kernels of a Chrome/Perfetto trace (the events on a device's ``Stream`` lines):
    per step their count, summed time and the span from first start to last end, the matmul
    kernels' share of the time, and the ``top`` kernels by time."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    meta = [e for e in events if e.get("ph") == "M"]
    devices = {e["pid"] for e in meta if e.get("name") == "process_name" and "GPU" in e["args"].get("name", "")}
    streams = {
        (e["pid"], e["tid"])
        for e in meta
        if e.get("name") == "thread_name" and e.get("pid") in devices and "Stream" in e["args"].get("name", "")
    }
    kernels = [e for e in events if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in streams]
    if not kernels:
        return {"kernels_per_step": 0, "note": "no kernel events on a GPU stream in the trace"}
    by_name: dict[str, list[float]] = {}
    for e in kernels:
        by_name.setdefault(e["name"], []).append(float(e["dur"]))
    busy = sum(sum(v) for v in by_name.values())
    matmul = sum(sum(v) for n, v in by_name.items() if MATMUL_KERNEL.search(n))
    span = max(e["ts"] + e["dur"] for e in kernels) - min(e["ts"] for e in kernels)
    ranked = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {
        "steps": steps,
        "kernels_per_step": len(kernels) / steps,
        "busy_us_per_step": busy / steps,
        "span_us_per_step": span / steps,
        "matmul_share_of_busy": matmul / busy if busy else 0.0,
        "top": [{"name": n[:120], "calls": len(v), "us_per_step": sum(v) / steps} for n, v in ranked],
    }
