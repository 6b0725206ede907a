"""The speed suite: V and T claims measured in frozen turns, M claims in whole processes.

Speed (validation and training, V and T) is measured in turns (bench/turns.py): every round
starts one fresh worker per role (base, candidate, every ablation), the workers take turns,
and the idle ones are frozen, so the machine's drift over seconds falls on all roles of a
round alike and no role banks work while another is timed. Rounds go on until every V/T
claim is decided, the time budget is spent or the maximum is reached (bench/sequential.py
says when it may look and at which confidence, so that stopping early keeps the coverage).

Memory, CPU and disk (M1-M4) are properties of a whole process (peak RSS, bytes written) and
not noisy: base and candidate run in whole worker processes of their own, a fixed number of
rounds, before the turns. Their records keep only those figures: speed is the turns' alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.roles import Role, plan_roles
from bench.runner import Plan, Runner, run_plan, run_worker
from bench.turns import Starter, TurnWorker
from diffusion.paths import TrainingPath
from diffusion.presets import Preset

if TYPE_CHECKING:
    from bench.partial import Partial
    from bench.sequential import Decision, Schedule

# Whole-process figures a memory job keeps; its timings are dropped (the turns measure speed).
MEMORY_KEYS = ("peak_rss_mib", "rss_growth_mib", "rss_start_mib", "rss_samples", "rss_interval_s", "rss_sampler")
MEMORY_KEYS += ("cpu_s", "wall_s", "cores_busy", "cpu_utilisation", "device", "device_peak_mib", "device_growth_mib")
# Three rounds: the verdict rule's minimum; M2 over 10 runs read 0.478 [0.476, 0.481].
MEMORY_ROUNDS = 3
# A memory job trains only until its peak is reached (the first steps allocate what later
# ones reuse); one timed validation pass after the traced one.
MEMORY_JOB = {"train_seconds": 0.5, "min_steps": 4, "val_passes": 1}
# Long against a step's cache refill after another role's turn, short against the seconds
# over which the machine drifts; a turn overruns by at most one step (ALT at seed: ~1.2 s).
TURN_SECONDS = 0.25
# Per role and round: one timed validation pass, spread over turns (``Plan.val_in_turns``), and
# training until ``train_seconds`` and 8 steps; the untimed first validation call is 2 batches.
# Rounds, not passes or steps within one process, are what the interval counts.
# At seed on a slow 2-CPU EPYC VM (ALT's eager pass ~11 s) validation took 66 s of a 189-s
# round with two passes, and the budget held 2 rounds: no verdict. Pooled over 5 seed runs (13
# rounds), a round's sd of log ratio with one whole pass a turn against the mean of two: V1
# 0.055 / 0.043, V2 0.061 / 0.017, V3 0.097 / 0.077, V4 0.066 / 0.085; a pass spread over turns
# meets the drift that its counterpart meets, as two passes at different times did for V2. With
# 4 steps, ALT's eager training turns at seed (one step each, ~0.9 s) left T4 an sd of 0.05 a
# round, nearly all of it the 4 steps' own (0.036 and 0.047 per role within rounds), and an
# interval at n = 4 whose upper end fell either side of 1 (0.908 [0.827, 0.996]); 8 steps halve
# that variance, for the ~18 s a round that a whole first pass of the eager roles cost.
TURN_JOB = {"val_passes": 1, "min_steps": 8, "val_warm_batches": 2}
XLA_KNOBS = ("train_compile", "val_compile")  # the role ``ablation_roles`` adds beyond the report


@dataclass(frozen=True)
class SpeedPlan:
    """What the speed suite runs.

    Attributes:
        base, candidate: the two paths.
        preset: the data and model.
        max_rounds: rounds of turns at most.
        budget_s: wall seconds for the whole suite; no round starts that would not end in it.
        train_seconds: training per role and round (summed over its turns).
        ablations, both_ways: which one-knob roles run (bench/runner.py: ``plan_roles``).
        xla: also the candidate with XLA, beyond the report (no claim reads it; its compile
            takes longer than a round's measuring at seed).
        warm_together: warm-ups (first pass and steps) side by side, not alone (bench/turns.py).
        whole_val_passes: a validation pass takes one turn whole instead of spreading over turns
            (``Plan.val_in_turns``), to compare the two on a machine.
        memory_rounds: whole-process rounds of ALT and NEU for M1-M4; 0 leaves them out (the
            scale suite, which reads speed only).
        disk: also measure M3/M4 (a one-epoch fit of base and candidate in round 1).
        seed: the order of roles and turns.
    """

    base: TrainingPath
    candidate: TrainingPath
    preset: Preset
    max_rounds: int
    budget_s: float
    train_seconds: float = 2.5
    ablations: bool = True
    both_ways: bool = False
    xla: bool = False
    disk: bool = True
    warm_together: bool = False
    whole_val_passes: bool = False
    memory_rounds: int = MEMORY_ROUNDS
    seed: int = 0

    def roles(self) -> list[Role]:
        roles = plan_roles(self.base, self.candidate, ablations=self.ablations, both_ways=self.both_ways)
        return [role for role in roles if self.xla or role.knobs != XLA_KNOBS]

    def memory(self) -> Plan:
        roles = tuple(role for role in self.roles() if role.reference is None)  # base and candidate
        disk = ("base", "candidate") if self.disk else ()
        rounds = max(1, self.memory_rounds)  # a Plan has a round; ``measure`` skips it at 0
        return Plan(roles, self.preset, rounds, job_options=MEMORY_JOB, seed=self.seed, disk_roles=disk)

    def record(self) -> dict[str, Any]:
        """What decides which jobs run and how (a cut run's identity, bench/partial.py)."""
        return {"memory": self.memory().record() if self.memory_rounds else None, "turns": self.turns().record()}

    def turns(self) -> Plan:
        return Plan(
            tuple(self.roles()),
            self.preset,
            self.max_rounds,
            job_options={"train_seconds": self.train_seconds, **TURN_JOB},
            seed=self.seed,
            turn_seconds=TURN_SECONDS,
            freeze=True,
            warm_together=self.warm_together,
            val_in_turns=not self.whole_val_passes,
        )


def memory_only(record: dict[str, Any]) -> dict[str, Any]:
    """A whole-process record with its timings dropped: memory, CPU and disk stay."""
    if "error" in record:
        return record
    phases = {p: {k: v for k, v in data.items() if k in MEMORY_KEYS} for p, data in record.get("phases", {}).items()}
    return {**record, "phases": phases, "measured_for": "memory"}


OnJob = Callable[[str, Role, dict[str, Any]], None]
# Says, from all turn records so far, the seconds the rounds of turns measured here have taken
# and the seconds they may take, whether to go on (True) or why to stop (a reason).
Rule = Callable[[list[dict[str, Any]], float, float], "bool | str"]


class Sequential:
    """The speed suite's stopping rule (bench/sequential.py) over the V/T claims of a plan.

    The looks are fixed after the first round of turns, from the rounds that fit the budget
    at that round's duration (at most ``max_rounds``): before any look, and from a duration,
    not from a ratio, so the looks do not depend on what the claims read. A schedule fixed
    from ``max_rounds`` alone would spend alpha on looks the budget never reaches.

    Args:
        claims: the registry; ``roles``: the plan's roles as records; ``base``, ``candidate``:
            the two paths' knobs.
    """

    def __init__(
        self, claims: list[Any], roles: list[dict[str, Any]], base: dict[str, Any], candidate: dict[str, Any], *,
        max_rounds: int,
    ) -> None:  # fmt: skip
        from bench.analysis import watched_claims

        self.roles, self.max_rounds = roles, max_rounds
        self.watched = watched_claims(claims, roles, base, candidate)
        self.schedule: Schedule | None = None
        self.decision: Decision | None = None

    def fix(self, round_s: float | None, budget_s: float | None) -> Schedule:
        """The schedule, fixed at the first call: for the rounds the budget holds at ``round_s``
        (``Schedule.fitted``), or for ``max_rounds`` without a budget."""
        from bench.sequential import MIN_ROUNDS, Schedule

        if self.schedule is None and round_s is not None and budget_s is not None:
            self.schedule = Schedule.fitted(self.max_rounds, round_s, budget_s)
        elif self.schedule is None:
            self.schedule = Schedule.spending(max(MIN_ROUNDS, self.max_rounds))
        return self.schedule

    def judge(
        self, records: list[dict[str, Any]], elapsed_s: float | None = None, budget_s: float | None = None
    ) -> Decision:
        """The rule's decision on the records so far (after the last round too, for the rows).

        ``decide`` stops at a look, or between looks when another round would end past the
        budget; a last look that the budget fixed (``fix``) is said to be the budget's.
        """
        from dataclasses import replace

        from bench.analysis import rounds_done, watched_ratios
        from bench.sequential import BUDGET_STOP, MAX_ROUNDS_STOP, decide

        n = rounds_done(records)
        timed = elapsed_s is not None and budget_s is not None and elapsed_s > 0
        schedule = self.fix(elapsed_s / n if timed else None, budget_s if timed else None)
        budget = {"elapsed_s": elapsed_s, "budget_s": budget_s} if timed else {}
        decision = decide(schedule, n, watched_ratios(self.watched, records, self.roles), self.watched, **budget)
        if decision.reason == MAX_ROUNDS_STOP and schedule.max_rounds < self.max_rounds:
            decision = replace(
                decision,
                reason=BUDGET_STOP,
                detail=f"{decision.detail}; the budget holds {schedule.max_rounds} of --rounds {self.max_rounds} "
                "at round 1's duration",
            )
        self.decision = decision
        return decision

    def rule(self, records: list[dict[str, Any]], elapsed_s: float, budget_s: float) -> bool | str:
        decision = self.judge(records, elapsed_s, budget_s)
        return decision.stop_note if decision.stop else True

    def record(self) -> dict[str, Any]:
        """The schedule and the last decision, as the result keeps them (``--reassess`` reads them)."""
        schedule, decision = self.schedule, self.decision
        return {
            "looks": list(schedule.looks) if schedule else None,
            "alphas": list(schedule.alphas) if schedule else None,
            "confidence": decision.confidence if decision else None,
            "stop": decision.stop_note if decision else None,
            "watched": sorted(self.watched),
            "undecided": list(decision.undecided) if decision else None,
        }


def measure(
    plan: SpeedPlan,
    *,
    rule: Rule,
    on_job: OnJob | None = None,
    kept: tuple[Partial, Partial] | None = None,
    runner: Runner = run_worker,
    start: Starter = TurnWorker,
) -> dict[str, Any]:
    """Memory rounds in whole processes, then rounds of frozen turns while ``rule`` says so.

    Args:
        rule: called after every round of turns but the last with the records so far, the
            seconds the rounds of turns have taken in this run and the seconds they may take
            (the budget less the memory rounds); True goes on, a string stops and is kept as
            the reason (``Sequential.rule``).
        on_job: called per finished job with its stage ("memory round 1/3", "round 2");
            not for jobs reused from a cut run.
        kept: partial records (memory, turns) that finished jobs are appended to, holding
            those of a cut run to reuse (bench/partial.py). The budget counts this run's
            seconds only.
        runner, start: how whole-process jobs and turn-taking workers run (tests pass fakes).

    Returns:
        ``records`` (turns, then memory-only ones), ``rounds`` (rounds of turns), ``stop``
        (why they ended), ``memory_rounds``, ``reused`` (jobs taken from the cut run),
        ``data_s`` (simulating and preparing the data the cache lacked, before the clock) and ``wall_s``.
    """
    from bench.partial import Partial
    from diffusion.data import ensure_cached

    # A fresh machine simulates and prepares its data on first use: done here, off the budget's clock.
    data_s = ensure_cached(plan.preset)
    began = time.perf_counter()
    kept_memory, kept_turns = kept or (Partial(None, {}), Partial(None, {}))
    memory = plan.memory()
    reused = len(kept_memory.done()) + len(kept_turns.done())

    def tell(stage: Callable[[int], str]) -> Callable[[int, Role, dict[str, Any]], None]:
        return lambda r, role, rec: on_job(stage(r), role, rec) if on_job else None

    memory_records = (
        []
        if not plan.memory_rounds
        else run_plan(
            memory,
            runner=runner,
            done=kept_memory.done(),
            on_job=kept_memory.on_job(tell(lambda r: f"memory round {r + 1}/{memory.rounds}")),
        )
    )
    stop = f"max rounds ({plan.max_rounds})"
    turns_start = time.perf_counter()
    turns_budget = plan.budget_s - (turns_start - began)

    def more(records: list[dict[str, Any]]) -> bool:
        nonlocal stop
        verdict = rule(records, time.perf_counter() - turns_start, turns_budget)
        if verdict is True:
            return True
        stop = str(verdict)
        return False

    turn_records = run_plan(
        plan.turns(),
        start=start,
        on_job=kept_turns.on_job(tell(lambda r: f"round {r + 1}")),
        done=kept_turns.done(),
        more=more,
    )
    return {
        "records": turn_records + [memory_only(rec) for rec in memory_records],
        "rounds": len({rec["round"] for rec in turn_records}),
        "stop": stop,
        "memory_rounds": plan.memory_rounds,
        "reused": reused,
        "data_s": data_s,
        "wall_s": time.perf_counter() - began,
    }
