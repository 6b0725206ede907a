"""Rich progress display and summary for the training CLI (rendering only; no measuring)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class TrainingProgress:
    """Epoch and step bar with samples/s and loss, fed by the trainer's callbacks."""

    def __init__(self, epochs: int, steps_per_epoch: int, batch_size: int, *, disable: bool = False) -> None:
        self.console = Console(file=sys.stderr)
        self.epochs, self.steps_per_epoch, self.batch_size = epochs, steps_per_epoch, batch_size
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
            TextColumn("{task.fields[rate]:>7.1f} samples/s"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[val]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=disable,
        )
        self.task = self.progress.add_task(
            "train", total=epochs * steps_per_epoch, epoch=1, epochs=epochs, rate=0.0, loss=float("nan"), val=""
        )
        self._last = time.perf_counter()
        self._window: list[float] = []

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def start_at(self, epoch: int) -> None:
        self.progress.update(self.task, completed=epoch * self.steps_per_epoch, epoch=min(epoch + 1, self.epochs))

    def on_step(self, step: int, loss: float) -> None:
        now = time.perf_counter()
        self._window = (self._window + [now - self._last])[-20:]
        self._last = now
        rate = self.batch_size * len(self._window) / sum(self._window)
        epoch = min((step - 1) // self.steps_per_epoch + 1, self.epochs)
        self.progress.update(self.task, completed=step, epoch=epoch, rate=rate, loss=loss)

    def on_epoch(self, record: dict[str, Any]) -> None:
        self.progress.update(self.task, val=f"val {record['val_loss']:.4f} ± {record['val_loss_stderr']:.4f}")
        self._last = time.perf_counter()  # validation time is not a step

    def print_summary(self, summary: dict[str, Any]) -> None:
        table = Table(title=f"{summary['path_spec']} @ {summary['preset']}", show_header=False)
        rows = [
            ("epochs", summary["epochs"]),
            ("train samples/s (last epoch, steady)", summary["train_samples_per_s"]),
            ("input wait share", summary["input_wait_share"]),
            ("val loss ± stderr", (summary["val_loss"], summary["val_loss_stderr"])),
            ("val pass s (last epoch)", summary["val_pass_s"]),
            ("first step s (incl. trace)", summary["first_step_s"]),
            ("checkpoint", summary["checkpoint"]),
        ]
        for name, value in rows:
            table.add_row(name, _fmt(value))
        Console().print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return " ± ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
