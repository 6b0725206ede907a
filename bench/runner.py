"""Plans and runs measurements: fresh worker processes, rounds, randomised order within a round.

Order effects are real here (the same configuration has run 2x faster later in a process),
so every job runs in its own process, and base, candidate and ablations are interleaved in a
new random order each round. A role may run from another code tree (a git ref checked out
into a temp directory): that is how the gate measures a base commit against the working tree
on the same machine in the same run. ``run_plan`` is the one entry point that compare and the
gate share.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.measure import Job
from diffusion.errors import ConfigError
from diffusion.paths import KNOB_PHASE, MEASURED_PHASES, TrainingPath, format_path
from diffusion.presets import get_preset

if TYPE_CHECKING:
    from bench.turns import Starter


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


def job_payload(job: Job) -> str:
    """The job as a worker receives it. Unset options stay out, so a worker of an older tree
    (the gate's REF) that predates an option still reads the job."""
    return json.dumps({k: v for k, v in dataclasses.asdict(job).items() if v is not None})


def role_job(role: Role, preset: str, options: Mapping[str, Any], **extra: Any) -> Job:
    """The job a role's worker runs: its spec and phases, the plan's options, its cores."""
    return Job(role.spec, preset, role.phases, **{**options, **extra, **({"cpus": role.cpus} if role.cpus else {})})


def tagged(record: dict[str, Any], round_id: int, role: Role) -> dict[str, Any]:
    """A worker's record with the round, role, spec and (for another tree) tree it belongs to."""
    out = {**record, "round": round_id, "role": role.name, "spec": role.spec}
    if role.tree is not None:
        out["tree"] = role.tree.record()
    return out


def run_worker(job: Job, root: Path = ROOT, *, timeout: float = 900) -> dict[str, Any]:
    """Measure one job in a fresh Python process running the code under ``root``; a failure
    comes back as {'error': ...}."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        out = Path(tmp) / "record.json"
        payload = job_payload(job)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.worker", payload, str(out)],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=tree_env(root),
                cwd=root,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"worker timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            return {"error": failure("worker", proc) if proc.returncode != 0 else "worker wrote no record"}
        return json.loads(out.read_text())


Runner = Callable[[Job, Path], dict[str, Any]]
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
    done: Mapping[tuple[int, str], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run every role once per round, in a fresh random order each round.

    Disk use (logs and checkpoints of a short fit) is deterministic, so it is measured once,
    in the first round, for ``disk_roles``. Each round draws its order from its own generator
    (``seed``, round), so a resumed run measures its remaining jobs as the uncut run would have.

    Args:
        done: records of finished jobs, keyed (round, role name), from a cut run: each is
            reused as it is, not run again and not passed to ``on_job``.

    Returns:
        One record per (round, role), each with ``round`` and ``role`` added, in the order
        the jobs ran (or would have).
    """
    done = done or {}
    records = []
    for r in range(rounds):
        for i in np.random.default_rng([seed, r]).permutation(len(roles)):
            role = roles[i]
            if (r, role.name) in done:
                records.append(done[r, role.name])
                continue
            job = role_job(role, preset, job_options or {}, fit_disk=(r == 0 and role.name in disk_roles))
            record = tagged(runner(job, role.root), r, role)
            records.append(record)
            if on_job is not None:
                on_job(r, role, record)
    return records


@dataclass(frozen=True)
class Plan:
    """A comparison plan: which roles, how many interleaved rounds, and what each job measures.

    Attributes:
        roles: the variants; names must be unique (records are keyed by them).
        preset: preset name.
        rounds: every role runs once per round, in a fresh random order.
        job_options: extra ``Job`` fields for every job (``train_seconds``, ``val_passes``...).
        seed: the order of jobs within rounds.
        disk_roles: roles whose disk use is measured once, in the first round.
        turn_seconds: None: every job is a whole worker of its own, one after the other.
            Else every round's roles run in live workers side by side, taking turns of at
            least this many seconds (``run_turns``): the gate's mode, which pairs each side's
            time with the other's.
        freeze: with ``turn_seconds``, only the worker whose turn it is runs; the others are
            stopped (bench/turns.py: ``turn_round``), so none banks work while idle.
        warm_together: frozen, the workers' warm-ups run side by side instead of alone.
    """

    roles: tuple[Role, ...]
    preset: str
    rounds: int
    job_options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    disk_roles: tuple[str, ...] = ()
    turn_seconds: float | None = None
    freeze: bool = False
    warm_together: bool = False

    def __post_init__(self) -> None:
        get_preset(self.preset)
        turns = self.turn_seconds
        if turns is not None and (isinstance(turns, bool) or not isinstance(turns, (int, float)) or not 0 < turns < 60):
            raise ConfigError(f"`turn_seconds` must be a number of seconds in (0, 60) or None, but got {turns!r}.")
        if turns is not None and self.disk_roles:
            raise ConfigError("`disk_roles` need whole-process jobs; a plan with `turn_seconds` measures no disk use.")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError(f"`rounds` must be an integer of at least 1, but got {self.rounds!r}.")
        names = [r.name for r in self.roles]
        if len(set(names)) != len(names) or not names:
            raise ConfigError(f"`roles` must have unique names, at least one, but got {names}.")
        unknown = set(self.job_options) - {f.name for f in dataclasses.fields(Job)}
        if unknown:
            raise ConfigError(f"`job_options` must be Job fields, but got {sorted(unknown)}.")

    def record(self) -> dict[str, Any]:
        return {
            "roles": [r.record() for r in self.roles],
            "preset": self.preset,
            "rounds": self.rounds,
            "job_options": dict(self.job_options),
            "seed": self.seed,
            "turn_seconds": self.turn_seconds,
            "freeze": self.freeze,
            "warm_together": self.warm_together,
        }


def run_plan(
    plan: Plan,
    *,
    runner: Runner = run_worker,
    start: Starter | None = None,
    on_job: OnJob | None = None,
    done: Mapping[tuple[int, str], dict[str, Any]] | None = None,
    more: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Run a plan: every role once per round in fresh workers, from its own code tree, one
    after the other or (``turn_seconds``) side by side, taking turns.

    Args:
        done: records of finished jobs, keyed (round, role name), from a cut run
            (``bench.partial``): reused, not run again and not passed to ``on_job``. With
            turns, a round is reused only whole (its roles' times belong together).
        more: with turns, asked after every round but the last; False stops the rounds
            (bench/turns.py: ``run_turns``).

    Returns:
        One record per (round, role), with ``round``, ``role``, ``spec`` and (for a role from
        another tree) ``tree`` added; a failed worker's record holds ``error``.
    """
    if plan.turn_seconds is not None:
        from bench.turns import TurnWorker, run_turns

        return run_turns(
            list(plan.roles),
            plan.preset,
            plan.rounds,
            plan.turn_seconds,
            job_options=dict(plan.job_options),
            seed=plan.seed,
            start=start or TurnWorker,
            freeze=plan.freeze,
            warm_together=plan.warm_together,
            on_job=on_job,
            done=done,
            more=more,
        )
    return run_rounds(
        list(plan.roles),
        plan.preset,
        plan.rounds,
        job_options=dict(plan.job_options),
        disk_roles=plan.disk_roles,
        seed=plan.seed,
        runner=runner,
        on_job=on_job,
        done=done,
    )
