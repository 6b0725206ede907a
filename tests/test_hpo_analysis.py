"""Search-claim rows from synthetic search records with known answers."""

from __future__ import annotations

import pytest

from bench.claims import load_claims
from bench.hpo import HpoPlan, fixed_params, hpo_rows, rss_growth_per_trial, runs


def record(name: str, repeat: int, wall: float, pruned: int = 0, n: int = 20, epochs: int = 6) -> dict:
    trials = [
        {
            "number": i,
            "state": "PRUNED" if i < pruned else "COMPLETE",
            "epochs_run": 3 if i < pruned else epochs,
            "seconds": 2.0,
            "rss_mib_end": 700.0 + i,
            "value": 1.0,
        }
        for i in range(n)
    ]
    run = next(r for r in runs(HpoPlan()) if r.name == name)
    return {
        "run": {"name": name, "parallel": run.parallel, "jobs": run.jobs, "pruner": run.pruner, "cpus": run.cpus},
        "repeat": repeat,
        "wall_s": wall,
        "trials": trials,
    }


def raw(walls: dict[str, float], pruned: int = 6) -> dict:
    records = []
    for repeat in range(3):
        for name, wall in walls.items():
            records.append(record(name, repeat, wall * (1 + 0.01 * repeat), pruned=pruned if "pruning" in name else 0))
    return {
        "plan": {"preset": "tiny", "trials": 20, "epochs": 6, "jobs": 2, "repeats": 3, "seed": 0},
        "records": records,
        "cores": 2,
    }


WALLS = {
    "sequential": 100.0,
    "threads": 55.0,
    "workers": 60.0,
    "sequential+pruning": 80.0,
    "threads+pruning": 40.0,
    "sequential-1core": 180.0,
}


def rows(data: dict) -> dict:
    return hpo_rows(data, load_claims())


def test_parallel_speedup_is_judged_against_linear_scaling_on_the_jobs_run():
    row = rows(raw(WALLS))["H1"]
    assert row["claimed"] == 2.0  # the seed's 4 jobs -> 4x is linear scaling; 2 jobs here
    assert row["measured"]["estimate"] == pytest.approx(100 / 55, rel=0.01)
    assert row["verdict"] == "holds"


def test_pruned_share_has_a_binomial_interval():
    row = rows(raw(WALLS, pruned=6))["H2"]  # 6 of 20 in each of 3 repeats: 30%
    assert row["measured"]["estimate"] == pytest.approx(0.3)
    assert row["measured"]["low"] < 0.3 < row["measured"]["high"]
    assert "epochs saved" in row["reason"]


def test_no_pruning_refutes_the_thirty_percent_claim():
    assert rows(raw(WALLS, pruned=0))["H2"]["verdict"] == "refuted"


def test_core_scaling_compares_one_pinned_core_with_two():
    row = rows(raw(WALLS))["S1"]
    assert row["measured"]["estimate"] == pytest.approx(180 / 60, rel=0.01)


def test_many_node_row_is_a_labelled_projection_bounded_by_the_trial_count():
    row = rows(raw(WALLS))["S4"]
    assert row["projection"] is True and "PROJECTION" in row["reason"]
    assert row["measured"]["estimate"] == 5.0  # ceil(20/4) waves vs ceil(20/128)
    assert row["verdict"] == "refuted"


def test_failed_runs_leave_rows_not_measured():
    data = raw({"sequential": 100.0})
    assert rows(data)["H1"]["verdict"] == "not measured"


def test_fixed_parameter_list_is_reproducible_and_inside_the_space():
    from diffusion.hpo.space import check_params

    a, b = fixed_params(20, seed=3), fixed_params(20, seed=3)
    assert a == b and len(a) == 20
    for params in a:
        check_params(params)


def test_rss_slope_over_trials():
    assert rss_growth_per_trial(raw(WALLS)) == pytest.approx(1.0)
