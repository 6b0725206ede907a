"""Plots of a verification run: observables generated vs simulated, and example hit maps.
Rendering only; the numbers come from diffusion.quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffusion.detector import Detector, Events
from diffusion.plots import new_figure, save_png
from diffusion.quality import OBSERVABLES, Observables

LABELS = {
    "nhit": "hit PMTs",
    "total_charge": "total charge (pe)",
    "centroid": "|charge centroid|",
    "ring_angle": "angle to leading ring (deg), charge-weighted",
    "time_spread": "time-residual spread (ns)",
}


def _values(obs: Observables, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    if name == "ring_angle":
        return obs.hit_angle_deg, obs.hit_weight
    values = obs.per_event[name]
    return values[np.isfinite(values)], None


def plot_observables(sets: dict[str, Observables], path: Path) -> None:
    """One panel per observable, a step histogram per set (density), common bins."""
    fig = new_figure(figsize=(15, 3.2), layout="constrained")
    for i, name in enumerate(OBSERVABLES):
        ax = fig.add_subplot(1, len(OBSERVABLES), i + 1)
        pooled = np.concatenate([_values(obs, name)[0] for obs in sets.values()])
        edges = np.quantile(pooled, np.linspace(0.0, 1.0, 31)) if pooled.size else np.linspace(0, 1, 31)
        edges = np.unique(edges)
        for label, obs in sets.items():
            values, weights = _values(obs, name)
            if values.size and len(edges) > 1:
                ax.hist(values, edges, weights=weights, density=True, histtype="step", label=label)
        ax.set_xlabel(LABELS[name], fontsize=8)
        ax.tick_params(labelsize=7)
    fig.axes[0].legend(fontsize=7)
    save_png(fig, path)


def plot_hit_maps(detector: Detector, sets: dict[str, Events], path: Path, examples: int = 3) -> None:
    """Charge on the sphere (Mollweide) for the first ``examples`` events of each set: same
    truth in each column."""
    unit = detector.unit
    lon, lat = np.arctan2(unit[:, 1], unit[:, 0]), np.arcsin(np.clip(unit[:, 2], -1, 1))
    fig = new_figure(figsize=(4.2 * examples, 2.4 * len(sets)), layout="constrained")
    for row, (label, events) in enumerate(sets.items()):
        for col in range(min(examples, len(events))):
            ax = fig.add_subplot(len(sets), examples, row * examples + col + 1, projection="mollweide")
            q = np.log1p(np.where(events.hit[col], events.charge[col], 0.0))
            ax.scatter(lon, lat, c=q, s=6, cmap="viridis", linewidths=0, vmin=0)
            ax.set_title(f"{label}, event {col} ({int(events.multiplicity[col])} rings)", fontsize=8)
            ax.set_xticklabels([])
            ax.set_yticklabels([])
    save_png(fig, path)
