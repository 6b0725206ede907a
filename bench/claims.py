"""The claims registry (``claims.toml``), loaded and validated into frozen dataclasses."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bench.stats import KINDS
from diffusion.errors import ConfigError
from diffusion.files import json_error
from diffusion.outputs import check_readable_file
from diffusion.paths import KNOBS
from diffusion.shapes import NUMBER, ListOf, Record, check


@dataclass(frozen=True)
class Metric:
    """What the speed suite reads from a worker record for one claim.

    Attributes:
        phase: the phase that measures it ("validate", "train", or "disk": a one-epoch fit).
        key: the field of that phase's record.
        higher_is_better: throughput yes; time, memory and bytes no.
        unit: for display.
        requires: fields the record must carry for the reading to mean what the claim says
            (log bytes mean nothing without the tracking that wrote them).
    """

    phase: str
    key: str
    higher_is_better: bool
    unit: str
    requires: tuple[str, ...] = ()


METRICS: dict[str, Metric] = {
    "val_pass_s": Metric("validate", "val_pass_s", False, "s"),
    "val_samples_per_s": Metric("validate", "val_samples_per_s", True, "/s"),
    "train_samples_per_s": Metric("train", "train_samples_per_s", True, "/s"),
    "train_step_ms_median": Metric("train", "step_ms_median", False, "ms"),
    "train_peak_rss_mib": Metric("train", "peak_rss_mib", False, "MiB"),
    "train_rss_growth_mib": Metric("train", "rss_growth_mib", False, "MiB"),
    "val_peak_rss_mib": Metric("validate", "peak_rss_mib", False, "MiB"),
    "val_rss_growth_mib": Metric("validate", "rss_growth_mib", False, "MiB"),
    "log_bytes": Metric("disk", "log_bytes", False, "B", requires=("tracking",)),
    "checkpoint_bytes": Metric("disk", "checkpoint_bytes", False, "B"),
}
FAMILIES = (
    "validation",
    "training",
    "memory",
    "search",
    "workflow",
    "quality",
    "selection",
    "scaling",
    "cost",
)
STATUSES = ("measured", "pending", "not applicable")
RESCALES = ("jobs",)  # a claimed value restated for the parallel jobs run here (the seed ran 4)
SEED_JOBS = 4


@dataclass(frozen=True)
class Claim:
    """One quantitative statement of the seed report.

    ``claimed`` is the ratio (or share) as the report states it, in "times better" form for
    NEU (see claims.toml). A claim is measured on the two paths themselves (``factor`` empty),
    on the base path with the given knobs set to the candidate's values (an ablation), as the
    product of other claims, or by another suite. ``kind`` says how it is judged (bench.stats:
    ratio, share, exact, projection).
    """

    id: str
    family: str
    text: str
    claimed: float
    kind: str = "ratio"
    metric: str | None = None
    beside: str | None = None  # a second reading shown next to the verdict's, never judged
    factor: tuple[str, ...] = ()
    product_of: tuple[str, ...] = ()
    alt: str | None = None
    neu: str | None = None
    tolerance: float = 0.20
    margin: float = 0.10  # equivalence margin of an "equal" claim (claimed = 1)
    rescale: str | None = None
    status: str = "measured"
    reason: str | None = None
    note: str | None = None  # what a reader must know to read the verdict right
    suite: str = "speed"  # which suite measures it (bench/suites.py: SUITES)
    source: str | None = None  # where the report says it
    evidence: str | None = None  # a committed record (repo-relative) that the reading cites, e.g. S4's simulation

    def __post_init__(self) -> None:
        where = f"claim {self.id!r}"
        if self.family not in FAMILIES:
            raise ConfigError(f"{where}: `family` must be one of {', '.join(FAMILIES)}, but got {self.family!r}.")
        if self.status not in STATUSES:
            raise ConfigError(f"{where}: `status` must be one of {', '.join(STATUSES)}, but got {self.status!r}.")
        if self.kind not in KINDS:
            raise ConfigError(f"{where}: `kind` must be one of {', '.join(KINDS)}, but got {self.kind!r}.")
        if not self.claimed > 0:
            raise ConfigError(f"{where}: `claimed` must be positive, but got {self.claimed!r}.")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"{where}: `tolerance` must be in [0, 1), but got {self.tolerance!r}.")
        if not 0 < self.margin < 1:
            raise ConfigError(f"{where}: `margin` must be in (0, 1), but got {self.margin!r}.")
        if self.rescale is not None and self.rescale not in RESCALES:
            raise ConfigError(f"{where}: `rescale` must be one of {', '.join(RESCALES)}, but got {self.rescale!r}.")
        if self.status != "measured":
            if not self.reason:
                raise ConfigError(f"{where}: a claim with status {self.status!r} needs a `reason`.")
            return
        # `suite`, `metric` and `beside` are checked against the suite table (bench/suites.py:
        # ``load_registry``), where every suite names its own metrics.
        for knob in self.factor:
            if knob not in KNOBS:
                raise ConfigError(f"{where}: unknown knob {knob!r} in `factor`; valid knobs: {', '.join(KNOBS)}.")

    def claimed_here(self, jobs: int | None = None) -> float:
        """The claimed value this run is judged against: as stated, or restated for ``jobs``."""
        if self.rescale == "jobs" and jobs is not None:
            return self.claimed * jobs / SEED_JOBS
        return self.claimed


# The registry's shape, checked before its rows become Claims: a `[claim]` table where an array of
# tables (`[[claim]]`) belongs, or `claimed = inf` (TOML has inf and nan), is named by its field.
# Unknown fields are left to Claim(**row), which names them.
REGISTRY = Record(
    {},
    {
        "claim": ListOf(
            Record(
                {"id": str, "family": str, "text": str, "claimed": NUMBER},
                {
                    **dict.fromkeys(("kind", "metric", "beside", "alt", "neu", "rescale", "status"), str),
                    **dict.fromkeys(("reason", "note", "suite", "source", "evidence"), str),
                    "factor": ListOf(str),
                    "product_of": ListOf(str),
                    "tolerance": NUMBER,
                    "margin": NUMBER,
                },
            )
        )
    },
)


def load_claims(path: Path | None = None) -> list[Claim]:
    """Load and validate the registry; the packaged ``claims.toml`` unless a path is given.

    Raises:
        ConfigError: unreadable TOML, unknown fields, bad values, duplicate ids, or a
            product of unknown claims.
    """
    where = f"claims registry {path or 'bench/claims.toml'}"
    if path is not None:
        check_readable_file(path, "claims registry")
    try:
        text = path.read_text() if path else resources.files("bench").joinpath("claims.toml").read_text()
        registry = tomllib.loads(text)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad UTF-8 or TOML, a 5,000-digit integer
        raise ConfigError(f"{where} is unreadable: {json_error(exc)}") from None
    check(registry, REGISTRY, where)
    claims = []
    for row in registry.get("claim", []):
        try:
            row = {**row, "factor": tuple(row.get("factor", ())), "product_of": tuple(row.get("product_of", ()))}
            claims.append(Claim(**row))
        except TypeError as exc:
            raise ConfigError(f"{where}: claim {row.get('id')!r}: {exc}") from None
        except ConfigError as exc:  # a bad value: say in which file too
            raise ConfigError(f"{where}: {exc}") from None
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ConfigError(
            f"{where}: claim ids must be unique, but got duplicates: {sorted({i for i in ids if ids.count(i) > 1})}."
        )
    for claim in claims:
        missing = [p for p in claim.product_of if p not in ids]
        if missing:
            raise ConfigError(f"{where}: claim {claim.id!r}: `product_of` names unknown claims {missing}.")
    return claims
