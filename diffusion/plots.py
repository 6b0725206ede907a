"""What every PNG writer here shares: a figure without pyplot state, saved atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from diffusion.dataset import temp_beside


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure on an Agg canvas: no display, no global pyplot state.

    Lazy: matplotlib takes ~0.5 s to import, and only plotting needs it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: Path, dpi: int = 120) -> None:
    """Write ``fig`` to a temp file beside ``path`` and rename it over: never half an image."""
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
