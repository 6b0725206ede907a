"""What a suite read for one metric of the claims registry: the type the search and quality
suites' readings return and their rows are built from."""

from __future__ import annotations

from dataclasses import dataclass

from bench.stats import Interval


@dataclass(frozen=True)
class Reading:
    """One metric's interval (None: not measured, and ``reason`` says why) and its context.

    Attributes:
        base_value, candidate_value: the two sides' medians over rounds (seconds of a search,
            a quality metric), shown beside the ratio.
        per_round: the ratio per round (a search's repeat, a quality seed).
    """

    interval: Interval | None
    reason: str
    base_value: float | None = None
    candidate_value: float | None = None
    per_round: dict[int, float] | None = None
