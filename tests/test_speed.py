"""The speed suite's plan and loop (bench/speed.py), with fake workers: no process starts."""

from __future__ import annotations

import pytest

from bench.analysis import assess_claims
from bench.claims import load_claims
from bench.sequential import Schedule
from bench.speed import MEMORY_ROUNDS, Sequential, SpeedPlan, measure, memory_only
from diffusion.paths import parse_path
from tests.conftest import TINY

ALT, NEU = parse_path("alt"), parse_path("neu")
# Each role's (train samples/s, validation pass s, validation samples/s), set so that every V/T
# claim holds exactly as the report states it (V1 8x, V2 2.5x, ..., T4 1.1x).
RATES = {
    "base": (50.0, 5.0, 320.0),
    "candidate": (120.0, 0.625, 2560.0),
    "base+val_batches": (None, 2.0, 320.0),
    "base+val_batch_size": (None, 10.0, 640.0),
    "base+val_compile": (None, 5.0 / 1.5, 480.0),
    "base+loader": (65.0, None, None),
    "base+train_compile": (75.0, None, None),
    "base+clip_norm": (55.0, None, None),
}


def plan(**changes) -> SpeedPlan:
    return SpeedPlan(ALT, NEU, TINY, **{"max_rounds": 16, "budget_s": 1e6, **changes})


def test_the_plan_leaves_xla_out_unless_asked_and_measures_memory_of_base_and_candidate_only():
    names = [role.name for role in plan().roles()]
    assert sorted(names) == sorted(RATES)
    assert "candidate+xla" in [role.name for role in plan(xla=True).roles()]
    memory = plan().memory()
    assert [role.name for role in memory.roles] == ["base", "candidate"] and memory.rounds == MEMORY_ROUNDS
    assert memory.disk_roles == ("base", "candidate") and plan(disk=False).memory().disk_roles == ()
    turns = plan().turns()
    assert turns.freeze is True and turns.turn_seconds is not None and turns.rounds == 16


def test_a_memory_record_keeps_memory_cpu_and_disk_and_drops_its_timings():
    record = {
        "phases": {"train": {"train_samples_per_s": 5.0, "rss_growth_mib": 12.0, "cores_busy": 1.5}},
        "disk": {"log_bytes": 10},
    }
    kept = memory_only(record)
    assert kept["phases"] == {"train": {"rss_growth_mib": 12.0, "cores_busy": 1.5}} and kept["disk"] == {
        "log_bytes": 10
    }
    assert kept["measured_for"] == "memory" and memory_only({"error": "x"}) == {"error": "x"}


class FakeTurns:
    """A turn-taking worker whose record reads its role's ``RATES``."""

    def __init__(self, job, root) -> None:
        self.name = next(name for name, role in ROLES.items() if role.spec == job.spec)

    def ask(self, request):
        if request is None or request["turn"] != "finish":
            return {"ready": True} if request is None else {"steps": 5, "seconds": 1.0}
        train, val_pass, val_rate = RATES[self.name]
        phases = {}
        if train is not None:
            phases["train"] = {"train_samples_per_s": train}
        if val_pass is not None:
            phases["validate"] = {"val_pass_s": val_pass, "val_samples_per_s": val_rate}
        return {"record": {"phases": phases, "environment": {}}}

    def freeze(self) -> None:
        pass

    def thaw(self) -> None:
        pass

    def close(self) -> None:
        pass


ROLES = {role.name: role for role in plan().roles()}


def fake_memory(job, root):
    phase = {"rss_growth_mib": 100.0, "peak_rss_mib": 900.0, "train_samples_per_s": 1.0, "val_pass_s": 9.0}
    return {"phases": {"validate": dict(phase), "train": dict(phase)}, "environment": {}}


