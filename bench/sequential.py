"""A sequential stopping rule for the speed suite: look at the data after some rounds, stop once
every watched claim is decided, and keep the interval's coverage despite the looks.

The rule is group-sequential alpha spending by the union bound (Bonferroni over looks). A
``Schedule`` fixes, before any round is run, the looks ``n_1 < ... < n_K`` (rounds done) and
an alpha per look with ``alpha_1 + ... + alpha_K <= 0.05``. At look k each claim is judged on
its Student-t interval at ``1 - alpha_k`` (``bench.stats.interval_of``); the run stops at a
look, or between looks when the budget holds no further round. Let B be the last round the
budget holds (a function of the rounds' durations). The interval that stands for look k is the
one after ``min(n_k, B)`` rounds at ``1 - alpha_k``: a run stopped between looks reports the
next look's, at that look's level. Whatever the stopping time, the reported interval is one of
these K, so

    P(it misses the truth) <= P(some look's interval misses) <= sum_k alpha_k <= 0.05,

for every claim and any rule that picks the look (decided, a budget, the maximum). The bound
needs no model of how the looks correlate: it is exact with a t-interval, whose coverage at
each fixed n is exact under normal log-ratios, and conservative by the looks' overlap. It takes
B, like the looks (``fitted``), to depend on durations and not on the ratios. That holds only
roughly: a round's length includes each role's validation pass and steps, so a slow round of
ALT both lengthens the round and moves the V ratios; the simulation in tests/test_sequential.py
draws the two independently, and also with a planted correlation between them.

Why not a confidence sequence (the ``confseq`` package, anytime-valid at every round):
- A few looks are enough. Rounds cost minutes at ``seed``; a rule that could stop after any
  round buys little over one that looks at 4 fixed points, and pays for it in width.
- A confidence sequence is built on a known bound on the data (sub-Gaussian with a known
  scale, or bounded values); a log-ratio's spread is unknown and estimated from 4-16 rounds,
  which is exactly what the t-interval handles and the usual sequences do not.
- It is simple to state, to check (a seeded simulation of this module, tests/test_sequential.py)
  and to reproduce: every interval in the table is an ordinary t-interval at a stated level.

Costs: the final look's interval is wider than a fixed-n 95% one (at 16 rounds, 4 looks and
the default spending: 0.657 against 0.533 standard deviations of a round, in log units, half
width), and the first look at 5 rounds decides only claims that sit more than ~2.4 such
standard deviations from every edge of their band.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.claims import Claim
from bench.stats import CONFIDENCE, DECIDED, MIN_ROUNDS, Interval, Verdict, interval_of, verdict

ALPHA = 1 - CONFIDENCE  # spent over all looks: each claim keeps >= 95% coverage at the stop
FIRST_LOOK = 5  # a t-interval at n = 3 or 4 with alpha ~0.01 spans too much to decide anything
LOOKS = 4  # looks of a default schedule (fewer when the maximum leaves no room)
LOOK_GAP = 3  # fewest new rounds between default looks: a look after 1 more round spends alpha for little
SPENDINGS = ("rounds", "equal")

# Why the rounds stopped (``Decision.reason``); "" while they go on.
DECIDED_STOP = "decided"
MAX_ROUNDS_STOP = "max rounds"
BUDGET_STOP = "budget"


@dataclass(frozen=True)
class Schedule:
    """When a sequential run looks at its data, and the alpha each look spends.

    Attributes:
        looks: rounds done at each look, strictly increasing, the first at least
            ``MIN_ROUNDS``; the last is the run's maximum.
        alphas: the alpha each look spends, one per look, each in (0, 1). Their sum is what
            the run may lose in coverage: ``coverage`` = 1 - sum. A schedule of 0.05 at every
            look is a valid object (naive peeking) whose coverage says what it is worth.
    """

    looks: tuple[int, ...]
    alphas: tuple[float, ...]

    def __post_init__(self) -> None:
        looks, alphas = tuple(self.looks), tuple(float(a) for a in self.alphas)
        object.__setattr__(self, "looks", looks)
        object.__setattr__(self, "alphas", alphas)
        if not looks:
            raise ValueError("`looks` must name at least one look, but got ().")
        if any(not isinstance(n, int) or isinstance(n, bool) for n in looks):
            raise ValueError(f"`looks` must be whole numbers of rounds, but got {looks}.")
        if looks[0] < MIN_ROUNDS:
            raise ValueError(
                f"`looks` must start at {MIN_ROUNDS} rounds or more (fewer give no verdict), but got {looks}."
            )
        if any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
            raise ValueError(f"`looks` must be strictly increasing, but got {looks}.")
        if len(alphas) != len(looks):
            raise ValueError(f"`alphas` must give one alpha per look ({len(looks)}), but got {len(alphas)}: {alphas}.")
        if any(not 0 < a < 1 for a in alphas):
            raise ValueError(f"every alpha must be in (0, 1), but got {alphas}.")
        if not sum(alphas) < 1:
            raise ValueError(f"`alphas` must sum to less than 1, but got {sum(alphas)} from {alphas}.")

    @classmethod
    def spending(
        cls,
        max_rounds: int,
        *,
        first: int = FIRST_LOOK,
        looks: int = LOOKS,
        gap: int = LOOK_GAP,
        alpha: float = ALPHA,
        spend: str = "rounds",
    ) -> Schedule:
        """A schedule with up to ``looks`` looks spread evenly from ``first`` to ``max_rounds``,
        at least ``gap`` rounds apart (8 rounds: 5, 8; 12: 5, 9, 12; 16: 5, 9, 12, 16).

        Spending ``rounds`` (the default) gives each look alpha in proportion to its rounds,
        ``alpha * n_k / sum(n)``: more alpha later. The early looks are there to let claims
        far from every edge of their band stop the run soon, and those clear their band at any
        small alpha; the hard claims, near an edge, are settled at the last looks, where the
        interval should stay as close as it can to a fixed-n one. At 16 rounds and 4 looks
        (5, 9, 12, 16) the last interval's half width is 0.657 round standard deviations
        against 0.709 under ``equal`` spending (0.533 for a fixed-n 95% interval), the
        first's 2.39 against 1.93. ``equal`` spends ``alpha / K`` at each look: better when a
        budget is likely to cut the run early, as it wastes less of the alpha that later
        looks never use.

        A maximum too close to ``first`` for two looks (below ``first + gap``) gives a single
        look at the maximum with all of ``alpha``: the fixed-n 95% interval of a plain run.

        Raises:
            ValueError: a maximum below ``MIN_ROUNDS``, ``looks`` < 1, ``alpha`` outside
                (0, 1) or an unknown ``spend``.
        """
        if max_rounds < MIN_ROUNDS:
            raise ValueError(f"`max_rounds` must be at least {MIN_ROUNDS}, but got {max_rounds=}.")
        if looks < 1 or gap < 1:
            raise ValueError(f"`looks` and `gap` must be at least 1, but got {looks=} and {gap=}.")
        if not 0 < alpha < 1:
            raise ValueError(f"`alpha` must be in (0, 1), but got {alpha=}.")
        if spend not in SPENDINGS:
            raise ValueError(f"`spend` must be one of {', '.join(SPENDINGS)}, but got {spend!r}.")
        start = max(first, MIN_ROUNDS)
        count = min(looks, 1 + (max_rounds - start) // gap) if max_rounds > start else 1
        if count == 1:
            return cls((max_rounds,), (alpha,))
        points = np.linspace(start, max_rounds, count)
        at = tuple(sorted({math.floor(float(p) + 0.5) for p in points}))
        weights = np.array(at, float) if spend == "rounds" else np.ones(len(at))
        return cls(at, tuple(float(w) for w in alpha * weights / weights.sum()))

    @classmethod
    def fitted(cls, max_rounds: int, round_s: float, budget_s: float) -> Schedule:
        """The default schedule for the rounds a budget holds at ``round_s`` a round, at most
        ``max_rounds`` (and at least ``MIN_ROUNDS``): what the speed suite fixes after its first
        round (bench/speed.py, ``Sequential``), and the coverage simulation with it.

        Raises:
            ValueError: ``round_s`` not positive, or as ``spending``.
        """
        if not round_s > 0:
            raise ValueError(f"`round_s` must be positive, but got {round_s=}.")
        return cls.spending(max(MIN_ROUNDS, min(max_rounds, int(budget_s // round_s))))

    @property
    def max_rounds(self) -> int:
        return self.looks[-1]

    @property
    def coverage(self) -> float:
        """The coverage every claim keeps at the stop, whatever the stopping rule: 1 - sum(alphas)."""
        return 1 - sum(self.alphas)

    def is_look(self, n: int) -> bool:
        return n in self.looks

    def alpha(self, n: int) -> float:
        """The alpha spent at the look after ``n`` rounds.

        Raises:
            ValueError: ``n`` is not a look.
        """
        if n not in self.looks:
            raise ValueError(f"`n` must be a look of the schedule ({', '.join(map(str, self.looks))}), but got {n=}.")
        return self.alphas[self.looks.index(n)]

    def confidence(self, n: int) -> float:
        """The level each claim's interval is judged at, at the look after ``n`` rounds."""
        return 1 - self.alpha(n)

    def next_look(self, n: int) -> int | None:
        """The first look after more than ``n`` rounds; None once the last look is behind."""
        return next((look for look in self.looks if look > n), None)

    def describe(self) -> str:
        looks = ", ".join(f"{n} ({a:.4f})" for n, a in zip(self.looks, self.alphas, strict=True))
        return f"looks at rounds (alpha): {looks}; coverage >= {self.coverage:.0%}"


