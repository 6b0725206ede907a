"""The gate's outcome per metric (``Check``) and what CI reads of it: JUnit XML, a Markdown
summary (``--summary`` or ``$GITHUB_STEP_SUMMARY``) and GitHub Actions annotations. Pure
renderers, and the one function that writes them where they go."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusion.files import write_text_atomic


def machine() -> str:
    from diffusion.environment import cpu_model, usable_cpus

    return f"{cpu_model()}, {usable_cpus()} usable cores"


@dataclass(frozen=True)
class Check:
    """One gated metric's outcome; ``message`` says what a reader needs to act.

    Attributes:
        metric: the metric, in "times better" form (HEAD/REF > 1 is faster).
        ratio_name: what the ratio compares ("HEAD/REF", "neu/alt").
        expected: the ratio that means no change (1 for A/B; the stored ratio for a baseline).
        tolerance: the loss allowed before it fires.
        measured: the interval (estimate, low, high, n) or None if no round paired up.
        values: the two sides' medians, named, for the message.
        machine: where it ran.
        detectable: the loss (a share of ``expected``) this run would catch with 90% power,
            computed from its own per-round spread (``bench.stats.detectable_loss``); None
            below 2 rounds.
    """

    metric: str
    ratio_name: str
    expected: float
    tolerance: float
    measured: dict[str, float] | None
    values: str
    machine: str
    detectable: float | None = None

    @property
    def floor(self) -> float:
        return self.expected * (1 - self.tolerance)

    @property
    def passed(self) -> bool:
        return self.measured is not None and self.measured["high"] >= self.floor

    @property
    def message(self) -> str:
        head = f"{self.metric}: {self.ratio_name}"
        rule = f"floor {self.floor:.3g}x ({self.expected:.3g}x less {self.tolerance:.0%})"
        if self.measured is None:
            return f"NOT MEASURED {head}: no paired rounds; {self.values}; {rule}; on {self.machine}"
        m = self.measured
        got = f"{m['estimate']:.3g}x [{m['low']:.3g}, {m['high']:.3g}] over {m['n']} rounds"
        status = "ok" if self.passed else "REGRESSION"
        return f"{status} {head} {got}, {rule}{self.sees}; {self.values}; on {self.machine}"

    @property
    def sees(self) -> str:
        """What this run could have caught, for its message ("" when not computed)."""
        if self.detectable is None:
            return ""
        return f"; would catch a loss of {self.detectable:.1%} or more in 90% of runs (computed from this run's spread)"

    def record(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "ratio": self.ratio_name,
            "expected": self.expected,
            "tolerance": self.tolerance,
            "floor": self.floor,
            "measured": self.measured,
            "passed": self.passed,
            "detectable_loss": self.detectable,
            "message": self.message,
        }


def junit_xml(checks: list[Check], *, subject: str, seconds: float) -> str:
    """JUnit XML of a gate run: one test case per check; a regression is a failure and a check
    that could not be measured an error, each with the check's message (interval included)."""
    import xml.etree.ElementTree as ET

    failures = sum(c.measured is not None and not c.passed for c in checks)
    errors = sum(c.measured is None for c in checks)
    counts = {"tests": str(len(checks)), "failures": str(failures), "errors": str(errors), "time": f"{seconds:.3f}"}
    root = ET.Element("testsuites", name="bench.gate", **counts)
    suite = ET.SubElement(root, "testsuite", name=f"bench.gate: {subject}", skipped="0", **counts)
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname="bench.gate", name=f"{check.metric} {check.ratio_name}")
        if check.measured is None:
            ET.SubElement(case, "error", message=check.message, type="not measured").text = check.message
        elif not check.passed:
            ET.SubElement(case, "failure", message=check.message, type="regression").text = check.message
        else:
            ET.SubElement(case, "system-out").text = check.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def summary_markdown(checks: list[Check], *, subject: str, setup: str, seconds: float) -> str:
    """A Markdown summary of a gate run: the verdict, what ran, and a table row per check."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    verdict = "passed" if all(c.passed for c in checks) else "FIRED"
    where = checks[0].machine if checks else machine()
    lines = [
        f"### Regression gate {verdict}",
        "",
        f"{cell(subject)}: {setup}, {seconds:.0f} s on {where}.",
        "",
        "| check | ratio | estimate | 95% interval | rounds | floor | detectable loss (90% power, computed) | result |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for c in checks:
        floor = f"{c.floor:.3g}x"
        if c.measured is None:
            lines.append(f"| `{c.metric}` | {c.ratio_name} | - | - | 0 | {floor} | - | NOT MEASURED |")
            continue
        m = c.measured
        result = "ok" if c.passed else "**REGRESSION**"
        lines.append(
            f"| `{c.metric}` | {c.ratio_name} | {m['estimate']:.3g}x | [{m['low']:.3g}, {m['high']:.3g}] "
            f"| {m['n']} | {floor} | {'-' if c.detectable is None else f'{c.detectable:.1%}'} | {result} |"
        )
    lines += ["", *(f"- `{c.metric}`: {cell(c.values)}" for c in checks)]
    return "\n".join(lines) + "\n"


def annotation(level: str, title: str, message: str) -> str:
    """A GitHub Actions workflow command (``::error title=...::message``), escaped as GitHub
    reads it: a message may hold newlines and ``%``, a title also ``:`` and ``,``."""

    def escape(text: str, *, prop: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if prop else text

    return f"::{level} title={escape(title, prop=True)}::{escape(message)}"


def on_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def step_summary(args: Any) -> Path | None:
    """Where the Markdown summary goes: --summary, else GitHub's step summary file, else nowhere."""
    if args.summary is not None:
        return args.summary
    named = os.environ.get("GITHUB_STEP_SUMMARY")
    return Path(named) if named and not args.write_baseline else None


def write_ci_outputs(args: Any, checks: list[Check], summary: dict[str, Any], seconds: float) -> None:
    """JUnit XML, the Markdown summary and (under GitHub Actions) one annotation per check."""
    subject, setup = summary["subject"], summary["setup"]
    if args.junit is not None:
        write_text_atomic(args.junit, junit_xml(checks, subject=subject, seconds=seconds))
    markdown = step_summary(args)
    if markdown is not None:
        text = summary_markdown(checks, subject=subject, setup=setup, seconds=seconds)
        if args.summary is not None:
            write_text_atomic(markdown, text)
        else:  # GitHub's step summary collects every step's Markdown: add to it
            with markdown.open("a") as f:
                f.write(text)
    if on_github():
        for c in checks:
            print(annotation("notice" if c.passed else "error", f"bench.gate {c.metric}", c.message), flush=True)
