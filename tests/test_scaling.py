"""The scaling suite: core counts, the table and S2 from synthetic records; a pinned worker."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from bench.claims import load_claims
from bench.measure import Job
from bench.runner import run_worker
from bench.scaling import core_counts, role_name, scaling_rows, scaling_table
from bench.worker import pin, thread_census
from diffusion.paths import ALT, NEU
from tests.conftest import TINY


@pytest.mark.parametrize(("usable", "counts"), [(1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (16, [1, 2, 4, 8, 16])])
def test_core_counts_double_up_to_the_machine(usable, counts):
    assert core_counts(usable) == counts


RATES = {("alt", 1): 100.0, ("alt", 2): 150.0, ("neu", 1): 1000.0, ("neu", 2): 1040.0}


def records(rounds: int = 4, skip: tuple[str, int] | None = None) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for r in range(rounds):
        for (path, cores), rate in RATES.items():
            if skip == (role_name(path, cores), r):
                out.append({"role": role_name(path, cores), "round": r, "error": "worker exited 1: boom"})
                continue
            phases = {
                "train": {"train_samples_per_s": rate * rng.lognormal(0, 0.005)},
                "validate": {"val_pass_s": 1.0 / cores},
            }
            out.append({"role": role_name(path, cores), "round": r, "phases": phases})
    return out


def test_table_gives_speedup_over_one_core_and_efficiency():
    table = {(row["path"], row["cores"]): row for row in scaling_table(records(), ["alt", "neu"], [1, 2])}
    alt2 = table[("alt", 2)]
    assert alt2["train_samples_per_s_speedup"]["estimate"] == pytest.approx(1.5, rel=0.01)
    assert alt2["train_samples_per_s_efficiency"] == pytest.approx(0.75, rel=0.01)
    assert table[("neu", 2)]["val_pass_s_speedup"]["estimate"] == pytest.approx(2.0)


def test_s2_compares_the_candidate_at_the_most_cores_with_half_and_says_which():
    raw = {"records": records(), "paths": ["alt", "neu"], "counts": [1, 2]}
    row = scaling_rows(raw, load_claims())["S2"]
    assert row["measured"]["estimate"] == pytest.approx(1.04, rel=0.01)
    assert row["verdict"] == "holds"  # "equal" within the 10% margin: NEU's compiled step barely uses a 2nd core
    assert "2 vs 1 cores" in row["reason"] and "not 8 vs 4" in row["reason"]


def test_s2_pairs_rounds_by_id_when_a_worker_fails():
    raw = {"records": records(skip=("neu@2cores", 1)), "paths": ["alt", "neu"], "counts": [1, 2]}
    row = scaling_rows(raw, load_claims())["S2"]
    assert row["rounds"] == 3 and sorted(row["per_round"]) == ["0", "2", "3"]


def test_one_core_machine_leaves_s2_not_measured():
    raw = {"records": [], "paths": ["alt", "neu"], "counts": [1]}
    assert scaling_rows(raw, load_claims())["S2"]["verdict"] == "not measured"


SIXTEEN = [1, 2, 4, 8, 16]


def sixteen_core_records(rounds: int = 3) -> list[dict]:
    """NEU on a 16-core machine: faster up to 8 cores, slower at 16; threads and busy cores by k."""
    rate = {1: 1500.0, 2: 2500.0, 4: 3600.0, 8: 4400.0, 16: 4100.0}
    return [
        {
            "role": role_name("neu", k),
            "round": r,
            "phases": {
                "train": {"train_samples_per_s": rate[k] * (1 + 0.01 * r), "cores_busy": 0.9 * k},
                "validate": {"val_pass_s": 1.0, "cores_busy": 0.5 * k},
            },
            "threads": {"count": 40 + k, "by_name": {"tf_XLAEigen": k, "python": 40}},
        }
        for r in range(rounds)
        for k in SIXTEEN
    ]


def test_s2_on_sixteen_cores_compares_8_with_4_as_the_report_states_it():
    raw = {"records": sixteen_core_records(), "paths": ["neu"], "counts": SIXTEEN}
    row = scaling_rows(raw, load_claims())["S2"]
    assert row["measured"]["estimate"] == pytest.approx(4400 / 3600, rel=1e-6)
    assert row["claimed_alt"] == "12 h" and "8 vs 4 cores" in row["reason"]
    assert "as the report states it" in row["reason"] and "not 8 vs 4" not in row["reason"]


def test_s2_on_six_cores_compares_the_most_with_the_next_count_and_says_not_8_vs_4():
    records = [rec for rec in sixteen_core_records() if rec["role"] in ("neu@4cores", "neu@1core", "neu@2cores")]
    row = scaling_rows({"records": records, "paths": ["neu"], "counts": [1, 2, 4]}, load_claims())["S2"]
    assert "4 vs 2 cores" in row["reason"] and "not 8 vs 4: this machine has 4" in row["reason"]


def test_scaling_suite_says_why_s1_is_not_measured_at_8_vs_4():
    raw = {"records": sixteen_core_records(), "paths": ["neu"], "counts": SIXTEEN}
    row = scaling_rows(raw, load_claims())["S1"]
    assert row["verdict"] == "not measured"
    assert "not measured at 8 vs 4 cores" in row["reason"] and "--suite hpo" in row["reason"]


def test_the_search_suites_own_s1_row_replaces_the_scaling_suites_note():
    from bench.compare import SCHEMA, reassess

    walls = {"sequential-1core": 100.0, "workers": 55.0}
    search = {
        "plan": {"preset": "tiny", "trials": 20, "epochs": 6, "jobs": 2, "repeats": 3, "seed": 0},
        "records": [
            {"run": {"name": name}, "repeat": r, "wall_s": wall * (1 + 0.01 * r)}
            for r in range(3)
            for name, wall in walls.items()
        ],
        "cores": 2,
    }
    scaling = {"records": records(), "paths": ["alt", "neu"], "counts": [1, 2]}
    result = {"schema": SCHEMA, "base": {"spec": "alt"}, "candidate": {"spec": "neu"}, "roles": [], "records": []}
    rows = {row["id"]: row for row in reassess({**result, "search": search, "scaling": scaling}, None)["claims"]}
    assert rows["S1"]["measured"]["estimate"] == pytest.approx(100 / 55, rel=0.01)
    assert rows["S2"]["verdict"] == "holds"


def test_table_shows_what_the_pinned_workers_used_cores_busy_and_threads():
    table = {row["cores"]: row for row in scaling_table(sixteen_core_records(), ["neu"], SIXTEEN)}
    assert table[4]["train_cores_busy"] == pytest.approx(3.6)
    assert table[4]["val_cores_busy"] == pytest.approx(2.0)
    assert table[4]["threads"] == 44 and table[4]["xla_pool_threads"] == 4
    assert table[16]["xla_pool_threads"] == 16  # XLA's pool, not the larger group of 'python' threads


def test_pin_sizes_xla_cpu_pool_with_the_other_pools(monkeypatch):
    pinned = []
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: pinned.append(list(cores)))
    monkeypatch.setattr(os, "environ", dict(os.environ))
    pin(1)
    assert pinned == [sorted(os.sched_getaffinity(0))[:1]]
    assert os.environ["PJRT_NPROC"] == os.environ["TF_NUM_INTRAOP_THREADS"] == "1"


def test_thread_census_counts_this_process_threads_by_name():
    named, release = threading.Barrier(3), threading.Event()

    def pool_thread() -> None:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
            comm.write("XLAEigen7")  # as XLA names its pool's threads, a number each
        named.wait()
        release.wait()

    threads = [threading.Thread(target=pool_thread) for _ in range(2)]
    for t in threads:
        t.start()
    named.wait()
    try:
        census = thread_census()
    finally:
        release.set()
        for t in threads:
            t.join()
    assert census["by_name"]["XLAEigen"] == 2
    assert census["count"] == sum(census["by_name"].values()) >= 3
    assert census["usable_cpus"] == len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_a_pinned_worker_runs_on_its_cores_with_thread_pools_to_match():
    record = run_worker(Job(NEU, TINY, ("train",), train_seconds=0.2, min_steps=3, cpus=1))
    assert "error" not in record, record.get("error")
    env = record["environment"]
    assert env["usable_cpus"] == 1
    assert env["env"]["TF_NUM_INTRAOP_THREADS"] == "1"
    assert record["job"]["cpus"] == 1
    assert record["threads"]["usable_cpus"] == 1 and record["threads"]["pools"]["PJRT_NPROC"] == "1"
    assert record["phases"]["train"]["cores_busy"] <= 1.05  # CPU seconds per wall second on one core


def test_paths_have_distinct_role_names_per_core_count():
    from bench.scaling import scaling_roles

    roles = scaling_roles({"alt": ALT, "neu": NEU}, [1, 2])
    assert [r.name for r in roles] == ["alt@1core", "alt@2cores", "neu@1core", "neu@2cores"]
    assert [r.cpus for r in roles] == [1, 2, 1, 2]