@dataclass(frozen=True)
class Decision:
    """What the rule says after ``n`` rounds.

    Attributes:
        stop: True to stop now: at a look, or between looks when the budget holds no
            further round.
        reason: ``decided``, ``max rounds`` or ``budget`` when stopping; "" when going on.
        n: rounds done.
        confidence: the level ``intervals`` are at: the look's, or for a budget's stop between
            looks the next look's; None when going on between looks.
        intervals: each watched claim's interval at that level (empty when going on between
            looks, and for a claim with no ratio yet).
        verdicts: each watched claim's verdict at that level (empty when going on between looks).
        undecided: the watched claims without a settling verdict at that level.
        detail: one clause for the record ("every claim decided at look 2 of 4").
    """

    stop: bool
    reason: str
    n: int
    confidence: float | None = None
    intervals: Mapping[str, Interval] = field(default_factory=dict)
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)
    undecided: tuple[str, ...] = ()
    detail: str = ""

    @property
    def stop_note(self) -> str:
        """The short stop reason a row carries (``assess_claims(stop=...)``)."""
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


def judge_look(
    ratios: Mapping[str, Sequence[float] | np.ndarray], claims: Mapping[str, Claim], confidence: float
) -> tuple[dict[str, Interval], dict[str, Verdict]]:
    """Every watched claim's interval at ``confidence`` and its verdict under ``bench.stats.verdict``,
    judged as ``bench.analysis.judged_row`` judges it. A claim with no ratio yet is ``not measured``."""
    intervals, verdicts = {}, {}
    for claim_id, claim in claims.items():
        values = np.asarray(ratios.get(claim_id, ()), float)
        if values.size == 0:
            verdicts[claim_id] = Verdict.NOT_MEASURED
            continue
        intervals[claim_id] = interval = interval_of(values, confidence)
        verdicts[claim_id] = verdict(interval, claim.claimed, claim.tolerance, kind=claim.kind, margin=claim.margin)
    return intervals, verdicts


