"""A suite is one entry of bench.suites.SIDE_SUITES: compare runs it, keeps its raw record and
judges its rows by iterating the table, so a new suite touches the table and its own module."""

from __future__ import annotations

import json

import pytest

from bench import compare, suites
from bench.claim_rows import claim_row
from bench.claims import load_claims
from diffusion.paths import format_path


@pytest.fixture
def toy(monkeypatch):
    made: list[tuple[str, str]] = []

    def measure(args, base, candidate, kept):
        made.append((format_path(base), format_path(candidate)))
        return {"ratio": 2.5}

    def rows(raw, claims):
        (s4,) = [c for c in claims if c.id == "S4"]
        return {"S4": claim_row(s4, reason=f"toy suite: {raw['ratio']}x")}

    monkeypatch.setattr(suites, "SIDE_SUITES", (*suites.SIDE_SUITES, suites.Suite("toy", "toy", measure, rows, None)))
    return made


def test_a_toy_suite_added_to_the_table_is_a_suite_compare_runs_keeps_and_judges(toy, tmp_path, capsys):
    assert "toy" in suites.suite_names()
    out = tmp_path / "r.json"
    assert compare.main(["alt", "neu", "--suite", "toy", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert toy == [("alt", "neu")] and result["toy"] == {"ratio": 2.5}
    rows = {r["id"]: r for r in result["claims"]}
    assert "toy suite: 2.5x" in rows["S4"]["reason"]
    assert rows["T1"]["verdict"] == "not measured"  # the speed suite did not run
    raw = json.loads(out.with_suffix(".raw.json").read_text())
    assert raw["toy"] == {"ratio": 2.5} and raw["search"] is None
    # Judged again from the record, the toy's rows come back from the same table.
    again = compare.reassess(result, None)
    assert "toy suite: 2.5x" in {r["id"]: r for r in again["claims"]}["S4"]["reason"]


def test_the_side_suites_run_only_when_asked_for(toy):
    class Args:
        suite = "speed"

    assert suites.measure_side_suites(Args, None, None, []) == {s.key: None for s in suites.SIDE_SUITES}
    assert suites.side_rows({"toy": None, "search": None}, load_claims()) == {}
