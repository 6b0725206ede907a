"""Plans and runs measurements: fresh worker processes, rounds, randomised order within a round.

Order effects are real here (the same configuration has run 2x faster later in a process),
so every job runs in its own process, and base, candidate and ablations are interleaved in a
new random order each round.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure import Job
from diffusion.paths import KNOB_PHASE, MEASURED_PHASES, TrainingPath, format_path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Role:
    """One measured variant and why it is in the plan.

    Attributes:
        name: the key of its records ("base", "candidate", "base+loader", ...); for display.
        path: the knobs it trains with.
        phases: the phases it measures (an ablation only the phase its knob changes).
        reference: the role it is judged against, or None for base and candidate themselves.
        knobs: the knobs it changes relative to its reference.
    """

    name: str
    path: TrainingPath
    phases: tuple[str, ...]
    reference: str | None = None
    knobs: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        return format_path(self.path)

    def record(self) -> dict[str, Any]:
        """The JSON form kept in results, so a saved run knows what each role was."""
        return {
            "name": self.name,
            "spec": self.spec,
            "phases": list(self.phases),
            "reference": self.reference,
            "knobs": list(self.knobs),
        }


def differing_knobs(base: TrainingPath, candidate: TrainingPath) -> list[str]:
    return [k for k in KNOB_PHASE if getattr(base, k) != getattr(candidate, k)]


def ablation_roles(base: TrainingPath, candidate: TrainingPath, *, both_ways: bool = False) -> list[Role]:
    """One-factor variants: base with one knob set to the candidate's value (and, with
    ``both_ways``, the candidate with one knob set back), plus XLA beyond the seed."""
    roles = []
    for knob in (k for k in differing_knobs(base, candidate) if KNOB_PHASE[k] in MEASURED_PHASES):
        phase = (KNOB_PHASE[knob],)
        forward = dataclasses.replace(base, **{knob: getattr(candidate, knob)})
        roles.append(Role(f"base+{knob}", forward, phase, "base", (knob,)))
        if both_ways:
            back = dataclasses.replace(candidate, **{knob: getattr(base, knob)})
            roles.append(Role(f"candidate-{knob}", back, phase, "candidate", (knob,)))
    if candidate.train_compile != "xla":
        xla = dataclasses.replace(candidate, train_compile="xla", val_compile="xla")
        roles.append(Role("candidate+xla", xla, ("validate", "train"), "candidate", ("train_compile", "val_compile")))
    return roles


def plan_roles(
    base: TrainingPath, candidate: TrainingPath, *, ablations: bool = True, both_ways: bool = False
) -> list[Role]:
    roles = [Role("base", base, ("validate", "train")), Role("candidate", candidate, ("validate", "train"))]
    return roles + (ablation_roles(base, candidate, both_ways=both_ways) if ablations else [])


def run_worker(job: Job, *, timeout: float = 900) -> dict[str, Any]:
    """Measure one job in a fresh Python process; a failure comes back as {'error': ...}."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        out = Path(tmp) / "record.json"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        payload = json.dumps(dataclasses.asdict(job))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.worker", payload, str(out)],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"worker timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
            return {"error": f"worker exited {proc.returncode}: {tail[0]}"}
        return json.loads(out.read_text())


Runner = Callable[[Job], dict[str, Any]]
OnJob = Callable[[int, Role, dict[str, Any]], None]


def run_rounds(
    roles: list[Role],
    preset: str,
    rounds: int,
    *,
    job_options: dict[str, Any] | None = None,
    disk_roles: tuple[str, ...] = ("base", "candidate"),
    seed: int = 0,
    runner: Runner = run_worker,
    on_job: OnJob | None = None,
) -> list[dict[str, Any]]:
    """Run every role once per round, in a fresh random order each round.

    Disk use (logs and checkpoints of a short fit) is deterministic, so it is measured once,
    in the first round, for ``disk_roles``.

    Returns:
        One record per (round, role), each with ``round`` and ``role`` added.
    """
    rng = np.random.default_rng(seed)
    records = []
    for r in range(rounds):
        for i in rng.permutation(len(roles)):
            role = roles[i]
            job = Job(
                role.spec, preset, role.phases, fit_disk=(r == 0 and role.name in disk_roles), **(job_options or {})
            )
            record = {**runner(job), "round": r, "role": role.name, "spec": role.spec}
            records.append(record)
            if on_job is not None:
                on_job(r, role, record)
    return records