def another_round_ends_past(n: int, elapsed_s: float | None, budget_s: float | None) -> bool:
    """Whether one more round, at this run's mean round time ``elapsed_s / n``, would end past
    the budget; False without a budget. The one budget test of ``decide``, at a look and between."""
    return elapsed_s is not None and budget_s is not None and elapsed_s * (n + 1) / n > budget_s


def decide(
    schedule: Schedule,
    n: int,
    ratios: Mapping[str, Sequence[float] | np.ndarray],
    claims: Mapping[str, Claim],
    *,
    elapsed_s: float | None = None,
    budget_s: float | None = None,
) -> Decision:
    """Stop or go on after ``n`` rounds: the rule, called by the loop after every round.

    At a look it judges every claim at the look's level and stops when every one is decided
    (``decided``), at the last look (``max rounds``), or when even one more round would end past
    the budget (``budget``), projected at this run's mean round time, ``elapsed_s / n``. Between
    looks it goes on under the same condition (the budget reaches another round); when it does
    not, it stops with every claim judged at the level of the next look, which never comes: the
    interval takes that look's place in the union bound, so the coverage holds (below
    ``MIN_ROUNDS`` rounds every row is inconclusive anyway). So a run whose next look lies past
    its budget (rounds slower than the looks were fixed for: ALT on a GPU, or a first round
    faster than the rest) spends the budget on rounds judged at that look's level. (The rule
    before 2026-12-04 stopped at this look instead: on a 2-CPU EPYC VM it ended a run of the
    main job at round 5 of the 8 its budget held, judged at 98.2%, 286 of its 668 s for rounds
    unspent.)

    Args:
        schedule: the looks and their alphas, fixed before the first round.
        n: rounds done.
        ratios: each watched claim's per-round ratios so far (a failed round simply absent).
        claims: the watched claims by id (``bench.analysis.watched_claims``).
        elapsed_s, budget_s: seconds spent so far and the budget; no budget when either is None.

    Raises:
        ValueError: ``n`` past the schedule's last look (the loop missed its stop).
    """
    if n > schedule.max_rounds:
        raise ValueError(f"`n` must be at most the schedule's last look ({schedule.max_rounds}), but got {n=}.")
    if not schedule.is_look(n):
        following = schedule.next_look(n)
        assert following is not None  # n is below the last look
        if not another_round_ends_past(n, elapsed_s, budget_s):
            return Decision(False, "", n)
        confidence = schedule.confidence(following)
        intervals, verdicts = judge_look(ratios, claims, confidence)
        undecided = tuple(c for c, v in verdicts.items() if v not in DECIDED)
        detail = (
            f"n = {n} before the look at {following}: another round (~{elapsed_s / n:.0f} s) would end past "
            f"the budget ({budget_s:.0f} s); judged at that look's {confidence:.2%}"
        )
        return Decision(True, BUDGET_STOP, n, confidence, intervals, verdicts, undecided, detail)
    confidence = schedule.confidence(n)
    intervals, verdicts = judge_look(ratios, claims, confidence)
    undecided = tuple(c for c, v in verdicts.items() if v not in DECIDED)
    k, looks = schedule.looks.index(n) + 1, len(schedule.looks)
    where = f"n = {n}, look {k} of {looks} at {confidence:.2%}"
    still = f"{len(undecided)} open ({', '.join(undecided)})"
    if not undecided:
        reason, detail = DECIDED_STOP, f"every claim decided at {where}"
    elif n == schedule.max_rounds:
        reason, detail = MAX_ROUNDS_STOP, f"{still} at the last look ({where})"
    elif another_round_ends_past(n, elapsed_s, budget_s):
        # Only when not even one more round fits: a next look beyond the budget is no reason
        # to stop, as the rounds up to the budget are then judged at that look's level.
        reason = BUDGET_STOP
        detail = (
            f"{still} at {where}; another round (~{elapsed_s / n:.0f} s) would end past the budget ({budget_s:.0f} s)"
        )
    else:
        reason, detail = "", ""
    return Decision(bool(reason), reason, n, confidence, intervals, verdicts, undecided, detail)
