"""A fresh process that measures one job: ``python -m bench.worker JOB_JSON OUT_JSON``.

Fresh processes keep thread pools, allocator state, caches and peak memory of one
measurement from leaking into the next.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from diffusion.cli import quiet_frameworks, write_json_atomic


def pin(cpus: int) -> None:
    """Run on the first ``cpus`` usable cores, with thread pools to match. Must happen before
    TensorFlow or JAX load: they size their pools once, from these variables and the affinity."""
    cores = sorted(os.sched_getaffinity(0))
    if not 1 <= cpus <= len(cores):
        raise SystemExit(f"`cpus` must be between 1 and {len(cores)}, but got {cpus}.")
    os.sched_setaffinity(0, cores[:cpus])
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(cpus)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(min(cpus, 2))


def main(argv: list[str]) -> int:
    job_json, out = argv
    data = json.loads(job_json)
    if data.get("cpus"):
        pin(int(data["cpus"]))
    quiet_frameworks()
    from bench.measure import Job, run_job

    data["phases"] = tuple(data["phases"])
    write_json_atomic(Path(out), run_job(Job(**data)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
