"""The quality suite: its analysis on hand-made records (pairing, direction, zeros, time to
quality), and the whole suite end to end at a toy size, resumed from its work directory."""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from bench.claims import load_claims
from bench.quality import UNTUNED_SEARCH, QualityPlan, time_to_target, ttq_path
from bench.quality_analysis import (
    ceiling_share,
    cost_figures,
    quality_reading,
    quality_rows,
    ttq_summary,
    verification_summary,
)
from diffusion.paths import ALT, NEU, format_path, parse_path
from diffusion.presets import get_preset
from tests.conftest import PYTHON, python_env


def recipe(loss: float, wall: float = 10.0, cpu: float = 12.0, overlap: float = 0.75, jobs: int = 1) -> dict:
    metrics = {
        name: {"generated": value, "ceiling": 1.0}
        for name, value in {
            "val_loss": loss,
            "fidelity": 0.5 / loss,
            "classifier_auc": 0.9,
            "physics_score": 0.2,
            "multiplicity_success": 0.4,
            "energy_violation": loss,
        }.items()
    }
    return {
        "search": {"wall_s": wall, "cpu_s": cpu, "run": {"jobs": jobs}, "trials": [{"seconds": wall / 2}] * 2},
        "train": {"wall_s": wall, "cpu_s": cpu, "summary": {"history": [{"val_pass_s": 0.5}, {"val_pass_s": 0.5}]}},
        "verify": {
            "wall_s": 3.0,
            "record": {
                "model_s": 1.0,
                "metrics": metrics,
                "selection": {
                    "select": 48,
                    "trigger_k": 3,
                    "events": 1000,
                    "detection_rate": {"shapley_generated": 0.8},
                    "selection_s": 0.2,
                    "top": 16,
                    "top_overlap": overlap,
                    "chance_overlap": 1 / 6,
                },
            },
        },
    }


def raw(pairs: dict[int, tuple[dict, dict]]) -> dict:
    return {
        "plan": {"preset": "tiny", "base_epochs": 5, "candidate_epochs": 30},
        "rounds": [{"seed": s, "recipes": {"base": b, "candidate": c}} for s, (b, c) in pairs.items()],
    }


def test_lower_is_better_metrics_are_base_over_candidate():
    record = raw({s: (recipe(0.3), recipe(0.2)) for s in range(3)})
    reading = quality_reading(record, "quality_val_loss")
    assert reading.interval.estimate == pytest.approx(1.5)
    assert reading.interval.n == 3
    assert quality_reading(record, "quality_fidelity").interval.estimate == pytest.approx(1.5)


def test_rounds_pair_by_seed_and_a_failed_phase_drops_only_its_seed():
    pairs = {0: (recipe(0.3), recipe(0.2)), 1: (recipe(0.4), recipe(0.2)), 2: (recipe(0.3), recipe(0.1))}
    pairs[1][1]["train"]["error"] = "diffusion.train exited 1: boom"
    reading = quality_reading(raw(pairs), "quality_val_loss")
    assert reading.per_round == {0: pytest.approx(1.5), 2: pytest.approx(3.0)}
    assert reading.interval.n == 2


def test_a_seed_with_a_zero_score_is_left_out_and_said():
    pairs = {s: (recipe(0.3), recipe(0.2)) for s in range(3)}
    pairs[1][0]["verify"]["record"]["metrics"]["physics_score"]["generated"] = 0.0
    reading = quality_reading(raw(pairs), "quality_physics_score")
    assert set(reading.per_round) == {0, 2}
    assert "seed(s) [1] left out" in reading.reason
    only = quality_reading(raw({1: pairs[1]}), "quality_physics_score")
    assert only.interval is None and "scored 0" in only.reason


def test_costs_need_only_their_phases():
    pairs = {s: (recipe(0.3), recipe(0.2)) for s in range(3)}
    pairs[0][1]["verify"] = {"error": "verify exited 1: boom"}
    assert quality_reading(raw(pairs), "cost_cpu_s").interval.n == 3
    assert quality_reading(raw(pairs), "quality_val_loss").interval.n == 2


def test_time_to_best_counts_the_users_verification_not_the_ceiling():
    record = raw({s: (recipe(0.3, wall=20.0), recipe(0.2, wall=10.0)) for s in range(3)})
    # search + train + the verification's model_s (1 s), not its whole wall time (3 s)
    assert quality_reading(record, "workflow_time_to_best").interval.estimate == pytest.approx(41.0 / 21.0)


def test_overlap_is_a_share_with_seeds_as_the_units():
    record = raw({s: (recipe(0.3), recipe(0.2, overlap=v)) for s, v in enumerate((0.7, 0.75, 0.8))})
    reading = quality_reading(record, "selection_overlap")
    assert reading.interval.estimate == pytest.approx(0.75)
    assert reading.interval.n == 3
    assert 0.6 < reading.interval.low < 0.75 < reading.interval.high < 0.9  # t over 3 seeds, sd 0.05
    assert "chance overlap 0.17" in reading.reason


