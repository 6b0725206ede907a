"""Maps of PMT selections on the detector sphere (rendering only; the choosing is in selection.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from diffusion.errors import ConfigError
from diffusion.plots import new_figure, save_png

PANEL_COLUMNS = 2  # Mollweide panels are 2:1, so two columns keep a grid of several readable


def plot_selection(unit: np.ndarray, selections: dict[str, np.ndarray], path: Path) -> None:
    """Draw each selection as a Mollweide map of the sphere, selected PMTs highlighted, to a PNG.

    Longitude is the azimuth about +z (the beam axis of the simulated events) and latitude the
    elevation, so a selection's rings and caps keep their areas. The PNG is written to a temp
    file beside ``path`` and renamed over it, so a reader never sees half an image.

    Args:
        unit: (P, 3) unit vectors of the PMT positions (``Detector.unit``).
        selections: name -> 1-D integer PMT indices; one panel each, in dict order.
        path: the PNG to write; its directory must exist.

    Raises:
        ConfigError: ``unit`` not (P, 3), no selections, or a selection with indices outside [0, P).
    """
    unit = np.asarray(unit, dtype=float)
    if unit.ndim != 2 or unit.shape[1] != 3 or len(unit) == 0:
        raise ConfigError(f"`unit` must be a (P, 3) array of PMT directions, but got shape {unit.shape}.")
    if not selections:
        raise ConfigError("`selections` must name at least one selection, but got an empty dict.")
    for name, selected in selections.items():
        selected = np.asarray(selected)
        if selected.ndim != 1 or not np.issubdtype(selected.dtype, np.integer) or np.any(selected < 0):
            raise ConfigError(f"`selections[{name!r}]` must be 1-D integer PMT indices, but got {selected!r}.")
        if selected.size and selected.max() >= len(unit):
            raise ConfigError(
                f"`selections[{name!r}]` must hold indices below P={len(unit)}, but got {selected.max()}."
            )

    longitude = np.arctan2(unit[:, 1], unit[:, 0])
    latitude = np.arcsin(np.clip(unit[:, 2], -1.0, 1.0))
    columns = min(PANEL_COLUMNS, len(selections))
    rows = math.ceil(len(selections) / columns)
    fig = new_figure(figsize=(5.5 * columns, 3.2 * rows), layout="constrained")
    for i, (name, selected) in enumerate(selections.items()):
        ax = fig.add_subplot(rows, columns, i + 1, projection="mollweide")
        chosen = np.zeros(len(unit), dtype=bool)
        chosen[np.asarray(selected, dtype=np.intp)] = True
        ax.scatter(longitude[~chosen], latitude[~chosen], s=4, c="0.75", linewidths=0, label="other")
        ax.scatter(longitude[chosen], latitude[chosen], s=14, c="tab:red", linewidths=0, label="selected")
        ax.set_title(f"{name} ({chosen.sum()} of {len(unit)} PMTs)", fontsize=10)
        ax.tick_params(labelsize=7)
        ax.grid(True, linewidth=0.3)
    save_png(fig, path)
