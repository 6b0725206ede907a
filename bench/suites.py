"""Every suite as one entry of one table (``SUITES``): its ``--suite`` name and help, the hint a
claim it measures shows when it did not run, its metrics (named once, in its readings table),
its default preset and rounds, its own CLI options, the typed plan it builds from them, how it
measures, the claim rows it fills, and the part name of its partial record beside ``--json``.

bench.compare builds its parser, checks the registry, runs the suites and judges their rows by
iterating the table; adding a suite touches the table and the suite's own module. The speed and
scale suites fill the comparison record's top level (its schema), so compare runs them itself
(bench/speed_suite.py); the GPU suite has its own CLI (bench.gpu), whose records render here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import quality_suite, scaling_suite, search_suite, speed_suite
from bench.claims import METRICS, Claim, load_claims
from diffusion.cli import Parser
from diffusion.errors import ConfigError

if TYPE_CHECKING:
    from bench.compare_options import CompareOptions

Options = Callable[[Parser], None]
PlanFrom = Callable[[Any, "CompareOptions"], Any]  # (parsed arguments, common options) -> the suite's plan
Measure = Callable[[Any, "CompareOptions", list[Any]], dict[str, Any]]  # (plan, options, kept partials)
Rows = Callable[[dict[str, Any], list[Any]], dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Suite:
    """One suite.

    Attributes:
        name: its ``--suite`` value, and the ``suite`` of the claims it measures in claims.toml.
        hint: how to run it, shown in the row of a claim it measures when it did not run.
        metrics: the names of its readings (from its readings table, where each is named).
        about: its line of ``--suite``'s help (empty: not run by bench.compare).
        preset, rounds: its defaults where ``--preset`` / ``--rounds`` are not given.
        in_all: ``--suite all`` runs it.
        options: adds its own options to bench.compare's parser.
        plan: its typed plan, from the parsed arguments and the common options: built once,
            before any suite runs, so a bad option of any suite is refused first.
        key: where a comparison record keeps its raw record (None: compare runs it itself).
        measure: runs its plan: ``(plan, options, kept)``; ``kept`` gains its partial records.
        rows: the claim rows of its raw record, by claim id.
        partial: the part name of its partial record beside ``--json`` (None: none, or its own).
        waits: a claim it measures that a run did not read is pending (it waits for a record
            this run cannot make: a GPU's), not "not measured".
    """

    name: str
    hint: str
    metrics: Callable[[], Iterable[str]]
    about: str = ""
    preset: str | None = None
    rounds: int | None = None
    in_all: bool = True
    options: Options | None = None
    plan: PlanFrom | None = None
    key: str | None = None
    measure: Measure | None = None
    rows: Rows | None = None
    partial: str | None = None
    waits: bool = False


def gpu_metrics() -> Iterable[str]:
    from bench.gpu_analysis import GPU_READINGS

    return GPU_READINGS


def no_metrics() -> Iterable[str]:
    return ()


SUITES: tuple[Suite, ...] = (
    Suite(
        "speed",
        "add --suite speed (or all)",
        lambda: METRICS,
        about="V, T, M claims: ALT, NEU and the one-knob ablations in frozen turns, memory in whole processes",
        preset="seed",
        rounds=speed_suite.SPEED_ROUNDS,
        options=speed_suite.speed_options,
        plan=speed_suite.speed_plan,
    ),
    Suite(
        "hpo",
        "add --suite hpo (or all)",
        search_suite.search_metrics,
        about="H, S1, S4: the same fixed trials sequential, in threads, in workers, pruned",
        preset="tiny",
        options=search_suite.search_options,
        plan=search_suite.search_plan,
        key="search",
        measure=search_suite.measure_search,
        rows=search_suite.search_rows,
        partial="search",
    ),
    Suite(
        "scaling",
        "add --suite scaling (or all)",
        scaling_suite.scaling_metrics,
        about="S2: both paths at 1, 2, 4, ... cores by CPU affinity",
        preset="seed",
        rounds=scaling_suite.SCALING_ROUNDS,
        plan=scaling_suite.scaling_plan,
        key="scaling",
        measure=scaling_suite.measure_scaling,
        rows=scaling_suite.scaling_rows,
        partial="scaling",
    ),
    Suite(
        "quality",
        "add --suite quality (or all)",
        quality_suite.quality_metrics,
        about="Q, P, W, H4, C1: both recipes from search to verified model",
        preset="tiny",
        options=quality_suite.quality_options,
        plan=quality_suite.quality_plan,
        key="quality",
        measure=quality_suite.measure_quality_suite,
        rows=quality_suite.quality_rows,
        partial=None,  # resumes from --work-dir
    ),
    Suite(
        "scale",
        "add --suite scale",
        no_metrics,
        about="the speed suite at tiny, small and seed, each with --budget-minutes, ratios against model size",
        in_all=False,
        plan=speed_suite.speed_plan,
    ),
    Suite(
        "gpu",
        "needs a GPU: KERAS_BACKEND=jax python -m bench.gpu on a GPU machine (its record renders with --from)",
        gpu_metrics,
        in_all=False,
        waits=True,
    ),
)


def by_name() -> dict[str, Suite]:
    """The table by suite name (read from ``SUITES`` each time: a test may add a suite to it)."""
    return {s.name: s for s in SUITES}


def side_suites() -> tuple[Suite, ...]:
    """The suites whose raw records a comparison keeps under their own key."""
    return tuple(s for s in SUITES if s.key is not None)


def suite_names() -> tuple[str, ...]:
    """Every ``--suite`` value: the suites bench.compare runs, and all."""
    return (*(s.name for s in SUITES if s.about), "all")


def not_run_row(claim: Claim) -> dict[str, Any]:
    """The row of a measured claim that a run has no reading of: how to run its suite."""
    from bench.claim_rows import claim_row
    from bench.stats import Verdict

    suite = by_name()[claim.suite]
    if suite.waits:
        return claim_row(claim, verdict=Verdict.PENDING.value, reason=suite.hint)
    return claim_row(claim, reason=f"not measured in this run: {suite.hint}")


def load_registry(path: Path | None = None) -> list[Claim]:
    """The claims registry (bench/claims.py: ``load_claims``), every measured claim's ``suite``
    a suite of the table and its ``metric`` and ``beside`` among that suite's metrics.

    Raises:
        ConfigError: as ``load_claims``, or a claim's suite or metric that no suite has.
    """
    claims = load_claims(path)
    where = f"claims registry {path or 'bench/claims.toml'}"
    for claim in claims:
        if claim.status != "measured":
            continue
        suite = by_name().get(claim.suite)
        if suite is None:
            valid = ", ".join(by_name())
            raise ConfigError(f"{where}: claim {claim.id!r}: `suite` must be one of {valid}, but got {claim.suite!r}.")
        if claim.product_of:
            continue
        valid_metrics = tuple(suite.metrics())
        for name, value in (("metric", claim.metric), ("beside", claim.beside)):
            if (value is not None or name == "metric") and value not in valid_metrics:
                raise ConfigError(
                    f"{where}: claim {claim.id!r}: `{name}` must be one of {', '.join(valid_metrics)}, but got {value!r}."
                )
    return claims


def measure_side_suites(opts: CompareOptions, kept: list[Any]) -> dict[str, Any]:
    """Every side suite the run asks for, in the table's order, by its key (None: not run)."""
    return {
        s.key: s.measure(opts.plans[s.name], opts, kept) if opts.runs(s.name) and s.measure else None
        for s in side_suites()
    }


def side_rows(result: dict[str, Any], claims: list[Any]) -> dict[str, dict[str, Any]]:
    """The claim rows of every side suite whose raw record ``result`` holds. Where two suites
    give a row for one claim (the scaling suite notes S1, which the search suite measures), the
    row of the suite that owns the claim (its ``suite`` in the registry) wins."""
    owner = {c.id: c.suite for c in claims}
    rows: dict[str, dict[str, Any]] = {}
    for suite in side_suites():
        if result.get(suite.key) and suite.rows is not None:
            for cid, row in suite.rows(result[suite.key], claims).items():
                if cid not in rows or owner.get(cid) == suite.name:
                    rows[cid] = row
    return rows