def test_rows_give_verdicts_from_three_seeds_and_the_cost_row_shows_three_figures():
    record = raw(
        {s: (recipe(0.3, wall=20.0 + s, cpu=30.0), recipe(0.2, wall=10.0, cpu=20.0, jobs=2)) for s in range(3)}
    )
    rows = quality_rows(record, load_claims())
    assert {"Q1", "Q2", "Q5", "P1", "P2", "P3", "H4", "W1", "W2", "W3", "W4", "C1"} <= set(rows)
    assert rows["Q1"]["rounds"] == 3 and rows["Q1"]["measured"]["estimate"] == pytest.approx(1.5)
    assert rows["C1"]["measured"]["estimate"] == pytest.approx(1.5)
    assert "report's formula" in rows["C1"]["reason"] and "allocated" in rows["C1"]["reason"]
    assert "48 PMTs selected, trigger >= 3 hits" in rows["P1"]["reason"]
    figures = cost_figures({**record, "cores": 2})
    assert figures["candidate"]["measured_cpu"] == pytest.approx(40.0)
    assert figures["candidate"]["allocated"] == pytest.approx(40.0)  # (10 + 10) s x 2 cores
    assert figures["candidate"]["report_formula"] == pytest.approx(20.0)  # 2 trials x 5 s + 10 s


def test_time_to_target_counts_from_process_start_and_keeps_runs_that_never_reach_it():
    history = [{"epoch": 1, "val_loss": 0.5, "time": 105.0}, {"epoch": 2, "val_loss": 0.25, "time": 110.0}]
    record = {"started": 100.0, "summary": {"history": history}}
    assert time_to_target(record, 0.3) == {
        "reached": True,
        "seconds": 10.0,
        "epoch": 2,
        "epochs_run": 2,
        "best_loss": 0.25,
    }
    assert time_to_target(record, 0.1)["reached"] is False
    runs = [{"role": "base", "reached": r, "seconds": s, "epoch": 2} for r, s in ((True, 5.0), (False, None))] * 3
    runs += [{"role": "candidate", "reached": True, "seconds": float(s), "epoch": 1} for s in range(1, 7)]
    summary = ttq_summary({"ttq": {"target": 0.3, "target_rule": "r", "max_epochs": 9, "runs": runs}})
    assert summary["base"]["reached"] == 3 and summary["base"]["runs"] == 6
    assert math.isinf(summary["base"]["median_s"])  # half the runs never got there
    assert summary["candidate"]["median_s"] == pytest.approx(3.5)
    assert summary["candidate"]["ci_s"] == [1.0, 6.0]


def test_time_to_quality_validates_every_path_on_the_whole_set():
    tiny = get_preset("tiny")
    assert format_path(ttq_path(ALT, tiny)) == "alt:val_batches=100"
    assert format_path(ttq_path(NEU, tiny)) == "neu:val_batches=50"


def test_a_job_killed_before_its_record_starts_afresh(tmp_path):
    from bench.quality import Work

    work = Work(tmp_path)
    (tmp_path / "job" / "run").mkdir(parents=True)
    (tmp_path / "job" / "run" / "checkpoint.npz").write_bytes(b"half")
    record, reused = work.job("job", lambda folder: {"files": sorted(p.name for p in folder.iterdir())})
    assert record == {"files": []} and not reused
    assert work.job("job", lambda folder: {"files": "again"}) == (record, True)
    failed, _ = work.job("bad", lambda folder: {"error": "boom"})
    assert not (tmp_path / "bad.json").exists()  # a failed job runs again on resume


def test_the_plan_digest_names_what_the_work_directory_holds():
    assert QualityPlan().digest(ALT, NEU) != QualityPlan(events=500).digest(ALT, NEU)
    assert QualityPlan().digest(ALT, NEU) == QualityPlan(seeds=4, ttq_runs=8).digest(ALT, NEU)  # more jobs
    assert QualityPlan().digest(ALT, NEU) != QualityPlan().digest(ALT, parse_path("neu:clip_norm=none"))


def test_jobs_at_once_give_quality_verdicts_and_read_no_time():
    record = raw({s: (recipe(0.3, wall=20.0), recipe(0.2, wall=10.0)) for s in range(3)})
    record["plan"]["concurrent"] = 3
    for rnd in record["rounds"]:  # as bench.quality leaves the untuned recipe's search
        rnd["recipes"]["base"]["search"] = {"error": UNTUNED_SEARCH}
    rows = quality_rows(record, load_claims())
    assert rows["Q1"]["rounds"] == 3 and rows["Q1"]["measured"]["estimate"] == pytest.approx(1.5)
    assert rows["P1"]["rounds"] == 3
    for cid in ("H4", "W2", "W3", "C1", "P2"):
        assert rows[cid]["verdict"] == "not measured" and rows[cid]["measured"] is None, rows[cid]
        assert "3 jobs ran at once" in rows[cid]["reason"]
    assert "core-seconds" not in rows["C1"]["reason"]


