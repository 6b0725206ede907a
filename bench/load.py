"""A defined background load, for calibrating the gate on a busy machine.

``python -m bench.load --duty 0.5`` keeps one core busy half the time: it spins for a stretch
(of CPU time), sleeps for a stretch, and so on until it is stopped (or its parent dies). Each stretch is drawn
uniformly from 0.2-1.8 times its mean (``duty`` and ``1 - duty`` of ``--period-ms``), so the
load never locks into step with the gate's 50 ms turns, and the draws are seeded, so a
calibration names the load it ran under exactly. ``bench.calibrate --background-load`` runs it
beside a whole calibration (``Load``) and records what share of a core it really took.

Why this load: a CI runner shares its cores with other jobs that come and go; one core's worth
of work that starts and stops every few tens of milliseconds is the busy machine the issue
measured (load average 3-6) brought to a size that can be committed and repeated.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from diffusion.cli import SEED, Parser, bounded, run

# Mean length of one spin plus one sleep: a few of the gate's 50 ms turns.
PERIOD_MS = 100.0
JITTER = (0.2, 1.8)


def stretches(duty: float, period_s: float, seed: int) -> Any:
    """Endless (spin, sleep) lengths in seconds, with means ``duty`` and ``1 - duty`` of
    ``period_s`` (pure: the same seed gives the same load)."""
    draw = random.Random(seed)
    while True:
        yield duty * period_s * draw.uniform(*JITTER), (1 - duty) * period_s * draw.uniform(*JITTER)


def burn(duty: float, period_s: float, seed: int, until: float = float("inf")) -> None:
    """Spin and sleep by ``stretches`` until ``time.monotonic()`` passes ``until``.

    A spin lasts its length in CPU time, not wall time: on a busy machine a spin that is
    preempted still does its share of work, so the load takes ``duty`` of a core wherever it can.
    """
    for spin, sleep in stretches(duty, period_s, seed):
        end = time.process_time() + spin
        while time.process_time() < end:
            pass
        time.sleep(sleep)
        if time.monotonic() >= until:
            return


@dataclass(frozen=True)
class LoadPlan:
    """A background load: ``cores`` processes, each busy ``duty`` of the time."""

    duty: float
    cores: int = 1
    period_ms: float = PERIOD_MS
    seed: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "duty": self.duty,
            "cores": self.cores,
            "period_ms": self.period_ms,
            "seed": self.seed,
            "stretch_jitter": list(JITTER),
            "what": f"{self.cores} process(es), each spinning {self.duty:.0%} of the time in stretches of "
            f"{JITTER[0]:g}-{JITTER[1]:g} x their mean (period {self.period_ms:g} ms), python -m bench.load",
        }


class Load:
    """The load of ``plan`` running beside a block; ``measured()`` is the share of a core each
    of its processes really took (CPU seconds over wall seconds), for the record."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0.0
        self.shares: list[float] = []

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for i in range(self.plan.cores):
            command = [sys.executable, "-m", "bench.load", "--duty", repr(self.plan.duty)]
            command += ["--period-ms", repr(self.plan.period_ms), "--seed", str(self.plan.seed + i)]
            command += ["--parent", str(os.getpid())]
            self.procs.append(subprocess.Popen(command, stdin=subprocess.DEVNULL))
        return self

    def measured(self) -> list[float]:
        """Each process's CPU share so far (of one core)."""
        import psutil

        wall = max(time.monotonic() - self.started, 1e-9)
        shares = []
        for proc in self.procs:
            try:
                times = psutil.Process(proc.pid).cpu_times()
                shares.append((times.user + times.system) / wall)
            except psutil.NoSuchProcess:
                shares.append(float("nan"))
        return shares

    def __exit__(self, *exc: object) -> None:
        self.shares = self.measured()
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duty", type=bounded(float, positive=True, high=1.0), default=0.5, help="busy share, in (0, 1] (default 0.5)"
    )
    parser.add_argument(
        "--period-ms",
        type=bounded(float, low=1.0, high=10_000.0),
        default=PERIOD_MS,
        help=f"mean spin plus sleep, in ms (default {PERIOD_MS:g})",
    )
    parser.add_argument("--seed", type=SEED, default=0, help="seed of the stretches' lengths (default 0)")
    parser.add_argument(
        "--seconds",
        type=bounded(float, positive=True, high=86_400.0, why=" (a day)"),
        help="stop after this long (default: run until stopped)",
    )
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # die with this process
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.parent is not None:
        from bench.swarm_trial import die_with_parent

        die_with_parent(args.parent)
    until = time.monotonic() + args.seconds if args.seconds else float("inf")
    try:
        burn(args.duty, args.period_ms / 1000, args.seed, until)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    run(main)
