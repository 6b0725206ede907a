"""The claims registry (``claims.toml``), loaded and validated into frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomllib

from diffusion.errors import ConfigError
from diffusion.paths import KNOBS

# metric -> (phase that measures it, True if a higher value is better)
METRICS: dict[str, tuple[str, bool]] = {
    "val_pass_s": ("validate", False),
    "train_samples_per_s": ("train", True),
    "train_peak_rss_mib": ("train", False),
    "val_peak_rss_mib": ("validate", False),
    "log_bytes": ("disk", False),
    "checkpoint_bytes": ("disk", False),
}
# Measured by the search suite (bench/hpo.py), not from worker records.
HPO_METRICS = (
    "hpo_thread_speedup",
    "hpo_pruned_share",
    "hpo_pruned_parallel_speedup",
    "hpo_core_speedup",
    "hpo_projection",
)
SUITES = ("speed", "hpo")
FAMILIES = ("validation", "training", "memory", "search", "quality", "selection", "scaling", "cost")
STATUSES = ("measured", "pending")


@dataclass(frozen=True)
class Claim:
    """One row of the seed report's claims.

    ``claimed`` is a ratio in "times better" form (see claims.toml). A claim is measured
    either on the two paths themselves (``factor`` empty), on the base path with the given
    knobs set to the candidate's values (an ablation), or as the product of other claims.
    """

    id: str
    family: str
    text: str
    claimed: float
    metric: str | None = None
    factor: tuple[str, ...] = ()
    product_of: tuple[str, ...] = ()
    alt: str | None = None
    neu: str | None = None
    tolerance: float = 0.20
    status: str = "measured"
    reason: str | None = None
    note: str | None = None  # what a reader must know to read the verdict right
    suite: str = "speed"  # which suite of `bench.compare --suite` measures it
    unit: str = "x"

    def __post_init__(self) -> None:
        where = f"claim {self.id!r}"
        if self.family not in FAMILIES:
            raise ConfigError(f"{where}: `family` must be one of {', '.join(FAMILIES)}, but got {self.family!r}.")
        if self.status not in STATUSES:
            raise ConfigError(f"{where}: `status` must be one of {', '.join(STATUSES)}, but got {self.status!r}.")
        if not self.claimed > 0:
            raise ConfigError(f"{where}: `claimed` must be positive, but got {self.claimed!r}.")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"{where}: `tolerance` must be in [0, 1), but got {self.tolerance!r}.")
        if self.status == "pending":
            if not self.reason:
                raise ConfigError(f"{where}: a pending claim needs a `reason`.")
            return
        if self.suite not in SUITES:
            raise ConfigError(f"{where}: `suite` must be one of {', '.join(SUITES)}, but got {self.suite!r}.")
        if self.product_of:
            return
        if self.suite == "hpo":
            if self.metric not in HPO_METRICS:
                raise ConfigError(
                    f"{where}: `metric` must be one of {', '.join(HPO_METRICS)}, but got {self.metric!r}."
                )
            return
        if self.metric not in METRICS:
            raise ConfigError(f"{where}: `metric` must be one of {', '.join(METRICS)}, but got {self.metric!r}.")
        for knob in self.factor:
            if knob not in KNOBS:
                raise ConfigError(f"{where}: unknown knob {knob!r} in `factor`; valid knobs: {', '.join(KNOBS)}.")


def load_claims(path: Path | None = None) -> list[Claim]:
    """Load and validate the registry; the packaged ``claims.toml`` unless a path is given.

    Raises:
        ConfigError: unreadable TOML, unknown fields, bad values, duplicate ids, or a
            product of unknown claims.
    """
    try:
        text = path.read_text() if path else resources.files("bench").joinpath("claims.toml").read_text()
        rows = tomllib.loads(text).get("claim", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"claims registry {path or 'bench/claims.toml'} is unreadable: {exc}") from None
    claims = []
    for row in rows:
        try:
            row = {**row, "factor": tuple(row.get("factor", ())), "product_of": tuple(row.get("product_of", ()))}
            claims.append(Claim(**row))
        except TypeError as exc:
            raise ConfigError(f"claim {row.get('id')!r}: {exc}") from None
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ConfigError(
            f"claim ids must be unique, but got duplicates: {sorted({i for i in ids if ids.count(i) > 1})}."
        )
    for claim in claims:
        missing = [p for p in claim.product_of if p not in ids]
        if missing:
            raise ConfigError(f"claim {claim.id!r}: `product_of` names unknown claims {missing}.")
    return claims
