"""The sequential stopping rule: its schedule, its stop reasons, and its coverage, simulated."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from bench.claims import Claim
from bench.sequential import BUDGET_STOP, DECIDED_STOP, MAX_ROUNDS_STOP, Schedule, decide
from bench.stats import Verdict


def claim(claim_id: str, claimed: float) -> Claim:
    return Claim(id=claim_id, family="training", text="a speed-up", claimed=claimed, metric="train_samples_per_s")


# --- the schedule --------------------------------------------------------------------------


def test_default_schedule_for_16_rounds_looks_4_times_and_spends_more_alpha_later():
    schedule = Schedule.spending(16)
    assert schedule.looks == (5, 9, 12, 16)
    assert sum(schedule.alphas) == pytest.approx(0.05)
    assert list(schedule.alphas) == sorted(schedule.alphas)
    assert schedule.alphas == pytest.approx(tuple(0.05 * n / 42 for n in (5, 9, 12, 16)))


def test_equal_spending_gives_every_look_the_same_alpha():
    schedule = Schedule.spending(16, spend="equal")
    assert schedule.alphas == pytest.approx((0.0125,) * 4)


@pytest.mark.parametrize(
    ("max_rounds", "looks"), [(3, (3,)), (7, (7,)), (8, (5, 8)), (12, (5, 9, 12)), (20, (5, 10, 15, 20))]
)
def test_default_looks_are_at_least_3_rounds_apart_and_end_at_the_maximum(max_rounds, looks):
    assert Schedule.spending(max_rounds).looks == looks


def test_a_single_look_is_the_plain_fixed_rounds_interval():
    schedule = Schedule.spending(4)
    assert schedule.looks == (4,) and schedule.confidence(4) == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("looks", "alphas", "match"),
    [
        ((), (), "at least one look"),
        ((2, 5), (0.01, 0.01), "start at 3"),
        ((5, 5), (0.01, 0.01), "strictly increasing"),
        ((5, 4), (0.01, 0.01), "strictly increasing"),
        ((5.0,), (0.05,), "whole numbers"),
        ((5, 8), (0.05,), "one alpha per look"),
        ((5, 8), (0.0, 0.05), r"in \(0, 1\)"),
        ((5, 8), (0.6, 0.5), "sum to less than 1"),
    ],
)
def test_schedule_refuses_a_malformed_plan(looks, alphas, match):
    with pytest.raises(ValueError, match=match):
        Schedule(looks, alphas)


def test_spending_refuses_a_maximum_below_3_rounds_and_an_unknown_spending():
    with pytest.raises(ValueError, match="max_rounds"):
        Schedule.spending(2)
    with pytest.raises(ValueError, match="spend"):
        Schedule.spending(16, spend="pocock")


def test_confidence_is_one_minus_the_looks_alpha_and_only_at_a_look():
    schedule = Schedule((5, 9), (0.02, 0.03))
    assert schedule.confidence(5) == pytest.approx(0.98)
    assert schedule.confidence(9) == pytest.approx(0.97)
    assert schedule.coverage == pytest.approx(0.95)
    with pytest.raises(ValueError, match="must be a look"):
        schedule.confidence(6)


def test_next_look_is_the_first_look_past_n_and_none_after_the_last():
    schedule = Schedule((5, 9, 12), (0.01, 0.02, 0.02))
    assert [schedule.next_look(n) for n in (0, 4, 5, 8, 9, 11, 12, 13)] == [5, 5, 9, 9, 12, 12, None, None]


# --- the stop reasons --------------------------------------------------------------------------

SCHEDULE = Schedule((5, 9, 12), (0.01, 0.015, 0.025))
CLAIMS = {"T1": claim("T1", 2.4), "T3": claim("T3", 1.5)}


def steady(ratio: float, n: int, spread: float = 0.01) -> np.ndarray:
    return ratio * np.exp(spread * np.linspace(-1, 1, n))


def test_between_looks_the_rule_goes_on_whatever_the_data():
    decision = decide(SCHEDULE, 6, {"T1": steady(2.4, 6), "T3": steady(1.5, 6)}, CLAIMS)
    assert not decision.stop and decision.reason == "" and decision.confidence is None


def test_a_look_where_every_claim_is_decided_stops_with_decided():
    decision = decide(SCHEDULE, 5, {"T1": steady(12.0, 5), "T3": steady(1.5, 5)}, CLAIMS)
    assert decision.stop and decision.reason == DECIDED_STOP
    assert decision.verdicts == {"T1": Verdict.EXCEEDED, "T3": Verdict.HOLDS}
    assert decision.confidence == pytest.approx(0.99)
    assert decision.stop_note.startswith("decided: every claim decided at n = 5, look 1 of 3")


def test_an_open_claim_at_an_early_look_goes_on():
    # T3 sits on its band's upper edge (1.8): the interval straddles it.
    decision = decide(SCHEDULE, 5, {"T1": steady(12.0, 5), "T3": steady(1.8, 5, 0.2)}, CLAIMS)
    assert not decision.stop and decision.undecided == ("T3",)


def test_the_last_look_stops_with_max_rounds_and_names_the_open_claims():
    decision = decide(SCHEDULE, 12, {"T1": steady(12.0, 12), "T3": steady(1.8, 12, 0.2)}, CLAIMS)
    assert decision.stop and decision.reason == MAX_ROUNDS_STOP
    assert decision.undecided == ("T3",) and "1 open (T3) at the last look" in decision.detail


def test_a_next_look_past_the_budget_goes_on_while_another_round_fits_and_stops_at_this_look_when_none_does():
    ratios = {"T1": steady(12.0, 5), "T3": steady(1.8, 5, 0.2)}
    # 5 rounds in 500 s: the next look (9 rounds) would end at ~900 s, past 850 s, but a 6th
    # round ends at 600 s: the rounds up to the budget are judged at look 9's level.
    assert decide(SCHEDULE, 5, ratios, CLAIMS, elapsed_s=500, budget_s=850).stop is False
    assert decide(SCHEDULE, 5, ratios, CLAIMS, elapsed_s=500, budget_s=600).stop is False
    decision = decide(SCHEDULE, 5, ratios, CLAIMS, elapsed_s=500, budget_s=599)
    assert decision.stop and decision.reason == BUDGET_STOP and decision.confidence == SCHEDULE.confidence(5)
    assert "another round (~100 s) would end past the budget (599 s)" in decision.detail


def test_a_budget_that_another_round_would_pass_stops_between_looks_at_the_next_looks_level():
    ratios = {"T1": steady(12.0, 3), "T3": steady(1.8, 3, 0.2)}
    assert decide(SCHEDULE, 3, ratios, CLAIMS, elapsed_s=300, budget_s=400).stop is False  # a 4th ends at 400
    decision = decide(SCHEDULE, 3, ratios, CLAIMS, elapsed_s=300, budget_s=399)
    assert decision.stop and decision.reason == BUDGET_STOP
    assert decision.confidence == SCHEDULE.confidence(SCHEDULE.next_look(3))
    assert "before the look at" in decision.detail and set(decision.verdicts) == {"T1", "T3"}


def test_a_claim_without_ratios_is_not_measured_and_keeps_the_run_open():
    decision = decide(SCHEDULE, 5, {"T1": steady(12.0, 5)}, CLAIMS)
    assert decision.verdicts["T3"] is Verdict.NOT_MEASURED and decision.undecided == ("T3",)
    assert "T3" not in decision.intervals


def test_rounds_past_the_last_look_are_refused():
    with pytest.raises(ValueError, match="at most the schedule's last look"):
        decide(SCHEDULE, 13, {}, CLAIMS)


# --- coverage: a seeded simulation of the rule exactly as implemented -----------------------------
#
# Four claims per experiment with normal log-ratios (per-round sd 0.05-0.20). Each claim's truth is
# inside its band, just outside an edge (0.1 in log), or far outside (0.8: exceeded or reversed);
# in half of the experiments one claim sits exactly on an edge of its band, where a claim that
# gets decided is a miss, so peeking pays. A third of the runs have a budget (1 s a round, 6-20 s).
# The loop is the compare loop's: ``decide`` after every round, stop when it says so, report its
# intervals. 4000 experiments: a coverage of 0.95 has a standard error of 0.0034 per claim.

SIM_CLAIMED = (2.4, 1.5, 1.3, 1.1)
SIM_SD = (0.05, 0.10, 0.15, 0.20)
SIM_CLAIMS = {f"C{j}": claim(f"C{j}", c) for j, c in enumerate(SIM_CLAIMED)}
EDGE = float(np.log(1.2))  # the claims' tolerance


@dataclass(frozen=True)
class Simulated:
    covered: np.ndarray  # (experiments, claims): the reported interval holds the truth
    on_edge: np.ndarray  # (experiments, claims): the truth sits on an edge of the band
    stopped_at: np.ndarray  # rounds run
    between: np.ndarray  # stopped between two looks of its schedule (by the budget)
    reasons: tuple[str, ...]


@cache
def simulate(
    schedule: Schedule,
    experiments: int = 4000,
    seed: int = 18,
    *,
    jitter: float = 0.0,
    budgets: tuple = (6, 20),
    tied: float = 0.0,
    fit: bool = True,
) -> Simulated:
    """``jitter``: the sd of a round's log duration (0: every round takes 1 s); ``budgets``: the
    range of the budgets of the third of runs that have one, whose schedule is then fixed after
    round 1 from the rounds the budget holds (``Schedule.fitted``, as bench/speed.py fixes it;
    ``schedule`` is the maximum's); ``tied``: the correlation of a round's log duration with
    claim C0's log ratio in that round (a slow round of one role moves both); ``fit=False``
    keeps ``schedule`` for every run (a hand-made one)."""
    rng = np.random.default_rng(seed)
    k = len(SIM_CLAIMED)
    kind = rng.choice(3, size=(experiments, k), p=(0.2, 0.2, 0.6))  # inside, just outside, far
    side = rng.choice((-1.0, 1.0), size=(experiments, k))
    offset = np.select([kind == 0, kind == 1], [0.0, side * (EDGE + 0.1)], side * 0.8)
    edge_at = rng.integers(0, k, experiments)
    has_edge = rng.random(experiments) < 0.5
    offset[has_edge, edge_at[has_edge]] = side[has_edge, edge_at[has_edge]] * EDGE
    on_edge = np.zeros((experiments, k), bool)
    on_edge[has_edge, edge_at[has_edge]] = True
    truth = np.exp(np.log(SIM_CLAIMED) + offset)
    noise = rng.standard_normal((experiments, k, schedule.max_rounds))
    ratios = truth[:, :, None] * np.exp(np.array(SIM_SD)[None, :, None] * noise)
    budget_of = np.where(rng.random(experiments) < 1 / 3, rng.uniform(*budgets, experiments), np.nan)
    own = rng.standard_normal((experiments, schedule.max_rounds))
    elapsed = np.cumsum(np.exp(jitter * (tied * noise[:, 0, :] + np.sqrt(1 - tied**2) * own)), axis=1)

    covered = np.zeros((experiments, k), bool)
    stopped_at = np.zeros(experiments, int)
    between = np.zeros(experiments, bool)
    reasons = []
    ids = list(SIM_CLAIMS)
    for e in range(experiments):
        budget = None if np.isnan(budget_of[e]) else float(budget_of[e])
        fixed = (
            schedule
            if budget is None or not fit
            else Schedule.fitted(schedule.max_rounds, float(elapsed[e, 0]), budget)
        )
        for n in range(1, fixed.max_rounds + 1):
            got = {c: ratios[e, j, :n] for j, c in enumerate(ids)}
            decision = decide(fixed, n, got, SIM_CLAIMS, elapsed_s=float(elapsed[e, n - 1]), budget_s=budget)
            if decision.stop:
                break
        stopped_at[e] = decision.n
        between[e] = not fixed.is_look(decision.n)
        reasons.append(decision.reason)
        for j, c in enumerate(ids):
            interval = decision.intervals[c]
            covered[e, j] = interval.low <= truth[e, j] <= interval.high
    return Simulated(covered, on_edge, stopped_at, between, tuple(reasons))


DEFAULT = Schedule.spending(16)


def test_rounds_of_uneven_length_and_tight_budgets_stop_between_looks_and_keep_the_coverage():
    """The budget's stop between looks (a round would end past it) is judged at the next look's
    level; with rounds of uneven length (sd 0.5 in log) and budgets of 2-16 s it happens often."""
    sim = simulate(DEFAULT, 3000, seed=7, jitter=0.5, budgets=(2, 16))
    between = sim.between
    assert between.mean() > 0.1, between.mean()  # the stop under test really happens
    assert sim.covered.mean(axis=0).min() >= 0.93, sim.covered.mean(axis=0)
    decided = sim.stopped_at[between] >= 3
    assert sim.covered[between][decided].mean() >= 0.93


def test_rounds_whose_length_moves_with_a_claims_ratio_keep_the_coverage():
    """A slow round of one role lengthens the round and moves that claim's ratio, so the budget's
    stop depends a little on the ratios: planted here at a correlation of 0.5."""
    sim = simulate(DEFAULT, 3000, seed=11, jitter=0.5, budgets=(2, 16), tied=0.5)
    assert sim.between.mean() > 0.1, sim.between.mean()
    assert sim.covered.mean(axis=0).min() >= 0.93, sim.covered.mean(axis=0)
    assert sim.covered[sim.on_edge[:, 0], 0].mean() >= 0.93


def test_a_run_that_goes_on_past_a_look_stops_at_the_last_look_it_reaches_and_never_runs_past_it():
    """The loop's view: rounds of 100 s and a budget that holds exactly 12 (looks 5, 9, 12)."""
    stops = []
    for n in range(1, 13):
        ratios = {"T1": steady(12.0, n), "T3": steady(1.8, n, 0.2)}  # T3 stays open
        decision = decide(SCHEDULE, n, ratios, CLAIMS, elapsed_s=100.0 * n, budget_s=1200)
        stops.append(decision.stop)
        if decision.stop:
            break
    assert stops == [False] * 11 + [True] and decision.reason == MAX_ROUNDS_STOP


def test_the_rule_keeps_93_percent_coverage_for_every_claim_at_its_stopping_time():
    sim = simulate(DEFAULT)
    assert sim.covered.mean(axis=0).min() >= 0.93
    for j in range(len(SIM_CLAIMED)):  # and where peeking pays most: on an edge
        assert sim.covered[sim.on_edge[:, j], j].mean() >= 0.93
    # Early stops really happen. With rounds of even length a budget's fitted schedule ends
    # where the budget does (bench/speed.py says "budget" for that last look); the budget's own
    # stops come with uneven rounds (the tests above).
    assert np.mean(sim.stopped_at < DEFAULT.max_rounds) > 0.3
    assert {DECIDED_STOP, MAX_ROUNDS_STOP} <= set(sim.reasons)


def test_the_rule_keeps_its_coverage_with_a_short_maximum_too():
    sim = simulate(Schedule.spending(8), experiments=2000)
    assert sim.covered.mean(axis=0).min() >= 0.93
    assert sim.covered[sim.on_edge].mean() >= 0.93


def test_naive_peeking_at_95_percent_at_every_look_under_covers_so_the_test_can_fail():
    naive = Schedule(DEFAULT.looks, (0.05,) * len(DEFAULT.looks))
    sim = simulate(naive, fit=False)
    assert sim.covered[sim.on_edge].mean() < 0.92
    assert simulate(DEFAULT).covered[simulate(DEFAULT).on_edge].mean() > sim.covered[sim.on_edge].mean() + 0.03
