"""A fresh process that measures one job.

``python -m bench.worker JOB_JSON OUT_JSON`` measures the job's phases one after the other
and writes the record. ``python -m bench.worker --turns JOB_JSON`` takes turns instead: it
sets up, says ``{"ready": true, "protocol": TURNS_PROTOCOL}`` on stdout, then answers one JSON request per stdin line
(``{"turn": "warm"}``: the first traced pass and steps, optional, else done before the first
turn; ``{"turn": "validate"}``, a whole pass, or ``{"turn": "validate", "seconds": S}``, the
pass's next batches; ``{"turn": "train", "seconds": S}``, ``{"turn": "finish"}``)
with one JSON line, the last one ``{"record": ...}`` (bench/turns.py drives it).

Fresh processes keep thread pools, allocator state, caches and peak memory of one
measurement from leaking into the next.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from diffusion.cli import quiet_frameworks
from diffusion.files import json_line, write_json_atomic

if TYPE_CHECKING:
    from bench.measure import Job

# The turn protocol's version: the gate checks that a REF tree's worker speaks the same one.
TURNS_PROTOCOL = 1


# The pools sized to the pinned cores (TensorFlow, OpenMP, MKL, XLA's CPU client): pin() sets
# them and thread_census() reports them.
SIZED_POOLS = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PJRT_NPROC")


def pin(cpus: int) -> None:
    """Run on the first ``cpus`` usable cores, with thread pools to match. Must happen before
    TensorFlow or JAX load: they size their pools once, from these variables and the affinity.

    XLA's CPU client (JAX) reads none of TensorFlow's, OpenMP's or MKL's variables: it sizes its
    Eigen and dispatch pools from ``PJRT_NPROC`` (or ``NPROC``), else from the cores it may run
    on, so ``PJRT_NPROC`` states the size rather than leaving it to how XLA reads the affinity.
    """
    cores = sorted(os.sched_getaffinity(0))
    if not 1 <= cpus <= len(cores):
        raise SystemExit(f"`cpus` must be between 1 and {len(cores)}, but got {cpus}.")
    os.sched_setaffinity(0, cores[:cpus])
    for name in SIZED_POOLS:
        os.environ[name] = str(cpus)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(min(cpus, 2))


def thread_census() -> dict[str, Any]:
    """This process's threads now, by name with trailing digits dropped (``XLAEigen``, ...), the
    cores it may run on and the pool sizes it asked for: what a pinned worker really started.

    Reads ``/proc/self/task`` (Linux); elsewhere the counts are empty.
    """
    names: Counter[str] = Counter()
    task_dir = Path("/proc/self/task")
    for task in task_dir.iterdir() if task_dir.is_dir() else ():
        try:
            names[(task / "comm").read_text().strip().rstrip("0123456789_-")] += 1
        except OSError:  # the thread ended while we looked
            continue
    return {
        "count": sum(names.values()),
        "by_name": dict(sorted(names.items())),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "pools": {name: os.environ.get(name) for name in SIZED_POOLS},
    }


def load_job(job_json: str) -> Job:
    """The job a worker was sent, with the process pinned first if it asks for cores."""
    data = json.loads(job_json)
    if data.get("cpus"):
        pin(int(data["cpus"]))
    quiet_frameworks()
    from bench.measure import Job

    return Job.from_payload(data)


def protocol_stream() -> TextIO:
    """This process's stdout for protocol lines only: fd 1 is pointed at stderr, so anything a
    library prints (Python or C) cannot land between two requests' answers."""
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    return stream


def leave() -> NoReturn:
    """Exit now that the record is out, without tearing the frameworks down: closing a
    prefetching tf.data stream took 3-9 s at seed (a round's finish, 8 workers one after the
    other, took 62 s), and nothing of this process is read after its record."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def take_turns(job_json: str) -> int:
    out = protocol_stream()
    job = load_job(job_json)  # pins before anything that could load a framework
    from bench.measure import TurnTaker

    taker = TurnTaker(job)

    def say(message: dict[str, Any]) -> None:
        out.write(json_line(message) + "\n")

    say({"ready": True, "protocol": TURNS_PROTOCOL})
    for line in sys.stdin:
        request = json.loads(line)
        turn = request.get("turn")
        if turn == "warm":
            say(taker.warm_up())
        elif turn == "validate":
            say(taker.validate(request.get("seconds")))
        elif turn == "train":
            say(taker.train(float(request["seconds"])))
        elif turn == "finish":
            say({"record": {**taker.record(close=False), "threads": thread_census()}})
            out.flush()
            leave()
        else:
            raise SystemExit(f"unknown turn {turn!r}; valid turns: warm, validate, train, finish.")
    raise SystemExit("stdin closed before the finish turn.")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--turns"]:
        return take_turns(argv[1])
    job_json, out = argv
    from bench.measure import run_job

    record = run_job(load_job(job_json), close=False)
    write_json_atomic(Path(out), {**record, "threads": thread_census()})  # the pools exist by now
    leave()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