def test_shares_of_the_ceiling_are_oriented_so_one_is_the_ceiling():
    assert ceiling_share("physics_score", 0.5, 0.98) == pytest.approx(0.5 / 0.98)
    assert ceiling_share("classifier_auc", 0.9, 0.5) == pytest.approx(0.2)  # 1 - |2 AUC - 1|
    assert ceiling_share("energy_violation", 0.28, 0.02) == pytest.approx(0.72 / 0.98)
    assert ceiling_share("val_loss", 0.2, None) is None
    summary = verification_summary(raw({s: (recipe(0.3), recipe(0.2)) for s in range(3)}))
    assert summary["ceiling_shares"]["physics_score"] == {"base": pytest.approx(0.2), "candidate": pytest.approx(0.2)}
    from bench.report_tables import verify_rows

    physics = next(r for r in verify_rows(summary) if r[0] == "physics_score")
    assert physics == ["physics_score", "0.2", "20%", "0.2", "20%", "1"]


def fake_jobs(monkeypatch, at_once: int) -> list[str]:
    """bench.quality's job makers replaced by records made at once: every training waits until
    ``at_once`` trainings run together (a barrier), so a run that does not overlap them fails."""
    import threading

    import bench.quality as quality

    made: list[str] = []
    together = threading.Barrier(at_once, timeout=20)

    def search(recipe, plan, seed):
        return lambda folder: made.append(f"search-{recipe.role}-{seed}") or {"best_params": {"lr": 1e-3}}

    def train(recipe, plan, seed, best, **_):
        def make(folder):
            together.wait()
            made.append(f"train-{recipe.role}-{seed}")
            return {"wall_s": 1.0, "summary": {"history": []}}

        return make

    def verify(plan, seed, run_dir):
        record = {"seed": seed, "run": run_dir.parent.name, "metrics": {"val_loss": {"generated": 0.5}}}
        return lambda folder: {"record": record}

    monkeypatch.setattr(quality, "search_job", search)
    monkeypatch.setattr(quality, "train_job", train)
    monkeypatch.setattr(quality, "verify_job", verify)
    return made


def test_jobs_at_once_overlap_skip_the_untuned_search_and_keep_rounds_by_seed(tmp_path, monkeypatch):
    from bench.quality import measure_quality

    made = fake_jobs(monkeypatch, at_once=3)
    plan = QualityPlan(seeds=3, concurrent=3)
    result = measure_quality(plan, ALT, NEU, tmp_path)
    assert not any(m.startswith("search-base") for m in made)
    assert sorted(m for m in made if m.startswith("search")) == [f"search-candidate-{s}" for s in range(3)]
    for seed, rnd in enumerate(result["rounds"]):
        assert rnd["seed"] == seed
        assert rnd["recipes"]["base"]["search"] == {"error": UNTUNED_SEARCH}
        for role in ("base", "candidate"):
            verified = rnd["recipes"][role]["verify"]["record"]
            assert (verified["seed"], verified["run"]) == (seed, f"seed{seed}-{role}-train")
    assert "jobs ran at once" in result["ttq"]["error"] and plan.job_count() == 15
    work = {p.name for p in tmp_path.iterdir()}
    assert work == {f"quality-tiny-{plan.digest(ALT, NEU)}"}
    assert QualityPlan(seeds=3).digest(ALT, NEU) not in str(work)  # one job at a time never reuses these


def test_one_job_at_a_time_runs_every_search(tmp_path, monkeypatch):
    from bench.quality import measure_quality

    made = fake_jobs(monkeypatch, at_once=1)
    plan = QualityPlan(seeds=2, ttq_runs=0)
    result = measure_quality(plan, ALT, NEU, tmp_path)
    assert [m for m in made if m.startswith("search")] == [
        "search-base-0", "search-candidate-0", "search-candidate-1", "search-base-1"
    ]  # fmt: skip
    assert "best_params" in result["rounds"][0]["recipes"]["base"]["search"]


