"""A suite is one entry of bench.suites.SUITES: compare builds its options, checks its claims'
metrics, runs it, keeps its raw record and judges its rows by iterating the table, so a new
suite touches the table and its own module. Here the toy suite's "module" is this file's
functions, and the table gains it by one added entry, nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import compare, suites
from bench.claim_rows import claim_row
from diffusion.errors import ConfigError
from diffusion.paths import format_path
from diffusion.presets import Preset

# ---- the toy suite's own module: options, a typed plan, its readings, measuring, rows


@dataclass(frozen=True)
class ToyPlan:
    level: int
    preset: Preset


TOY_READINGS = {"toy_ratio": lambda raw: raw["ratio"]}  # its metrics, named once


def toy_options(parser):
    parser.add_argument("--toy-level", type=int, default=1, help="how hard the toy works")


def toy_plan(args, opts):
    return ToyPlan(args.toy_level, opts.preset_or("tiny"))


def toy_measure(plan, opts, kept):
    return {
        "ratio": 2.5 * plan.level,
        "preset": plan.preset.name,
        "paths": [format_path(opts.base), format_path(opts.candidate)],
    }


def toy_rows(raw, claims):
    return {c.id: claim_row(c, reason=f"toy suite: {TOY_READINGS[c.metric](raw)}x") for c in claims if c.suite == "toy"}


TOY = suites.Suite(
    "toy",
    "add --suite toy (or all)",
    lambda: TOY_READINGS,
    about="X9: a toy",
    preset="tiny",
    options=toy_options,
    plan=toy_plan,
    key="toy",
    measure=toy_measure,
    rows=toy_rows,
)

TOY_CLAIM = (
    '[[claim]]\nid = "X9"\nfamily = "search"\ntext = "a toy"\nclaimed = 2.0\nsuite = "toy"\nmetric = "toy_ratio"\n'
)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """The table with the toy added (the one change a new suite makes outside its module), and a
    registry that adds the toy's claim to the committed one."""
    monkeypatch.setattr(suites, "SUITES", (*suites.SUITES, TOY))
    registry = tmp_path / "claims.toml"
    committed = Path(compare.__file__).with_name("claims.toml")
    registry.write_text(committed.read_text() + "\n" + TOY_CLAIM)
    return registry


def test_a_toy_suite_added_to_the_table_is_a_suite_compare_runs_keeps_and_judges(toy, tmp_path):
    assert "toy" in suites.suite_names()
    assert "--toy-level" in compare.build_parser().format_help()  # its own option, from the table
    out = tmp_path / "r.json"
    argv = ["alt", "neu", "--suite", "toy", "--toy-level", "3", "--claims", str(toy), "--json", str(out)]
    assert compare.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["toy"] == {"ratio": 7.5, "preset": "tiny", "paths": ["alt", "neu"]}
    rows = {r["id"]: r for r in result["claims"]}
    assert "toy suite: 7.5x" in rows["X9"]["reason"]  # the toy's metric passed the registry's check
    assert rows["T1"]["verdict"] == "not measured"  # the speed suite did not run
    raw = json.loads(out.with_suffix(".raw.json").read_text())
    assert raw["toy"]["ratio"] == 7.5 and raw["search"] is None
    # Judged again from the record, the toy's rows come back from the same table.
    again = compare.reassess(result, suites.load_registry(toy))
    assert "toy suite: 7.5x" in {r["id"]: r for r in again["claims"]}["X9"]["reason"]


def test_the_one_preset_option_reaches_the_toys_plan(toy, tmp_path):
    out = tmp_path / "r.json"
    assert compare.main(["--suite", "toy", "--preset", "small", "--claims", str(toy), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["toy"]["preset"] == "small"


def test_without_its_table_entry_a_suites_claims_are_refused(tmp_path):
    registry = tmp_path / "claims.toml"
    registry.write_text(TOY_CLAIM)
    with pytest.raises(ConfigError, match="`suite` must be one of speed, hpo, scaling, quality, scale, gpu"):
        compare.main(["--suite", "speed", "--claims", str(registry)])


def test_the_side_suites_run_only_when_asked_for(toy):
    from bench.compare_options import build_parser, options_from

    opts = options_from(build_parser().parse_args(["--suite", "speed", "--claims", str(toy)]))
    assert suites.measure_side_suites(opts, []) == {s.key: None for s in suites.side_suites()}
    assert suites.side_rows({"toy": None, "search": None}, list(opts.claims)) == {}
