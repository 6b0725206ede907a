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
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.measure import Job
from bench.roles import ROOT, OnJob, Role, failure, job_payload, role_job, tagged, tree_env
from diffusion.errors import ConfigError
from diffusion.presets import Preset

if TYPE_CHECKING:
    from bench.turns import Starter


def run_worker(job: Job, root: Path = ROOT, *, timeout: float = 900) -> dict[str, Any]:
    """Measure one job in a fresh Python process running the code under ``root``; a failure
    comes back as {'error': ...}."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        out = Path(tmp) / "record.json"
        payload = job_payload(job, root)
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


def run_rounds(
    roles: list[Role],
    preset: Preset,
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
        preset: the data and model of every job.
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
        val_in_turns: with ``turn_seconds``, a validation pass spreads over turns of that
            length, as training does, instead of taking one turn whole (the gate's mode).
    """

    roles: tuple[Role, ...]
    preset: Preset
    rounds: int
    job_options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    disk_roles: tuple[str, ...] = ()
    turn_seconds: float | None = None
    freeze: bool = False
    warm_together: bool = False
    val_in_turns: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.preset, Preset):  # a name is looked up where it enters, not here
            raise TypeError(f"`preset` must be a Preset, but got {self.preset!r}.")
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
            "preset": self.preset.name,
            "rounds": self.rounds,
            "job_options": dict(self.job_options),
            "seed": self.seed,
            "turn_seconds": self.turn_seconds,
            "freeze": self.freeze,
            "warm_together": self.warm_together,
            "val_in_turns": self.val_in_turns,
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
            val_turn_seconds=plan.turn_seconds if plan.val_in_turns else None,
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