def test_one_recipe_alone_runs_only_its_jobs_and_gives_no_ratio(tmp_path, monkeypatch):
    from bench.quality import measure_quality

    made = fake_jobs(monkeypatch, at_once=1)
    plan = QualityPlan(seeds=3, roles=("candidate",))
    result = measure_quality(plan, ALT, NEU, tmp_path)
    assert made and all("candidate" in m for m in made) and plan.job_count() == 9
    assert result["rounds"][0]["recipes"]["base"]["train"]["error"].startswith("not run: the run's recipes")
    assert "not run" in result["ttq"]["error"]
    record = raw({s: (recipe(0.3), recipe(0.2)) for s in range(3)})
    record["plan"]["roles"] = ["candidate"]
    rows = quality_rows(record, load_claims())
    assert rows["Q1"]["measured"] is None and "the base recipe was not run" in rows["Q1"]["reason"]
    assert rows["P3"]["rounds"] == 3  # the candidate's own overlap needs no base


def test_the_digest_separates_runs_alone_from_runs_at_once():
    assert QualityPlan(concurrent=2).digest(ALT, NEU) == QualityPlan(concurrent=8).digest(ALT, NEU)
    assert QualityPlan(concurrent=2).digest(ALT, NEU) != QualityPlan().digest(ALT, NEU)
    assert QualityPlan(roles=("candidate",)).digest(ALT, NEU) == QualityPlan().digest(ALT, NEU)  # the same jobs


def compare_run(*args: str) -> subprocess.CompletedProcess:
    """``python -m bench.compare alt neu ARGS`` in a fresh process, its output captured."""
    return subprocess.run(
        [PYTHON, "-m", "bench.compare", "alt", "neu", *args],
        capture_output=True,
        text=True,
        timeout=1200,
        env=python_env(),
    )


@pytest.mark.slow
def test_quality_suite_end_to_end_and_resumed(tmp_path):
    args = ["--suite", "quality", "--quality-seeds", "1", "--hpo-trials", "2", "--hpo-epochs", "2"]
    args += ["--quality-events", "40", "--ttq-runs", "1", "--work-dir", str(tmp_path / "work")]

    def compare(*extra: str) -> subprocess.CompletedProcess:
        return compare_run(*args, *extra)

    first = compare("--json", str(tmp_path / "q.json"))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "[1/8] quality seed0-" in first.stderr  # a line per finished job when piped
    result = json.loads((tmp_path / "q.json").read_text())
    rows = {r["id"]: r for r in result["claims"]}
    for cid in ("Q1", "Q2", "P1", "H4", "W2", "C1"):
        assert rows[cid]["rounds"] == 1 and rows[cid]["verdict"].startswith("inconclusive"), rows[cid]
    assert result["quality"]["ttq_summary"]["base"]["runs"] == 1
    assert "Time to quality" in first.stdout and "Verification of the final models" in first.stdout

    second = compare()  # the same plan: every job is reused
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stderr.count("(reused)") == 8
    rendered = subprocess.run(
        [PYTHON, "-m", "bench.compare", "--from", str(tmp_path / "q.json")],
        capture_output=True,
        text=True,
        env=python_env(),
    )
    assert rendered.returncode == 0 and "Time to quality" in rendered.stdout


@pytest.mark.slow
def test_jobs_at_once_and_one_recipe_alone_end_to_end(tmp_path):
    args = ["--suite", "quality", "--quality-seeds", "1", "--hpo-trials", "2", "--hpo-epochs", "1"]
    args += ["--quality-events", "40", "--work-dir", str(tmp_path / "work"), "--quality-concurrent", "2"]

    def compare(*extra: str) -> subprocess.CompletedProcess:
        return compare_run(*args, *extra)

    both = compare("--json", str(tmp_path / "both.json"))
    assert both.returncode == 0, both.stderr[-2000:]
    assert "[5/5] quality seed0-" in both.stderr  # ALT's search is not run: 5 jobs, a line each
    rows = {r["id"]: r for r in json.loads((tmp_path / "both.json").read_text())["claims"]}
    assert rows["Q1"]["rounds"] == 1 and rows["Q1"]["measured"] is not None
    assert rows["H4"]["verdict"] == "not measured" and "2 jobs ran at once" in rows["H4"]["reason"]
    assert "of ceiling" in both.stdout and "2 jobs ran at once" in both.stdout  # shares; time to quality

    alone = compare("--quality-roles", "candidate", "--json", str(tmp_path / "alone.json"))
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert alone.stderr.count("(reused)") == 3  # NEU's three jobs, from the same work directory
    rows = {r["id"]: r for r in json.loads((tmp_path / "alone.json").read_text())["claims"]}
    assert rows["Q1"]["measured"] is None and "the base recipe was not run" in rows["Q1"]["reason"]


@pytest.mark.slow
def test_a_crashed_child_is_named_by_its_signal():
    from bench.roles import failure

    crash = subprocess.run(
        [PYTHON, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], capture_output=True
    )
    assert failure("search", crash) == "search killed by SIGSEGV"
    error = subprocess.run([PYTHON, "-c", "import sys; sys.exit('boom')"], capture_output=True, text=True)
    assert failure("search", error) == "search exited 1: boom"
