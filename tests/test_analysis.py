"""Claim verdicts from synthetic worker records with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from bench.ablations import ablation_rows
from bench.analysis import assess_claims, rounds_done, watched_claims, watched_ratios
from bench.claim_rows import judged_row
from bench.claims import load_claims
from bench.report import markdown, render
from bench.report_cells import claim_cells, detail_lines, family_note
from bench.roles import ablation_roles, plan_roles
from bench.sequential import Schedule, decide
from bench.simultaneous import add_simultaneous
from bench.stats import Interval, interval_of, share_interval
from bench.suites import not_run_row
from diffusion.paths import ALT, NEU

# role: (val_pass_s, samples per pass, train_samples_per_s, val growth MiB, train growth MiB)
ROLE_FIGURES = {
    "base": (1.0, 1600, 100.0, 9.0, 15.0),
    "candidate": (0.125, 1280, 240.0, 20.0, 50.0),  # V1 8x faster, T1 2.4x; NEU grows more memory
    "base+val_batches": (0.4, 640, None, None, None),  # 2.5x per pass
    "base+val_batch_size": (1.6, 3200, None, None, None),  # twice the samples: 1.25x per sample, 0.625x per pass
    "base+val_compile": (0.4, 1600, None, None, None),  # 2.5x: more than the claimed 1.5x
    "base+loader": (None, None, 130.0, None, None),  # 1.3x
    "base+train_compile": (None, None, 150.0, None, None),  # 1.5x
    "base+clip_norm": (None, None, 80.0, None, None),  # clipping costs time; it cannot make a step faster
}
ROLES = [r.record() for r in plan_roles(ALT, NEU)]


def records(rounds: int = 6, noise: float = 0.01, fail: dict[str, int] | None = None) -> list[dict]:
    """Synthetic worker records; ``fail`` maps a role to the round whose worker failed."""
    rng = np.random.default_rng(0)
    out = []
    for r in range(rounds):
        for role, (val_s, samples, sps, val_growth, train_growth) in ROLE_FIGURES.items():
            if (fail or {}).get(role) == r:
                out.append({"role": role, "round": r, "error": "worker exited 1: boom"})
                continue
            phases = {}
            if val_s is not None:
                v = val_s * rng.lognormal(0, noise)
                phases["validate"] = {
                    "val_pass_s": v,
                    "peak_rss_mib": 760.0 + (val_growth or 0),
                    "rss_growth_mib": val_growth,
                    "val_samples": samples,
                    "val_samples_per_s": samples / v,
                    "val_loss_stderr": 0.01,
                    "first_val_pass_s": v,
                    "cores_busy": 1.0,
                }
            if sps is not None:
                phases["train"] = {
                    "train_samples_per_s": sps * rng.lognormal(0, noise),
                    "peak_rss_mib": 780.0 + (train_growth or 0),
                    "rss_growth_mib": train_growth,
                    "input_wait_share": 0.1,
                    "first_step_s": 0.5,
                    "cores_busy": 1.5,
                }
            rec = {"role": role, "round": r, "phases": phases}
            if r == 0 and role in ("base", "candidate"):
                tracking = "jsonl" if role == "base" else "tensorboard"
                rec["disk"] = {
                    "log_bytes": 300 if role == "base" else 1200,
                    "checkpoint_bytes": 10_000,
                    "tracking": tracking,
                }
            out.append(rec)
    return out


def verdicts(recs: list[dict], candidate: dict | None = None) -> dict[str, dict]:
    rows = assess_claims(load_claims(), recs, ROLES, ALT.knobs(), candidate or NEU.knobs(), not_run=not_run_row)
    return {row["id"]: row for row in rows}


def test_known_ratios_get_the_right_verdicts():
    rows = verdicts(records())
    expected = {
        "V1": "holds",
        "V2": "holds",
        "V3": "refuted",  # 1.25x per sample against 2x
        "V4": "exceeded",
        "V5": "holds",  # 2.5 x 1.25 x 2.5 = 7.8
        "T1": "holds",
        "T2": "holds",
        "T3": "holds",
        "T4": "refuted (reversed)",
        "T5": "refuted",  # 1.3 x 1.5 x 0.8 = 1.56 against 2.145
        "M1": "refuted",  # growth 15 -> 50 MiB is not "equal"
        "M2": "refuted",  # growth 9 -> 20 MiB: NEU +122%, not +25%
        "M3": "holds (exact)",  # logs 300 -> 1200 B: 0.25, as claimed
        "M4": "holds (exact)",
    }
    assert {k: rows[k]["verdict"] for k in expected} == expected
    assert rows["V1"]["measured"]["estimate"] == pytest.approx(8.0, rel=0.03)
    assert rows["Q6"]["verdict"] == "pending" and rows["Q6"]["reason"]
    assert rows["Q1"]["verdict"] == "not measured" and "--suite quality" in rows["Q1"]["reason"]
    assert rows["H1"]["verdict"] == "not measured" and "--suite hpo" in rows["H1"]["reason"]


def test_every_row_carries_its_kind():
    rows = verdicts(records())
    assert {rows[c]["kind"] for c in ("V1", "T1", "M1")} == {"ratio"}
    assert rows["M4"]["kind"] == "exact" and rows["H2"]["kind"] == "share" and rows["S4"]["kind"] == "projection"


def test_v3_is_judged_per_sample_with_the_pass_time_beside():
    row = verdicts(records())["V3"]
    assert row["metric"] == "val_samples_per_s"
    assert row["measured"]["estimate"] == pytest.approx(1.25, rel=0.03)
    assert row["beside"]["metric"] == "val_pass_s"
    assert row["beside"]["measured"]["estimate"] == pytest.approx(0.625, rel=0.03)


def test_memory_is_judged_on_growth_with_the_absolute_peak_beside():
    row = verdicts(records())["M1"]
    assert row["metric"] == "train_rss_growth_mib"
    assert row["measured"]["estimate"] == pytest.approx(15 / 50)
    assert row["beside"]["metric"] == "train_peak_rss_mib"
    assert row["beside"]["measured"]["estimate"] == pytest.approx(795 / 830)


@pytest.mark.parametrize("rounds", [1, 2])
def test_fewer_than_3_rounds_give_no_speed_or_memory_verdict(rounds):
    rows = verdicts(records(rounds=rounds))
    for cid in ("V1", "V2", "V3", "V4", "V5", "T1", "T2", "T3", "T4", "T5", "M1", "M2"):
        assert rows[cid]["verdict"] == "inconclusive", cid
        assert f"n = {rounds}: too few rounds" in rows[cid]["reason"], cid


def test_product_row_multiplies_the_measured_factors_round_by_round():
    rows = verdicts(records())
    assert rows["V5"]["measured"]["estimate"] == pytest.approx(2.5 * 1.25 * 2.5, rel=0.03)
    assert rows["V5"]["rounds"] == 6


def test_a_failed_worker_drops_its_round_from_the_factor_and_the_product_only():
    rows = verdicts(records(fail={"base+val_compile": 2}))
    assert rows["V4"]["rounds"] == 5 and "2" not in rows["V4"]["per_round"]
    assert rows["V2"]["rounds"] == 6
    assert rows["V5"]["rounds"] == 5 and sorted(rows["V5"]["per_round"]) == ["0", "1", "3", "4", "5"]
    for r, product in rows["V5"]["per_round"].items():
        factors = [float(rows[c]["per_round"][r]) for c in ("V2", "V3", "V4")]
        assert product == pytest.approx(np.prod(factors))
    assert rows["V5"]["ci"][0] < rows["V5"]["ci"][1]  # not a zero-width interval of mismatched rounds
    assert "boom" in rows["V4"]["reason"]


def test_all_rounds_of_an_ablation_failing_leave_the_claim_not_measured_with_the_error():
    every = [rec for rec in records() if rec["role"] != "base+loader"]
    every += [{"role": "base+loader", "round": r, "error": "worker exited 1: boom"} for r in range(6)]
    rows = verdicts(every)
    assert rows["T2"]["verdict"] == "not measured"
    assert "boom" in rows["T2"]["reason"]
    assert rows["T5"]["verdict"] == "not measured"


def test_knob_shared_by_both_paths_is_not_measured_and_says_so():
    rows = verdicts(records(), candidate=ALT.knobs())
    assert rows["T4"]["verdict"] == "not measured"
    assert "share clip_norm=None" in rows["T4"]["reason"]


def test_validation_rows_show_samples_and_loss_noise_beside_the_time():
    rows = verdicts(records())
    assert "samples/pass" in rows["V2"]["reason"] and "stderr" in rows["V2"]["reason"]


def test_every_statement_of_the_seed_report_has_a_row():
    rows = verdicts(records())
    assert len(rows) >= 35
    assert all(r["source"] for r in rows.values())


def test_ablations_are_derived_from_the_two_paths():
    names = [r.name for r in ablation_roles(ALT, NEU)]
    assert names == [  # in TrainingPath's field order
        "base+train_compile",
        "base+val_compile",
        "base+loader",
        "base+clip_norm",
        "base+val_batches",
        "base+val_batch_size",
        "candidate+xla",
    ]
    loader = ablation_roles(ALT, NEU)[2]
    assert (loader.reference, loader.knobs, loader.phases) == ("base", ("loader",), ("train",))
    both = [r.name for r in ablation_roles(ALT, NEU, both_ways=True)]
    assert "candidate-loader" in both
    xla = [r for r in plan_roles(ALT, NEU) if r.name == "candidate+xla"][0]
    assert xla.path.train_compile == "xla" and xla.path.loader == "prefetch"


def test_ablation_rows_compare_each_variant_with_its_reference():
    roles = [r.record() for r in plan_roles(ALT, NEU)]
    rows = {(r["role"], r["phase"]): r for r in ablation_rows(records(), roles)}
    assert rows[("base+train_compile", "train")]["ratio"]["estimate"] == pytest.approx(1.5, rel=0.03)
    assert rows[("candidate+xla", "train")]["ratio"] is None  # not in the synthetic records


def test_log_bytes_without_the_tracking_that_wrote_them_are_not_judged():
    recs = records()
    for rec in recs:
        rec.get("disk", {}).pop("tracking", None)
    row = verdicts(recs)["M3"]
    assert row["verdict"] == "not measured" and "carry tracking" in row["reason"]


# --- simultaneous verdicts and sequential runs ---------------------------------------------------


def ci(interval: Interval) -> list[float]:
    return [interval.low, interval.high]


def test_every_judged_row_carries_a_simultaneous_verdict_over_the_runs_family():
    rows = verdicts(records())
    family = [r for r in rows.values() if r["measured"] and r["kind"] in ("ratio", "share")]
    assert len(family) == 12  # V1-V5, T1-T5, M1, M2: M3 and M4 are exact, nothing else ran
    for row in family:
        sim = row["simultaneous"]
        assert sim["family"] == 12 and sim["confidence"] == pytest.approx(1 - 0.05 / 12)
        assert sim["ci"][0] <= row["ci"][0] and row["ci"][1] <= sim["ci"][1], row["id"]
    assert rows["M3"]["simultaneous"] == {
        "verdict": "holds (exact)",
        "ci": rows["M3"]["ci"],
        "confidence": None,
        "family": 12,
    }
    assert "simultaneous" not in rows["Q1"]  # not measured: nothing to judge


def test_a_verdict_near_its_band_edge_can_be_inconclusive_under_simultaneous_coverage():
    t3 = next(c for c in load_claims() if c.id == "T3")  # claimed 1.5: band 1.25 .. 1.8
    ratios = dict(enumerate(1.70 * np.exp(0.05 * np.linspace(-1, 1, 6))))
    row = judged_row(t3, interval_of(np.array(list(ratios.values()))), per_round=ratios)
    far = judged_row(
        t3, interval_of(np.full(6, 1.5) * np.exp(0.01 * np.arange(6))), per_round=dict(enumerate([1.5] * 6))
    )
    out = add_simultaneous([row] + [far] * 9)
    assert out[0]["verdict"] == "holds"
    assert out[0]["simultaneous"]["verdict"] == "inconclusive"
    assert out[0]["simultaneous"]["family"] == 10 and out[0]["simultaneous"]["confidence"] == pytest.approx(0.995)
    assert "simultaneous" not in row  # the input rows are left as they were


def test_a_share_is_judged_again_on_its_trials_and_an_unrebuildable_interval_says_none():
    h2 = next(c for c in load_claims() if c.id == "H2")
    share = judged_row(h2, share_interval(30, 40))
    derived = {**share, "per_round": {"0": 1.2, "1": 1.3, "2": 1.25}}  # a share derived from ratios
    out = add_simultaneous([share, derived])
    wider = share_interval(30, 40, 0.975)  # family of 2
    assert out[0]["simultaneous"]["ci"] == pytest.approx([wider.low, wider.high])
    assert out[1]["simultaneous"]["verdict"] is None and out[1]["simultaneous"]["ci"] is None


def test_a_sequential_run_judges_watched_claims_at_its_looks_level_and_others_at_95():
    recs = records(rounds=9)
    rows = {
        r["id"]: r
        for r in assess_claims(
            load_claims(), recs, ROLES, ALT.knobs(), NEU.knobs(), confidence=0.99, stop="decided: every claim decided"
        )
    }
    for cid in ("V1", "V5", "T1", "T5"):
        assert rows[cid]["confidence"] == pytest.approx(0.99)
        assert rows[cid]["ci"] == pytest.approx(ci(interval_of(np.array(list(rows[cid]["per_round"].values())), 0.99)))
        assert rows[cid]["simultaneous"]["confidence"] == pytest.approx(1 - 0.01 / 12)
    assert rows["M1"]["confidence"] == pytest.approx(0.95)  # memory is not watched
    assert rows["M1"]["simultaneous"]["confidence"] == pytest.approx(1 - 0.05 / 12)
    for cid in ("V1", "T4", "M1", "M3"):
        assert rows[cid]["n"] == 9 and rows[cid]["stop"] == "decided: every claim decided"
    assert "n" not in rows["H1"] and "stop" not in rows["Q1"]


def test_default_rows_are_judged_at_95_with_their_rounds_and_no_stop_reason():
    rows = verdicts(records())
    assert rows["T1"]["confidence"] == 0.95 and rows["T1"]["n"] == 6 and rows["T1"]["stop"] is None


def test_watched_claims_are_the_measurable_v_and_t_ratios_with_their_products():
    claims = load_claims()
    watched = watched_claims(claims, ROLES, ALT.knobs(), NEU.knobs())
    assert list(watched) == ["V1", "V2", "V3", "V4", "V5", "T1", "T2", "T3", "T4", "T5"]
    no_ablations = [r for r in ROLES if r["reference"] is None]
    assert list(watched_claims(claims, no_ablations, ALT.knobs(), NEU.knobs())) == ["V1", "T1"]


def test_watched_ratios_are_the_ratios_the_rows_are_judged_on():
    recs = records(rounds=5, fail={"base+val_compile": 2})
    claims = load_claims()
    watched = watched_claims(claims, ROLES, ALT.knobs(), NEU.knobs())
    got = watched_ratios(watched, recs, ROLES)
    rows = verdicts(recs)
    for cid, values in got.items():
        assert values.tolist() == pytest.approx(list(rows[cid]["per_round"].values())), cid
    assert len(got["V4"]) == 4 and len(got["V5"]) == 4 and len(got["V2"]) == 5
    assert rounds_done(recs) == 5


def test_the_looks_decision_and_the_rows_agree():
    schedule = Schedule.spending(8)
    recs = records(rounds=5)
    claims = load_claims()
    watched = watched_claims(claims, ROLES, ALT.knobs(), NEU.knobs())
    decision = decide(schedule, 5, watched_ratios(watched, recs, ROLES), watched)
    rows = {
        r["id"]: r for r in assess_claims(claims, recs, ROLES, ALT.knobs(), NEU.knobs(), confidence=decision.confidence)
    }
    for cid, interval in decision.intervals.items():
        assert rows[cid]["ci"] == pytest.approx([interval.low, interval.high]), cid
        assert rows[cid]["verdict"] == decision.verdicts[cid].value, cid


# --- rendering the simultaneous mark (bench.report) ------------------------------------------------


def near_edge_rows() -> dict[str, dict]:
    """T3 holds at 95% but not under the family of 10; T1 holds under both."""
    claims = {c.id: c for c in load_claims()}
    edge = dict(enumerate(1.70 * np.exp(0.05 * np.linspace(-1, 1, 6))))
    steady = dict(enumerate(2.4 * np.exp(0.01 * np.linspace(-1, 1, 6))))
    rows = [judged_row(claims["T3"], interval_of(np.array(list(edge.values()))), per_round=edge)]
    rows += [judged_row(claims["T1"], interval_of(np.array(list(steady.values()))), per_round=steady)] * 9
    return {r["id"]: r for r in add_simultaneous(rows)}


def a_result(claims: list[dict]) -> dict:
    return {
        "base": {"spec": "alt"},
        "candidate": {"spec": "neu"},
        "suite": "speed",
        "preset": "tiny",
        "rounds": 6,
        "wall_s": 1.0,
        "claims": claims,
        "ablations": [],
        "environment": {},
    }


def test_a_verdict_that_differs_under_simultaneous_coverage_is_marked_with_its_family():
    rows = near_edge_rows()
    assert claim_cells(rows["T3"])[6] == "holds †"
    assert claim_cells(rows["T1"])[6] == "holds"
    line = detail_lines(rows["T3"])[-1]
    assert line.startswith("† simultaneous 95% over the table (family of 10 claims, each interval at 99.50%)")
    assert "inconclusive" in line
    assert "family of 10 claims" in family_note(list(rows.values()))


def test_markdown_and_terminal_tables_both_carry_the_mark_and_its_footnote():
    rows = near_edge_rows()
    text = markdown(a_result([rows["T3"], rows["T1"]]))
    assert "| holds † |" in text and "family of 10 claims: every claim judged" in text
    assert "- T3: † simultaneous 95% over the table" in text
    console = Console(record=True, width=160)
    render(a_result([rows["T3"], rows["T1"]]), console)
    shown = console.export_text()
    assert "holds †" in shown and "family of 10 claims: every claim judged" in shown


def test_rows_saved_before_simultaneous_verdicts_render_without_a_mark():
    old = {k: v for k, v in near_edge_rows()["T3"].items() if k not in ("simultaneous", "confidence")}
    assert claim_cells(old)[6] == "holds"
    assert not any("simultaneous" in line for line in detail_lines(old))
    assert family_note([old]) is None and "†" not in markdown(a_result([old]))


def test_a_sequential_rows_stop_reason_and_level_are_in_its_details():
    row = {
        **near_edge_rows()["T1"],
        "rounds": 9,
        "n": 9,
        "stop": "decided: every claim decided at n = 9",
        "confidence": 0.9893,
    }
    assert "n = 9 rounds, stopped: decided: every claim decided at n = 9; interval at 98.93%" in detail_lines(row)[-1]
    # Cut by the budget after one timed round: the 3 rounds run include the memory rounds.
    cut = {**row, "rounds": 1, "n": 3, "stop": "budget: n = 1 before the look at 3", "confidence": 0.95}
    assert detail_lines(cut)[-1].endswith("n = 1 timed of 3 rounds, stopped: budget: n = 1 before the look at 3")


def test_rows_with_simultaneous_verdicts_fit_the_saved_claim_shape():
    from bench.shapes import CLAIM
    from diffusion.errors import ConfigError
    from diffusion.shapes import check

    rows = assess_claims(load_claims(), records(), ROLES, ALT.knobs(), NEU.knobs(), confidence=0.99, stop="budget")
    for row in rows:
        check(row, CLAIM, "a row")
    bad = {**rows[0], "simultaneous": {"verdict": "maybe", "family": 12}}
    with pytest.raises(ConfigError, match="simultaneous"):
        check(bad, CLAIM, "a row")
