"""A fresh process that measures one job: ``python -m bench.worker JOB_JSON OUT_JSON``.

Fresh processes keep thread pools, allocator state, caches and peak memory of one
measurement from leaking into the next.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from diffusion.cli import quiet_frameworks, write_json_atomic


def main(argv: list[str]) -> int:
    job_json, out = argv
    quiet_frameworks()
    from bench.measure import Job, run_job

    data = json.loads(job_json)
    data["phases"] = tuple(data["phases"])
    write_json_atomic(Path(out), run_job(Job(**data)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
