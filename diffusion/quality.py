"""Verification metrics: how close generated events are to simulated events of the same truth.

Pure NumPy functions of events and detector geometry. Each metric is computed twice by
``diffusion.verify``: generated against simulated, and simulated against an independent
simulated set of the same truth (``Detector.respond`` with another generator). The second is
the ceiling: what a perfect model would score with these sample sizes and binnings.

Definitions (the README repeats them):

- *Separation power* of two histograms p, q (normalised): 0.5 * sum (p - q)^2 / (p + q), the
  triangular discrimination of the CaloChallenge 2022 evaluation; 0 for identical
  distributions, 1 for disjoint ones. Bins: quantiles of the reference set.
- *Reconstruction fidelity*: 1 - the mean separation power over five observables (number of
  hit PMTs, total charge, charge centroid, the charge-weighted ring-angle distribution, the
  time-residual spread) and over energy bins (terciles of the true energy).
- *Physics score*: the share of generated events that are physical (the charge-weighted
  ring-angle histogram peaks within the Cherenkov band, the hits are causal, no PMT below
  zero charge), over the same share for simulated events.
- *Energy violation*: the share of events whose total charge / true energy lies outside the
  central 99% of simulated events in the same energy bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffusion.detector import SPEED_OF_LIGHT_M_PER_NS, Detector, Events

OBSERVABLES: tuple[str, ...] = ("nhit", "total_charge", "centroid", "ring_angle", "time_spread")
ENERGY_BINS = 3  # terciles of the true energy: enough events per bin at a few hundred events
HIST_BINS = 20
ANGLE_EDGES_DEG = np.arange(0.0, 180.0 + 5.0, 5.0)  # the ring-angle histogram of one event
CAUSAL_EARLY_NS = 10.0  # ~3 sigma of a single photoelectron's jitter (0.33 + sqrt(10) ns)
CAUSAL_MAX_EARLY_SHARE = 0.1  # dark hits come at random times; a few early hits are physical
NEGATIVE_CHARGE_PE = -0.5  # a decoded charge below this is a PMT darker than "no light"
ENERGY_BAND = (0.005, 0.995)  # the central 99%


@dataclass(frozen=True, eq=False)
class Observables:
    """Per-event observables and per-hit ring angles of a set of events.

    Attributes:
        per_event: name -> (N,) values; ``time_spread`` is NaN for events with fewer than 2 hits.
        hit_angle_deg, hit_weight, hit_event: per hit: angle between the leading ring's
            direction and the vertex-to-PMT direction, its charge, and its event index.
        residual_ns: per hit: time minus the straight time of flight from the vertex.
    """

    per_event: dict[str, np.ndarray]
    hit_angle_deg: np.ndarray
    hit_weight: np.ndarray
    hit_event: np.ndarray
    residual_ns: np.ndarray


def observables(events: Events, detector: Detector) -> Observables:
    """The observables of every event, from its hits and its truth (vertex, leading ring)."""
    cfg = detector.config
    hit = events.hit
    charge = np.where(hit, events.charge, 0.0).astype(np.float64)
    total = charge.sum(axis=1)
    centroid = np.linalg.norm(charge @ detector.unit, axis=1) / np.maximum(total, 1e-12)
    lead = events.direction[np.arange(len(events)), np.argmax(events.energy, axis=1)].astype(np.float64)
    event_idx, pmt_idx = np.nonzero(hit)
    offset = detector.positions[pmt_idx] - events.vertex[event_idx].astype(np.float64)
    distance = np.linalg.norm(offset, axis=1)
    cos = np.einsum("hd,hd->h", offset / distance[:, None], lead[event_idx])
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    residual = events.time[event_idx, pmt_idx] - distance * cfg.refractive_index / SPEED_OF_LIGHT_M_PER_NS
    counts = np.bincount(event_idx, minlength=len(events))
    mean = np.bincount(event_idx, residual, len(events)) / np.maximum(counts, 1)
    var = np.bincount(event_idx, (residual - mean[event_idx]) ** 2, len(events)) / np.maximum(counts - 1, 1)
    spread = np.where(counts >= 2, np.sqrt(var), np.nan)
    per_event = {
        "nhit": counts.astype(np.float64),
        "total_charge": total,
        "centroid": centroid,
        "time_spread": spread,
    }
    return Observables(per_event, angle, charge[event_idx, pmt_idx], event_idx, residual)


def separation_power(p: np.ndarray, q: np.ndarray) -> float:
    """Triangular discrimination of two histograms (each normalised here); 0 when both are empty."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 1.0 if p.sum() != q.sum() else 0.0
    p, q = p / p.sum(), q / q.sum()
    both = (p + q) > 0
    return float(0.5 * np.sum((p[both] - q[both]) ** 2 / (p[both] + q[both])))


