"""bench.repeat and bench.repeat_analysis: agreement across runs, why a verdict differs between
runs, what a run keeps, and the record's table."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from bench.repeat import SCHEMA, markdown
from bench.repeat_analysis import agreement, claim_bands, overlap, straddled, why_flipped
from bench.stats import claim_band
from tests.conftest import PYTHON, ROOT, python_env


def a_record() -> dict:
    runs = [
        {"verdicts": {"V2": "holds", "T1": "exceeded"}, "intervals": {"V2": "2.54 [2.28, 2.83]", "T1": "11 [9, 13]"}},
        {
            "verdicts": {"V2": "inconclusive", "T1": "exceeded"},
            "intervals": {"V2": "2.44 [1.9, 3.12]", "T1": "12 [10, 14]"},
        },
        {
            "verdicts": {"V2": "inconclusive", "T1": "exceeded"},
            "rows": {
                "V2": {
                    "estimate": 3.15,
                    "low": 2.85,
                    "high": 3.49,
                    "n": 5,
                    "band": [2.0833, 3.0],
                    "claimed": 2.5,
                    "family": "validation",
                },
                "T1": {
                    "estimate": 12.0,
                    "low": 10.0,
                    "high": 14.0,
                    "n": 5,
                    "band": [2.0, 2.88],
                    "claimed": 2.4,
                    "family": "training",
                },
            },
            "intervals": {"V2": "3.15 [2.85, 3.49]", "T1": "12 [10, 14]"},
        },
    ]
    for run in runs:
        run.update(load_before=[0.5, 0.5, 0.5], seconds=500.0)
    return {
        "schema": SCHEMA,
        "compare_args": ["alt", "neu"],
        "machine": "test CPU, 2 CPUs",
        "seconds": 1500.0,
        "runs": runs,
        "agreement": agreement([r["verdicts"] for r in runs]),
    }


@pytest.mark.parametrize(
    ("low", "high", "edges"),
    [(2.28, 2.83, []), (1.9, 3.12, [2.0833, 3.0]), (2.85, 3.49, [3.0]), (0.9, 2.5, [1.0, 2.0833])],
)
def test_straddled_names_the_edges_inside_the_interval(low, high, edges):
    assert straddled(low, high, (2.0833, 3.0), 2.5) == edges


def test_an_equal_claim_has_no_direction_edge():
    assert straddled(0.8, 1.2, (1 / 1.1, 1.1), 1.0) == [1 / 1.1, 1.1]


def test_agreement_counts_the_most_common_verdict():
    record = a_record()
    assert record["agreement"]["V2"] == {
        "verdict": "inconclusive",
        "agree": 2,
        "runs": 3,
        "counts": {"holds": 1, "inconclusive": 2},
    }
    assert record["agreement"]["T1"]["agree"] == 3


def test_a_flip_is_explained_by_the_edge_each_run_spans():
    record = a_record()
    reasons = why_flipped(record, {"V2": ((2.0833, 3.0), 2.5, "validation")})
    assert list(reasons) == ["V2"]  # T1 agrees in every run
    assert (
        reasons["V2"]
        == "band [2.08, 3] around 2.5x: holds in run 1; inconclusive in run 2 (spans 2.08, 3), 3 (spans 3)"
    )


def test_markdown_lists_stable_and_unstable_claims_and_the_reasons():
    text = markdown(a_record())
    assert "Validation and training claims with the same verdict in at least 3 of 3 runs: T1; fewer: V2." in text
    assert "- V2: band [2.08, 3] around 2.5x: holds in run 1;" in text


def test_overlap_counts_the_pairs_of_runs_whose_intervals_meet():
    record = a_record()
    # V2: [2.28, 2.83], [1.9, 3.12], [2.85, 3.49]: runs 1 and 3 miss each other. T1: all meet.
    assert overlap(record) == {"V2": (2, 3), "T1": (3, 3)}
    assert "overlap (target: at least 90% of pairs): T1 3/3 (100%), V2 2/3 (67%); below the target: V2." in markdown(
        record
    )
    for run in record["runs"]:  # an exact figure, a point per run, has no interval to overlap
        run["intervals"]["M3"] = "0.2 [0.2, 0.2]"
        run["verdicts"]["M3"] = "refuted (exact)"
    record["agreement"] = agreement([r["verdicts"] for r in record["runs"]])
    assert "M3" not in overlap(record)


def test_a_record_without_rows_takes_bands_and_families_from_the_registry():
    record = a_record()
    del record["runs"][2]["rows"]
    assert claim_bands(record)["V2"] == (claim_band(2.5, 0.2), 2.5, "validation")
    assert "- V2: band [2.08, 3] around 2.5x: holds in run 1; inconclusive in run 2 (spans 2.08, 3), 3 (spans 3)" in (
        markdown(record)
    )


def test_a_claim_missing_from_a_run_is_not_counted_as_agreeing():
    record = a_record()
    del record["runs"][1]["verdicts"]["T1"]
    record["agreement"] = agreement([r["verdicts"] for r in record["runs"]])
    reasons = why_flipped(record, claim_bands(record))
    assert reasons["T1"].endswith("exceeded in run 1, 3; not judged in run 2")


def test_from_renders_a_saved_record_and_bad_input_is_one_line_exit_2(tmp_path, blocked_tf):
    saved = tmp_path / "repeat.json"
    saved.write_text(json.dumps(a_record()))
    out = tmp_path / "repeat.md"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"schema": SCHEMA, "runs": []}))

    def repeat(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PYTHON, "-m", "bench.repeat", *args],
            capture_output=True,
            text=True,
            env=python_env(**blocked_tf),
            cwd=ROOT,
        )

    result = repeat("--from", str(saved), "--markdown", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text() == markdown(a_record())
    for args, message in [
        (["--from", str(tmp_path / "missing.json")], "is not a readable repeat record"),
        (["--runs", "1", "--json", str(tmp_path / "r.json")], "--runs must be at least 2"),
        (["--from", str(saved), "--json", str(tmp_path / "r.json")], "--from renders a saved record and runs nothing"),
        (["--from", str(broken)], "is not a complete repeat record"),
        ([], "--json FILE is required"),
    ]:
        bad = repeat(*args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert not (tmp_path / "r.json").exists()


def test_all_runs_together_are_judged_on_the_interval_of_the_run_estimates():
    import math

    from bench.repeat_analysis import pooled

    together = pooled(a_record())
    interval, word = together["V2"]
    assert interval.n == 3
    assert interval.estimate == pytest.approx(math.exp((math.log(2.54) + math.log(2.44) + math.log(3.15)) / 3))
    # Three runs scatter 2.44-3.15: the interval reaches past the band's top, 3.0.
    assert interval.high > 3.0 and word == "inconclusive"
    assert together["T1"][1] == "exceeded"  # 11-12x against 2.4x
    assert "| V2 | 2.69 [1.91, 3.79] | inconclusive |" in markdown(a_record())


def a_compare_result(ratios: list[float]) -> dict:
    """The parts of a bench.compare record that bench.repeat keeps."""
    from bench.stats import interval_of

    iv = interval_of(np.array(ratios))
    claim = {
        "id": "V3",
        "family": "validation",
        "verdict": "holds",
        "measured": {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "n": iv.n},
        "band": [5 / 3, 2.4],
        "claimed": 2.0,
        "claimed_here": 2.0,
        "confidence": 0.95,
        "per_round": {str(i): r for i, r in enumerate(ratios)},
    }
    records = [
        {"round": r, "role": role, "stages_s": {"setup": 30.0 + r, "train": 20.0}} for r in range(2) for role in "ab"
    ]
    return {
        "claims": [claim, {"id": "Q1", "family": "quality", "measured": None}],
        "sequential": {"stop": "decided: every claim decided at n = 6"},
        "records": records,
        "environment": {"git_commit": "abc"},
    }


def test_a_run_keeps_its_rounds_level_stop_and_stages():
    from bench.repeat import kept

    run = kept(a_compare_result([1.71, 1.66, 1.64, 1.75, 1.70, 1.72]))
    assert list(run["verdicts"]) == ["V3"]  # a quality row is not a speed verdict
    assert run["rows"]["V3"]["per_round"] == [1.71, 1.66, 1.64, 1.75, 1.70, 1.72]
    assert run["rows"]["V3"]["confidence"] == 0.95
    assert run["stop"] == "decided: every claim decided at n = 6"
    assert run["stages_s"] == [{"setup": 30.0, "train": 20.0}, {"setup": 31.0, "train": 20.0}]


def test_markdown_forecasts_each_claims_repeat_chance_from_the_kept_rounds():
    from bench.repeat import kept

    rng = np.random.default_rng(0)
    runs = []
    for _ in range(10):  # V3's case: 1.71 against the band's edge 1.667, a round's sd 0.033
        run = kept(a_compare_result(np.exp(rng.normal(math.log(1.71), 0.033, 6)).tolist()))
        run.update(load_before=[0.5, 0.5, 0.5], seconds=800.0)
        runs.append(run)
    record = {**a_record(), "runs": runs, "agreement": agreement([r["verdicts"] for r in runs])}
    text = markdown(record)
    assert "| run | wall s | rounds of turns | stop |" in text and "| 1 | 800 | 2 | decided: every claim" in text
    assert "How often each verdict should repeat: computed, not measured." in text
    table = text.split("How often each verdict should repeat")[1]
    line = next(x for x in table.splitlines() if x.startswith("| V3 |"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert float(cells[2]) == pytest.approx(0.033, abs=0.01)
    assert "inconclusive" in cells[4] and "holds" in cells[4]  # a coin flip at 6 rounds
    assert int(cells[5].rstrip("%")) < 50
    # Every run stopped with every claim decided: the table says its fixed-n chances understate them.
    assert "10 of the 10 runs stopped with every claim decided" in text


def test_a_forecast_says_where_its_chances_are_rounds_and_levels():
    from bench.repeat import at_runs
    from bench.repeat_forecast import Spread

    s = Spread(0.5, 0.03, 0.0, runs=10, n=8, mix=((8, 0.95, 0.6), (5, 0.982, 0.4)))
    assert at_runs(s) == "n = 5-8 at 95.0%-98.2%"
    assert at_runs(Spread(0.5, 0.03, 0.0, runs=10, n=6, mix=((6, 0.95, 1.0),))) == "n = 6"
    assert at_runs(Spread(0.5, 0.03, 0.0, runs=10, n=6, confidence=0.99)) == "n = 6 at 99.0%"
    # Two levels that print alike are one.
    assert at_runs(Spread(0.5, 0.03, 0.0, 10, 9, mix=((9, 0.96789, 0.5), (8, 0.96791, 0.5)))) == "n = 8-9 at 96.8%"