def test_rounds_stop_at_the_first_look_where_every_claim_is_decided_and_rows_say_so():
    claims = load_claims()
    roles = [role.record() for role in plan().roles()]
    sequential = Sequential(claims, roles, ALT.knobs(), NEU.knobs(), max_rounds=16)
    out = measure(plan(), rule=sequential.rule, runner=fake_memory, start=FakeTurns)
    assert sequential.schedule == Schedule.spending(16)
    assert out["rounds"] == 5 and out["stop"].startswith("decided: every claim decided at n = 5, look 1 of 4")
    turns = [rec for rec in out["records"] if rec.get("measured_for") != "memory"]
    memory = [rec for rec in out["records"] if rec.get("measured_for") == "memory"]
    assert len(turns) == 5 * len(roles) and len(memory) == 2 * MEMORY_ROUNDS
    assert all("train_samples_per_s" not in rec["phases"]["train"] for rec in memory)  # speed is the turns' alone
    rows = {
        row["id"]: row
        for row in assess_claims(
            claims,
            out["records"],
            roles,
            ALT.knobs(),
            NEU.knobs(),
            confidence=sequential.decision.confidence,
            stop=sequential.decision.stop_note,
        )  # fmt: skip
    }
    for cid in ("V1", "V2", "V3", "V4", "V5", "T1", "T2", "T3", "T4", "T5"):
        assert rows[cid]["verdict"] == "holds" and rows[cid]["n"] == 5, (cid, rows[cid])
        assert rows[cid]["confidence"] == pytest.approx(Schedule.spending(16).confidence(5))
    assert rows["M1"]["verdict"] == "holds" and rows["M1"]["rounds"] == MEMORY_ROUNDS  # whole-process, at 95%


def test_the_looks_are_fixed_from_the_rounds_the_budget_holds_after_the_first_round():
    claims, roles = load_claims(), [role.record() for role in plan().roles()]
    one_round = [{"round": 0, "role": "base", "phases": {}}]
    fits = Sequential(claims, roles, ALT.knobs(), NEU.knobs(), max_rounds=16)
    fits.judge(one_round, elapsed_s=100.0, budget_s=1250.0)  # 12 rounds fit
    assert fits.schedule == Schedule.spending(12) and fits.schedule.looks == (5, 9, 12)
    short = Sequential(claims, roles, ALT.knobs(), NEU.knobs(), max_rounds=16)
    short.judge(one_round, elapsed_s=100.0, budget_s=450.0)  # 4 fit: one look, the plain 95% interval
    assert short.schedule.looks == (4,) and short.schedule.alphas == (pytest.approx(0.05),)
    capped = Sequential(claims, roles, ALT.knobs(), NEU.knobs(), max_rounds=6)
    capped.judge(one_round, elapsed_s=1.0, budget_s=1e6)
    assert capped.schedule.max_rounds == 6
    record = capped.record()
    assert record["looks"] == [6] and "T1" in record["watched"] and "M1" not in record["watched"]


@pytest.mark.slow
def test_the_disk_fit_writes_what_the_eager_path_writes_with_its_step_compiled(tmp_path):
    """M3/M4 read bytes of a one-epoch fit; the main job fits ALT with its step compiled."""
    from bench.measure import fit_path, measure_disk
    from diffusion.presets import get_preset
    from diffusion.trainer import Trainer, fit

    assert fit_path(ALT).train_compile == "graph" and fit_path(NEU) == NEU
    trainer = Trainer(get_preset("tiny"), ALT, seed=0)
    try:
        compiled = measure_disk(trainer)
        eager = Trainer(get_preset("tiny"), ALT, seed=0, data=trainer.data)
        try:
            fit(eager, 1, tmp_path)
        finally:
            eager.close()
    finally:
        trainer.close()
    sizes = {p.relative_to(tmp_path).as_posix(): p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()}
    assert compiled["fitted"] == "alt:train_compile=graph,val_compile=graph"
    assert sorted(compiled["files"]) == sorted(sizes)
    for name, size in sizes.items():  # the path's name in the checkpoint's metadata differs by a few bytes
        assert abs(compiled["files"][name] - size) <= max(16, 0.001 * size), (name, compiled["files"][name], size)


def test_a_budget_too_small_for_the_next_round_stops_between_looks_at_the_next_looks_level():
    claims, roles = load_claims(), [role.record() for role in plan().roles()]
    sequential = Sequential(claims, roles, ALT.knobs(), NEU.knobs(), max_rounds=16)
    sequential.judge([{"round": 0, "phases": {}}], elapsed_s=100.0, budget_s=1250.0)  # looks (5, 9, 12)
    records = [{"round": r, "phases": {}} for r in range(6)]
    decision = sequential.judge(records, elapsed_s=600.0, budget_s=650.0)  # a 7th round would end at 700 s
    assert decision.stop and decision.reason == "budget" and decision.n == 6
    assert decision.confidence == pytest.approx(sequential.schedule.confidence(9))
    assert "before the look at 9" in decision.stop_note
    going = Sequential(claims, roles, ALT.knobs(), NEU.knobs(), max_rounds=16)
    assert going.judge([{"round": 0, "phases": {}}], elapsed_s=100.0, budget_s=1250.0).stop is False


