"""Roles: the measured variants of a plan, the code trees they run from, and the job a role's
worker is sent. bench/runner.py runs roles one after the other, bench/turns.py side by side;
both build on this module, and neither on the other's internals."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import Job
from diffusion.paths import KNOB_PHASE, MEASURED_PHASES, TrainingPath, format_path
from diffusion.presets import Preset


def failure(what: str, proc: subprocess.CompletedProcess) -> str:
    """Why a child process failed, in one line: the signal that killed it (a crash prints no
    error of its own), or its exit status and last non-empty stderr line."""
    import signal

    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return f"{what} killed by {name}"
    tail = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()][-1:] or ["no output"]
    return f"{what} exited {proc.returncode}: {tail[0]}"


ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CodeTree:
    """A directory holding the project's code at some commit, that workers run from.

    Attributes:
        root: the directory (``bench/`` and ``diffusion/`` are below it).
        label: how reports name it ("REF main", "HEAD").
        commit: the commit its files come from, with "+uncommitted" if they differ from it.
    """

    root: Path
    label: str
    commit: str | None

    def record(self) -> dict[str, Any]:
        return {"root": str(self.root), "label": self.label, "commit": self.commit}


@dataclass(frozen=True)
class Role:
    """One measured variant and why it is in the plan.

    Attributes:
        name: the key of its records ("base", "candidate", "base+loader", ...); for display.
        path: the knobs it trains with.
        phases: the phases it measures (an ablation only the phase its knob changes).
        reference: the role it is judged against, or None for base and candidate themselves.
        knobs: the knobs it changes relative to its reference.
        tree: the code it runs from; None for this checkout.
        cpus: pin its workers to this many cores (the scaling suite); None: all usable cores.
    """

    name: str
    path: TrainingPath
    phases: tuple[str, ...]
    reference: str | None = None
    knobs: tuple[str, ...] = ()
    tree: CodeTree | None = None
    cpus: int | None = None

    @property
    def root(self) -> Path:
        return self.tree.root if self.tree is not None else ROOT

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
            "tree": self.tree.record() if self.tree is not None else None,
            "cpus": self.cpus,
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


def tree_env(root: Path) -> dict[str, str]:
    """This process's environment with ``root`` first on PYTHONPATH and this checkout removed
    (else a module that ``root`` lacks would silently come from this checkout)."""
    env = dict(os.environ)
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    env["PYTHONPATH"] = os.pathsep.join([str(root), *inherited])
    return env


def job_payload(job: Job, root: Path = ROOT) -> str:
    """The job as a worker running the code under ``root`` receives it: the path as its knobs
    for this checkout's worker, as its spec for another tree's (``Job.payload``)."""
    return json.dumps(job.payload(as_spec=root.resolve() != ROOT))


def role_job(role: Role, preset: Preset, options: Mapping[str, Any], **extra: Any) -> Job:
    """The job a role's worker runs: its path and phases, the plan's options, its cores."""
    return Job(role.path, preset, role.phases, **{**options, **extra, **({"cpus": role.cpus} if role.cpus else {})})


def tagged(record: dict[str, Any], round_id: int, role: Role) -> dict[str, Any]:
    """A worker's record with the round, role, spec and (for another tree) tree it belongs to."""
    out = {**record, "round": round_id, "role": role.name, "spec": role.spec}
    if role.tree is not None:
        out["tree"] = role.tree.record()
    return out


OnJob = Callable[[int, Role, dict[str, Any]], None]