def reference_edges(values: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Bin edges at the reference set's quantiles (equal-count bins), outer edges open."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([-np.inf, np.inf])
    inner = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.concatenate([[-np.inf], inner, [np.inf]])


def binned_separation(
    reference: np.ndarray, other: np.ndarray, *, ref_weight: np.ndarray | None = None, weight: np.ndarray | None = None
) -> float:
    """Separation power of two samples, binned at the reference's quantiles; NaNs are dropped."""
    edges = reference_edges(reference)
    keep_r, keep_o = np.isfinite(reference), np.isfinite(other)
    p, _ = np.histogram(reference[keep_r], edges, weights=None if ref_weight is None else ref_weight[keep_r])
    q, _ = np.histogram(other[keep_o], edges, weights=None if weight is None else weight[keep_o])
    return separation_power(p, q)


def energy_bins(energy: np.ndarray, n: int = ENERGY_BINS) -> np.ndarray:
    """(N,) bin index 0..n-1 of the total true energy, by terciles (or n-tiles) of ``energy``."""
    edges = np.quantile(energy, np.linspace(0, 1, n + 1)[1:-1])
    return np.searchsorted(edges, energy, side="right")


def separation_table(reference: Observables, other: Observables, bins: np.ndarray) -> dict[str, list[float]]:
    """Separation power per observable and energy bin (both sets share the truth, so the bins)."""
    table: dict[str, list[float]] = {name: [] for name in OBSERVABLES}
    for b in range(int(bins.max()) + 1):
        in_bin = bins == b
        for name in OBSERVABLES:
            if name == "ring_angle":  # a per-hit distribution, weighted by charge
                r, o = in_bin[reference.hit_event], in_bin[other.hit_event]
                sp = binned_separation(
                    reference.hit_angle_deg[r],
                    other.hit_angle_deg[o],
                    ref_weight=reference.hit_weight[r],
                    weight=other.hit_weight[o],
                )
            else:
                sp = binned_separation(reference.per_event[name][in_bin], other.per_event[name][in_bin])
            table[name].append(sp)
    return table


def fidelity(table: dict[str, list[float]]) -> float:
    """1 - the mean separation power over observables and energy bins."""
    return 1.0 - float(np.mean([v for values in table.values() for v in values]))


def ring_peak_deg(obs: Observables, n_events: int) -> np.ndarray:
    """(N,) the centre of the highest bin of each event's charge-weighted ring-angle histogram."""
    bin_idx = np.clip(
        np.searchsorted(ANGLE_EDGES_DEG, obs.hit_angle_deg, side="right") - 1, 0, len(ANGLE_EDGES_DEG) - 2
    )
    hist = np.zeros((n_events, len(ANGLE_EDGES_DEG) - 1))
    np.add.at(hist, (obs.hit_event, bin_idx), obs.hit_weight)
    centres = 0.5 * (ANGLE_EDGES_DEG[1:] + ANGLE_EDGES_DEG[:-1])
    return np.where(hist.max(axis=1) > 0, centres[np.argmax(hist, axis=1)], np.nan)


def physical(obs: Observables, detector: Detector, raw_min_charge: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per event, each physics check and their conjunction ``all``.

    ``raw_min_charge`` is the smallest charge before decoding clipped it (generated events);
    simulated events have none below zero.
    """
    cfg = detector.config
    n = len(obs.per_event["nhit"])
    peak = ring_peak_deg(obs, n)
    band = np.abs(peak - cfg.cherenkov_angle_deg) <= 2 * cfg.ring_width_deg
    early = np.bincount(obs.hit_event, obs.residual_ns < -CAUSAL_EARLY_NS, n)
    causal = early <= CAUSAL_MAX_EARLY_SHARE * np.maximum(obs.per_event["nhit"], 1)
    charges = np.ones(n, bool) if raw_min_charge is None else raw_min_charge >= NEGATIVE_CHARGE_PE
    return {"ring_in_band": band, "causal": causal, "charge_non_negative": charges, "all": band & causal & charges}


def energy_violation(reference: Events, other: Events, bins: np.ndarray) -> float:
    """Share of ``other``'s events whose charge per MeV lies outside the reference's central 99%
    in the same energy bin."""
    energy = reference.energy.sum(axis=1)
    ref_ratio = np.where(reference.hit, reference.charge, 0).sum(axis=1) / energy
    ratio = np.where(other.hit, other.charge, 0).sum(axis=1) / other.energy.sum(axis=1)
    outside = np.zeros(len(other), bool)
    for b in range(int(bins.max()) + 1):
        in_bin = bins == b
        low, high = np.quantile(ref_ratio[in_bin], ENERGY_BAND)
        outside[in_bin] = (ratio[in_bin] < low) | (ratio[in_bin] > high)
    return float(outside.mean())