def test_a_run_whose_budget_fixed_its_last_look_says_budget_not_max_rounds():
    claims, roles = load_claims(), [role.record() for role in plan().roles()]
    sequential = Sequential(claims, roles, ALT.knobs(), NEU.knobs(), max_rounds=16)
    sequential.judge([{"round": 0, "phases": {}}], elapsed_s=100.0, budget_s=450.0)  # one look, at 4
    decision = sequential.judge([{"round": r, "phases": {}} for r in range(4)])
    assert decision.reason == "budget" and "the budget holds 4 of --rounds 16" in decision.stop_note


@pytest.mark.parametrize(
    "record",
    [
        {"phases": {"train": {"train_samples_per_s": float("nan")}}},
        {"phases": []},
        {"error": 3},
        [],
        {"phases": {"t": 1}},
    ],
)
def test_a_kept_worker_record_of_the_wrong_shape_is_refused_before_it_is_reused(record):
    from bench.shapes import WORKER_RECORD
    from diffusion.errors import ConfigError
    from diffusion.shapes import check

    check({"phases": {"train": {"train_samples_per_s": 5.0, "spec": "alt"}}}, WORKER_RECORD, "x")
    with pytest.raises(ConfigError, match="a worker record"):
        check(record, WORKER_RECORD, "--json's partial record")


def test_a_newline_in_a_table_cell_does_not_end_its_markdown_row():
    from bench.report import _md_table

    assert _md_table(("id",), [["Z1\n| injected |"]]).splitlines()[-1] == "| Z1 \\| injected \\| |"


def test_a_plan_without_memory_rounds_runs_turns_only():
    claims, roles = load_claims(), [role.record() for role in plan().roles()]
    sequential = Sequential(claims, roles, ALT.knobs(), NEU.knobs(), max_rounds=16)
    out = measure(plan(memory_rounds=0), rule=sequential.rule, runner=fake_memory, start=FakeTurns)
    assert out["memory_rounds"] == 0 and not [rec for rec in out["records"] if rec.get("measured_for") == "memory"]
    assert plan(memory_rounds=0).record()["memory"] is None


def test_the_header_says_what_simulating_data_cost_a_fresh_machine():
    from bench.report import header_line

    result = {"base": {"spec": "alt"}, "candidate": {"spec": "neu"}, "preset": "seed", "rounds": 3, "wall_s": 700.0}
    fresh = {**result, "sequential": {"data_s": 71.4}}
    assert "of which 71 s simulating and preparing the data the cache lacked" in header_line(fresh)
    assert "simulating" not in header_line({**result, "sequential": {"data_s": 0.01}})  # cached: nothing to say
    assert "simulating" not in header_line(result)  # records from before data_s


def test_only_a_resumed_run_labels_its_wall_time_as_the_last_invocations():
    from bench.report import header_line

    result = {"base": {"spec": "alt"}, "candidate": {"spec": "neu"}, "preset": "seed", "rounds": 3, "wall_s": 700.0}
    resumed = {**result, "sequential": {"reused": 9, "data_s": 0.0}}
    assert "700 s (last invocation; 9 jobs from the cut run)" in header_line(resumed)
    # A note of where a one-go record was made is no resumption.
    annotated = {**result, "sequential": {"reused": 0}, "provenance": "one H200"}
    assert "700 s" in header_line(annotated) and "last invocation" not in header_line(annotated)


def test_validation_spreads_over_turns_unless_whole_passes_are_asked_for():
    from bench.compare import build_parser
    from bench.compare_options import options_from
    from bench.speed_suite import speed_plan

    assert plan().turns().val_in_turns is True and plan().turns().job_options["val_warm_batches"] == 2
    assert plan(whole_val_passes=True).turns().val_in_turns is False
    args = build_parser().parse_args(["alt", "neu", "--whole-val-passes"])
    assert speed_plan(args, options_from(args)).turns().val_in_turns is False
