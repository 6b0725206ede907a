"""Progress of long measurements: a bar on a terminal, one line per finished job when piped.

A run whose output goes to a file or a CI log must still say what it is doing: each finished
job prints what it was, how long it took and its headline numbers, so progress cannot be
mistaken for a hang.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console

from diffusion.progress import counted_bar, live


def headline(record: dict[str, Any]) -> str:
    """The numbers a reader scans for in a worker record (or its error)."""
    if "error" in record:
        return f"failed: {record['error']}"
    phases = record.get("phases", {})
    parts = []
    if "train" in phases:
        parts.append(f"{phases['train']['train_samples_per_s']:.4g} samples/s")
    if "validate" in phases:
        parts.append(f"val pass {phases['validate']['val_pass_s']:.3g} s")
    summary = record.get("summary") or record.get("record") or {}
    if "val_loss" in summary:  # a final training's last loss
        parts.append(f"val loss {summary['val_loss']:.4g}")
    if "metrics" in summary:  # a verification's headline
        parts.append(f"fidelity {summary['metrics']['fidelity']['generated']:.3g}")
    if "wall_s" in record:
        parts.append(f"{record['wall_s']:.0f} s wall")
    disk = record.get("disk") or {}
    if "log_bytes" in disk:  # a memory job that also fitted an epoch for M3/M4
        parts.append(f"logs {disk['log_bytes']} B, checkpoint {disk.get('checkpoint_bytes', 0) / 2**20:.1f} MiB")
    return ", ".join(parts) or "done"


class JobProgress:
    """``with JobProgress("speed", total) as progress: progress.done(what, record)``."""

    def __init__(self, name: str, total: int, *, console: Console | None = None) -> None:
        self.console = console or Console(file=sys.stderr)
        self.name, self.total, self.count = name, total, 0
        # A bar only when both streams are a terminal: `... | cat` or a CI log gets lines.
        self.live = live(self.console)
        self.progress = counted_bar(self.console, disable=not self.live)
        self.task = self.progress.add_task(name, total=total, last="")
        self._last = time.perf_counter()

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def done(self, what: str, record: dict[str, Any], *, detail: str | None = None) -> None:
        """One job finished: advance the bar, or print its line when output is not a terminal.

        Args:
            detail: what to show instead of the record's headline (a gate round's ratios).
        """
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        self.count += 1
        said = headline(record) if detail is None else detail
        self.progress.update(self.task, advance=1, description=self.name, last=f"{what}: {said}")
        if not self.live:
            line = f"[{self.count}/{self.total}] {self.name} {what} in {seconds:.1f} s: {said}"
            print(line, file=sys.stderr, flush=True)  # stdout stays the tables
