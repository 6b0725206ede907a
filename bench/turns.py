"""Turns: the roles of a round live side by side as worker processes and take turns.

Whole worker processes one after the other see a machine that drifts over seconds (other
tenants, the host: 20-40% slow stretches, measured); live workers that alternate every
``turn_seconds`` spread every side's time over the same seconds, so the drift falls on all of
them. bench/runner.py's ``run_plan`` runs a plan this way when it has ``turn_seconds``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bench.measure import Job
from bench.roles import ROOT, OnJob, Role, failure, job_payload, role_job, tagged, tree_env
from diffusion.presets import Preset


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux's ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, resolved here, in the parent, so that the
    child runs only the call between fork and exec; None where there is no prctl."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None
    set_pdeathsig, kill = 1, ctypes.c_ulong(signal.SIGKILL)  # PR_SET_PDEATHSIG, <linux/prctl.h>

    def die_with_parent() -> None:
        # A failing call (-1) leaves the worker as it was without: nothing to report from here.
        prctl(set_pdeathsig, kill)

    return die_with_parent


# A worker dies with the process that started it. A frozen worker (SIGSTOP) acts on no SIGTERM
# until it is thawed, and in a session of its own it gets no terminal's signals: when a run of
# the main job was killed, 7 of them stayed stopped for good, each holding ~1-2 GB. The signal
# fires when the thread that started the worker ends: rounds start theirs from the thread that
# runs the round, which closes them before it returns. It is not inherited: a process that a
# worker starts (none today) would need its own. A preexec_fn makes each start a full fork (no
# vfork) and runs in the child after CPython's after-fork reset; the one ctypes call takes no
# lock that the parent's other threads (watchdog timers, a progress bar's refresh) might hold.
DIE_WITH_PARENT = _parent_death_signal()


class WorkerFailed(Exception):
    """A turn-taking worker died, stopped answering, or answered something else."""


class TurnWorker:
    """A live worker process taking turns (``python -m bench.worker --turns``), from ``root``'s code.

    Args:
        job: what it measures.
        root: the code tree it runs from.
        timeout: seconds any one answer may take (set-up included); then it is killed.

    The worker dies with the thread that creates it (``DIE_WITH_PARENT``): create it from a
    thread that outlives it.
    """

    def __init__(self, job: Job, root: Path = ROOT, *, timeout: float = 600) -> None:
        payload = job_payload(job, root)
        self.timeout = timeout
        # A file, not a pipe: a worker that logs a lot must never block on a full pipe.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.worker", "--turns", payload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                env=tree_env(root),
                cwd=root,
                # Its own process group, so that freezing it stops every process it started.
                start_new_session=True,
                preexec_fn=DIE_WITH_PARENT,
            )
        except (OSError, subprocess.SubprocessError):  # SubprocessError: a failing preexec_fn
            self._stderr.close()
            raise

    def freeze(self) -> None:
        """Stop every thread of the worker (and of its children) until ``thaw``: a loader or
        prefetch thread must not bank work while another role takes its turn."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def send(self, request: dict[str, Any]) -> None:
        """Send ``request`` without waiting; the next ``ask(None)`` reads its answer."""
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError:  # it has died: the next ask says why
            pass

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:  # it died in between: its next answer says why
                pass

    def ask(self, request: dict[str, Any] | None) -> dict[str, Any]:
        """Send ``request`` (None: only read, for the first ``ready``) and return the answer.

        Raises:
            WorkerFailed: with the worker's own reason (its signal, or its last stderr line),
                the answer it gave if that was not JSON, or the timeout it ran past.
        """
        # A hung worker must fail its round, not the gate: kill it after `timeout`.
        hung = threading.Event()
        watchdog = threading.Timer(self.timeout, lambda: (hung.set(), self.proc.kill()))
        watchdog.start()
        try:
            if request is not None:
                self.send(request)  # a dead worker's closed stdin reads as EOF below
            line = self.proc.stdout.readline()
        except OSError:  # its stdout is closed: it has died
            line = ""
        finally:
            watchdog.cancel()
        what = "its start-up" if request is None else json.dumps(request)
        if hung.is_set():
            self.close()
            raise WorkerFailed(f"worker gave no answer to {what} within {self.timeout:g} s")
        if line:
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                self.close()
                raise WorkerFailed(f"worker answered {what} with {line.strip()[:200]!r}, not JSON") from None
        try:  # it closed its end: let it finish exiting, so its own reason is on stderr
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self._stderr.seek(0)
        proc = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, "", self._stderr.read())
        self.close()
        raise WorkerFailed(failure("worker", proc) if proc.returncode else f"worker ended without answering {what}")

    def close(self) -> None:
        """Kill the worker (and its process group) if it still runs, reap it and close its
        pipes and stderr file."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # a frozen group dies of SIGKILL too
            except ProcessLookupError:
                pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                stream.close()
            except OSError:
                pass


class Worker(Protocol):
    """What a round needs of a turn-taking worker (``TurnWorker``; tests pass fakes)."""

    def ask(self, request: dict[str, Any] | None) -> dict[str, Any]: ...

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    def send(self, request: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Starter(Protocol):
    """Starts a turn-taking worker for a job from a code tree."""

    def __call__(self, job: Job, root: Path) -> Worker: ...


def turn_round(
    order: list[Role],
    jobs: dict[str, Job],
    turn_seconds: float,
    rng: np.random.Generator,
    start: Starter,
    *,
    freeze: bool = False,
    warm_together: bool = False,
    val_turn_seconds: float | None = None,
) -> dict[str, dict[str, Any]]:
    """One round of ``run_turns``: start the workers side by side, take turns, collect records.

    Turns go round in a fresh random order each time: first ``val_passes`` validation passes,
    a whole pass a turn, or with ``val_turn_seconds`` that long a turn, so that one pass spreads
    over many turns as training does (a whole pass of ALT at seed took 8 s of one stretch of
    the machine's drift, its 20-batch variant 3 s of another: V2's sd of log ratio per round was
    0.061 with one pass, 0.017 with the mean of two); then training turns until every worker has trained ``train_seconds`` and ``min_steps``
    (so a slow path still gets short turns, and the faster side simply trains more). When
    fewer than two workers are left, nothing could be paired, so the round ends there.

    With ``freeze``, only the worker whose turn it is runs: the others are stopped
    (``Worker.freeze``, SIGSTOP of its process group), so no background thread of theirs
    (a prefetching loader) banks work off its clock or takes CPU from the turn's owner. Set-up
    (imports, data, model; not a claim's figure) runs side by side, each worker frozen once it
    is ready; then each worker's first (traced) pass and steps run alone (the ``warm`` turn),
    so the compile times beside the verdicts are timed without a neighbour; with
    ``warm_together`` they run side by side as well (on a GPU machine with many cores, where
    JAX compiles an eager step op by op for tens of seconds and serial warm-ups took 130 s of a
    182 s round), and the compile times are read as such. A worker that has trained enough sits
    out the remaining training turns. Without ``freeze`` (the gate's calibrated mode) the
    workers start side by side, idle ones stay alive, and every one trains until all have.

    Every record gets the round's ``stages_s``: the wall seconds of its set-up, warm-ups,
    validation turns, training turns and finish, which say where a budget's time goes.
    """
    live: dict[str, Worker] = {}
    done: dict[str, dict[str, Any]] = {}
    stages: dict[str, float] = {}
    last = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal last
        now = time.perf_counter()
        stages[stage] = stages.get(stage, 0.0) + now - last
        last = now

    def ask(name: str, request: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            if freeze and request is not None:
                live[name].thaw()
            answer = live[name].ask(request)
            if freeze and request is not None and request["turn"] != "finish":
                live[name].freeze()
            return answer
        except WorkerFailed as exc:
            live.pop(name).close()
            done[name] = {"error": str(exc)}
            return None

    def go_round(phase: str, request: dict[str, Any]) -> None:
        for i in rng.permutation(len(order)):
            name = order[i].name
            # Frozen, a worker that has trained enough sits out the rest: the others' turns
            # still alternate, and a slow path's extra steps would only cost time.
            done_training = freeze and phase == "train" and not short(name)
            done_validating = freeze and phase == "validate" and validated[name] >= jobs[name].val_passes
            if name in live and phase in jobs[name].phases and not (done_training or done_validating):
                answer = ask(name, request)
                if answer is not None and phase == "train":
                    trained[name] = (trained[name][0] + answer["steps"], trained[name][1] + answer["seconds"])
                elif answer is not None:
                    validated[name] = answer.get("passes", validated[name] + 1)  # an older tree's worker

    def validating(name: str) -> bool:
        return "validate" in jobs[name].phases and validated[name] < jobs[name].val_passes

    def short(name: str) -> bool:
        steps, seconds = trained[name]
        return seconds < jobs[name].train_seconds or steps < jobs[name].min_steps

    trained = {name: (0, 0.0) for name in jobs}
    validated = dict.fromkeys(jobs, 0)
    paired = min(2, len(order))
    try:
        if freeze:
            for role in order:
                live[role.name] = start(jobs[role.name], role.root)
            for role in order:  # set-up runs side by side; each is frozen once it is ready
                if ask(role.name, None) is not None:
                    live[role.name].freeze()
            lap("setup")
            for role in order:  # the first (traced) pass and steps, alone unless asked otherwise
                if role.name in live:
                    if warm_together:
                        live[role.name].thaw()
                        live[role.name].send({"turn": "warm"})
                    else:
                        ask(role.name, {"turn": "warm"})
            if warm_together:
                for role in order:
                    if role.name in live:
                        ask(role.name, None)  # its answer to the warm turn sent above
                        if role.name in live:
                            live[role.name].freeze()
            lap("warm")
        else:
            for role in order:
                live[role.name] = start(jobs[role.name], role.root)
            for role in order:
                ask(role.name, None)
            lap("setup")
        if val_turn_seconds is None:
            for _ in range(max(job.val_passes for job in jobs.values())):
                if len(live) >= paired:
                    go_round("validate", {"turn": "validate"})
        else:
            turn = {"turn": "validate", "seconds": val_turn_seconds}
            while len(live) >= paired and any(validating(n) for n in live):
                go_round("validate", turn)
        lap("validate")
        train = {"turn": "train", "seconds": turn_seconds}
        while len(live) >= paired and any(short(n) for n in live if "train" in jobs[n].phases):
            go_round("train", train)
        lap("train")
        for name in list(live):
            answer = ask(name, {"turn": "finish"})
            if answer is not None:
                done[name] = answer["record"] if "record" in answer else {"error": "worker sent no record"}
    finally:
        for worker in live.values():
            worker.close()
        lap("finish")
    return {name: {**record, "stages_s": dict(stages)} for name, record in done.items()}


def run_turns(
    roles: list[Role],
    preset: Preset,
    rounds: int,
    turn_seconds: float,
    *,
    job_options: dict[str, Any] | None = None,
    seed: int = 0,
    start: Starter = TurnWorker,
    on_job: OnJob | None = None,
    freeze: bool = False,
    warm_together: bool = False,
    val_turn_seconds: float | None = None,
    done: Mapping[tuple[int, str], dict[str, Any]] | None = None,
    more: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Every round, start one fresh worker per role and let them take turns (``turn_round``).

    A worker that fails drops out of its round with an ``error`` record. Each round draws its
    order from its own generator (``seed``, round), so a resumed run measures its remaining
    rounds exactly as the uncut run would have.

    Args:
        done: records of finished rounds, keyed (round, role name), from a cut run: a round
            whose every role is there is reused as it is (and not passed to ``on_job``); a
            round only partly there is measured again whole, as its roles belong together.
        freeze, warm_together, val_turn_seconds: only the worker taking its turn runs,
            warm-ups alone or side by side, validation a whole pass a turn or spread over turns
            (``turn_round``).
        more: called with all records so far after every round; False stops before
            ``rounds`` (a sequential rule that has decided, or a spent budget).

    Returns:
        One record per (round, role), with ``round``, ``role``, ``spec`` and ``tree`` as
        ``run_rounds`` gives them.
    """
    done = done or {}
    records: list[dict[str, Any]] = []
    for r in range(rounds):
        if all((r, role.name) in done for role in roles):
            records.extend(done[r, role.name] for role in roles)
        else:
            rng = np.random.default_rng([seed, r])
            order = [roles[i] for i in rng.permutation(len(roles))]
            jobs = {role.name: role_job(role, preset, job_options or {}) for role in order}
            measured = turn_round(
                order,
                jobs,
                turn_seconds,
                rng,
                start,
                freeze=freeze,
                warm_together=warm_together,
                val_turn_seconds=val_turn_seconds,
            )
            for role in roles:
                record = tagged(measured[role.name], r, role)
                records.append(record)
                if on_job is not None:
                    on_job(r, role, record)
        if more is not None and r + 1 < rounds and not more(records):
            break
    return records
