"""Search-claim rows from synthetic search records with known answers."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bench.claims import load_claims
from bench.hpo import HpoPlan, fixed_params, runs
from bench.hpo_analysis import hpo_rows, rss_growth_per_trial


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
    run = next(r for r in runs(HpoPlan(core_pair=(1, 2))) + runs(HpoPlan(core_pair=(4, 8))) if r.name == name)
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
        "plan": {"preset": "tiny", "trials": 20, "epochs": 6, "jobs": 2, "repeats": 3, "seed": 0, "core_pair": [1, 2]},
        "records": records,
        "cores": 2,
    }


WALLS = {
    "sequential": 100.0,
    "threads": 55.0,
    "workers": 60.0,
    "sequential+pruning": 80.0,
    "threads+pruning": 40.0,
    "workers-1core": 180.0,
    "workers-2cores": 62.0,
}


def rows(data: dict) -> dict:
    return hpo_rows(data, load_claims())


def test_claims_are_judged_as_stated_and_restated_for_the_jobs_run_here():
    got = rows(raw(WALLS))
    assert got["H1"]["claimed_here"] == 4.0  # as the report states it, for 4 jobs
    assert got["H1"]["measured"]["estimate"] == pytest.approx(100 / 55, rel=0.01)
    assert got["H1"]["verdict"] == "refuted"
    assert got["H1j"]["claimed_here"] == 2.0  # linear scaling restated for the 2 jobs run here
    assert got["H1j"]["verdict"] == "holds"
    assert "restated for 2: 2x" in got["H1j"]["reason"]
    assert got["H3"]["claimed_here"] == 5.7 and got["H3j"]["claimed_here"] == pytest.approx(2.85)


def test_fewer_than_3_repeats_give_no_verdict():
    data = raw(WALLS)
    data["records"] = [r for r in data["records"] if r["repeat"] < 2]
    got = rows(data)
    for cid in ("H1", "H1j", "H3", "H5", "S1"):
        assert got[cid]["verdict"] == "inconclusive", cid
        assert "n = 2: too few rounds" in got[cid]["reason"]


def test_a_run_failing_in_one_repeat_pairs_the_other_repeats_by_id():
    data = raw(WALLS)
    data["records"] = [r for r in data["records"] if not (r["run"]["name"] == "threads" and r["repeat"] == 1)]
    row = rows(data)["H1"]
    assert row["rounds"] == 2 and sorted(row["per_round"]) == ["0", "2"]


def test_pruned_share_has_a_wilson_interval_and_says_how_many_trials_would_decide():
    row = rows(raw(WALLS, pruned=6))["H2"]  # 6 of 20 in each of 3 repeats: 30%
    assert row["kind"] == "share"
    assert row["measured"]["estimate"] == pytest.approx(0.3)
    assert row["measured"]["low"] < 0.25 and row["measured"]["high"] > 0.36  # wider than the band
    assert row["verdict"] == "inconclusive"
    assert "epochs saved" in row["reason"] and "trials would decide it" in row["reason"]


def test_no_pruning_refutes_the_thirty_percent_claim():
    assert rows(raw(WALLS, pruned=0))["H2"]["verdict"] == "refuted"


def test_pruning_gain_and_time_saved_are_their_own_rows():
    got = rows(raw(WALLS))
    assert got["H5"]["measured"]["estimate"] == pytest.approx(55 / 40, rel=0.01)
    assert got["H6"]["measured"]["estimate"] == pytest.approx(1 - 80 / 100, rel=0.01)
    assert got["H6"]["verdict"] == "refuted"  # 20% saved, not ~30%


def test_core_scaling_compares_as_many_workers_as_pinned_cores_at_two_counts():
    row = rows(raw(WALLS))["S1"]
    assert row["measured"]["estimate"] == pytest.approx(180 / 62, rel=0.01)
    assert "not 8 vs 4: this machine has 2 cores" in row["reason"]
    assert "ceil(20/1)/ceil(20/2) = 2.00x (computed)" in row["reason"]


def test_core_scaling_on_sixteen_cores_is_8_vs_4_as_the_report_states_it():
    data = raw({"workers-4cores": 100.0, "workers-8cores": 70.0})
    data["plan"]["core_pair"], data["cores"] = [4, 8], 16
    row = rows(data)["S1"]
    assert row["measured"]["estimate"] == pytest.approx(100 / 70, rel=0.01)
    assert "8 worker processes on 8 pinned cores vs 4 on 4 (as the report states it)" in row["reason"]
    assert "ceil(20/4)/ceil(20/8) = 1.67x" in row["reason"]  # 5 waves against 3: 2x cannot be reached


def test_a_record_from_before_the_pinned_pair_still_reads_s1_as_it_was_measured():
    data = raw({"workers": 60.0})
    data["records"] += [
        {"run": {"name": "sequential-1core"}, "repeat": r, "wall_s": 180.0 * (1 + 0.01 * r)} for r in range(3)
    ]
    del data["plan"]["core_pair"]
    row = rows(data)["S1"]
    assert row["measured"]["estimate"] == pytest.approx(3.0, rel=0.01)
    assert "1 worker pinned to 1 core" in row["reason"]


def test_the_core_pair_is_the_one_s2_compares():
    from bench.hpo import core_pair_for

    assert [core_pair_for(k) for k in (1, 2, 4, 6, 8, 16)] == [(1, 1), (1, 2), (2, 4), (4, 6), (4, 8), (4, 8)]


def test_a_plan_can_name_its_runs_and_a_name_of_no_run_is_refused():
    from bench.hpo import check_run_names
    from diffusion.errors import ConfigError

    plan = HpoPlan(core_pair=(4, 8))
    only = check_run_names("workers-4cores, workers-8cores,workers-4cores", plan)
    assert only == ("workers-4cores", "workers-8cores")
    assert [run.name for run in runs(HpoPlan(core_pair=(4, 8), only=only))] == list(only)
    with pytest.raises(
        ConfigError, match=r"'workers-2cores' is no search of the suite here; choose from .*workers-8cores"
    ):
        check_run_names("workers-2cores", plan)


def test_a_cut_search_suite_reuses_its_finished_searches_and_runs_the_rest_in_the_same_order(monkeypatch):
    import bench.hpo as hpo

    made: list[tuple[str, int]] = []

    def fake_search(run, plan, params, directory, tag):
        made.append((run.name, int(tag.rsplit("-", 1)[1])))
        return {"run": {"name": run.name}, "wall_s": 1.0}

    monkeypatch.setattr(hpo, "run_search", fake_search)
    plan = HpoPlan(trials=2, repeats=2)
    whole = hpo.measure_hpo(plan)
    order = list(made)
    kept = {(r["repeat"], r["run"]["name"]): r for r in whole["records"][:5]}
    made.clear()
    resumed = hpo.measure_hpo(plan, done=kept)
    assert made == order[5:]  # only the rest, in the order a run from scratch takes
    assert [(r["repeat"], r["run"]["name"]) for r in resumed["records"]] == [(r, n) for n, r in order]
    assert resumed["reused"] == 5


def s4_row(data: dict, evidence: str | None) -> dict:
    claims = [replace(c, evidence=evidence) if c.id == "S4" else c for c in load_claims()]
    return hpo_rows(data, claims)["S4"]


def test_many_node_row_is_a_projection_that_shows_its_arithmetic():
    row = s4_row(raw(WALLS), None)
    assert row["kind"] == "projection" and row["verdict"] == "projection"
    assert row["measured"]["estimate"] == 5.0  # ceil(20/4) waves vs ceil(20/128)
    assert "ceil(20/4) = 5" in row["reason"] and "computed" in row["reason"]
    # The waves need no pruned run: a search suite run of S1 alone still shows them.
    assert s4_row(raw({"workers-1core": 10.0, "workers-2cores": 6.0}), None)["measured"]["estimate"] == 5.0


def test_many_node_row_with_a_simulation_record_shows_its_ratio_labelled_simulated(tmp_path):
    from tests.test_swarm import count, record

    path = tmp_path / "s4.json"
    path.write_text(json.dumps(record([count(1, 100.0), count(4, 380.0), count(128, 3800.0)])))
    row = s4_row(raw(WALLS), str(path))
    assert row["verdict"] == "projection (simulated)" and row["measured"]["estimate"] == pytest.approx(10.0)
    assert f"simulated ({path})" in row["reason"] and "ceil(20/4) = 5" in row["reason"]
    missing = s4_row(raw(WALLS), str(tmp_path / "none.json"))
    assert missing["verdict"] == "projection" and "no simulation record at" in missing["reason"]


def test_failed_runs_leave_rows_not_measured():
    data = raw({"sequential": 100.0})
    assert rows(data)["H1"]["verdict"] == "not measured"


def test_every_search_metric_of_the_registry_has_a_reading():
    from bench.hpo_analysis import HPO_READINGS
    from bench.suites import load_registry

    used = {c.metric for c in load_registry() if c.suite == "hpo" and c.status == "measured" and not c.product_of}
    assert used <= set(HPO_READINGS) and used  # the suite's readings table names every one


def test_fixed_parameter_list_is_reproducible_and_inside_the_space():
    from diffusion.hpo.space import check_params

    a, b = fixed_params(20, seed=3), fixed_params(20, seed=3)
    assert a == b and len(a) == 20
    for params in a:
        check_params(params)


def test_rss_slope_over_trials():
    assert rss_growth_per_trial(raw(WALLS)) == pytest.approx(1.0)
