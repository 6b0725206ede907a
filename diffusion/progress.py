"""Progress of training and of a search: a bar on a terminal, one line per epoch or trial when
piped (rendering only; no measuring).

A run whose output goes to a file, a pipe or a SLURM log must still say what it is doing: the
bar draws nothing there (and rich prints its last frame cut at 80 columns), so each finished
epoch or trial prints one line of at most ``WIDTH`` columns instead, on stderr (stdout keeps
the summary). The bar runs only when both streams are a terminal, as ``bench/progress.py``
decides it.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

WIDTH = 80  # a piped line never wraps in an 80-column log viewer
RATE_WINDOW = 20  # steps the bar's samples/s averages over


def live(console: Console) -> bool:
    """A bar when stderr and stdout are both a terminal; lines otherwise (``| cat``, a log file)."""
    return console.is_terminal and sys.stdout.isatty()


def counted_bar(console: Console, *, disable: bool) -> Progress:
    """The bar of a count of finished units (jobs, stages): name, bar, n of total, elapsed, last."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=console,
        disable=disable,
    )


def fit_width(text: str, width: int = WIDTH) -> str:
    """``text`` cut to ``width`` columns, the cut marked with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


def say(text: str) -> None:
    print(fit_width(text), file=sys.stderr, flush=True)


def fit_job_detail(bar: Any, what: str, detail: str) -> str:
    """``detail`` cut so that ``bench.progress.JobProgress``'s piped line for ``what``
    (``[n/N] name what in S s: detail``, S up to 9999.9) fits ``WIDTH`` columns."""
    prefix = f"[{bar.total}/{bar.total}] {bar.name} {what} in 9999.9 s: "
    return fit_width(detail, max(WIDTH - len(prefix), 1))


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 100 else f"{s:.0f} s"


def epoch_line(record: dict[str, Any], epochs: int, seconds: float) -> str:
    """One finished epoch: losses, steady samples/s (the epoch without its first step) and wall time."""
    return fit_width(
        f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  "
        f"val {record['val_loss']:.4f} ± {record['val_loss_stderr']:.4f}  "
        f"{record['train_samples_per_s']:.0f} samples/s  {_seconds(seconds)}"
    )


class TrainingProgress:
    """Epoch and step bar with samples/s and loss, fed by the trainer's callbacks; one line per
    epoch when output is not a terminal.

    Args:
        epochs: the epoch to reach.
        steps_per_epoch: optimizer steps in one epoch.
        batch_size: samples per step.
        title: what is trained (``neu @ tiny``), for the piped header line.
        disable: neither bar nor lines (``--no-progress``).
    """

    def __init__(
        self, epochs: int, steps_per_epoch: int, batch_size: int, *, title: str = "", disable: bool = False
    ) -> None:
        self.console = Console(file=sys.stderr)
        self.epochs, self.steps_per_epoch, self.batch_size, self.title = epochs, steps_per_epoch, batch_size, title
        self.disabled = disable
        self.live = live(self.console) and not disable
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[loss]}"),
            TextColumn("{task.fields[val]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.live,
        )
        self.task = self.progress.add_task(
            "train",
            total=epochs * steps_per_epoch,
            epoch=1,
            epochs=epochs,
            rate="first step (tracing)",
            loss="",
            val="",
        )
        self._last: float | None = None  # None until the first step has run: it traces, and is left out
        self._window: list[float] = []
        self._epoch_start = time.perf_counter()

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def start_at(self, epoch: int) -> None:
        """The run starts (or resumes) after ``epoch`` completed epochs."""
        self.progress.update(self.task, completed=epoch * self.steps_per_epoch, epoch=min(epoch + 1, self.epochs))
        if not self.live and not self.disabled and epoch < self.epochs:
            say(
                f"training {self.title}: epochs {epoch + 1}-{self.epochs}, {self.steps_per_epoch} steps of {self.batch_size}"
            )
            say("samples/s: each epoch without its first step (where tracing lands)")
        self._epoch_start = time.perf_counter()

    @property
    def rate(self) -> float | None:
        """Samples/s over the last ``RATE_WINDOW`` steps; None before two steps (the first traces)."""
        return self.batch_size * len(self._window) / sum(self._window) if self._window else None

    def on_step(self, step: int, loss: float) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self._window = (self._window + [now - self._last])[-RATE_WINDOW:]
        self._last = now
        rate = self.rate
        epoch = min((step - 1) // self.steps_per_epoch + 1, self.epochs)
        text = f"{rate:>7.0f} samples/s" if rate is not None else ""
        self.progress.update(self.task, completed=step, epoch=epoch, rate=text, loss=f"loss {loss:.4f}")

    def on_epoch(self, record: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.progress.update(self.task, val=f"val {record['val_loss']:.4f} ± {record['val_loss_stderr']:.4f}")
        if not self.live and not self.disabled:
            say(epoch_line(record, self.epochs, now - self._epoch_start))
        self._epoch_start = now
        if self._last is not None:
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


# ---- a search: one line per finished trial ------------------------------------------------

FINISHED = ("COMPLETE", "PRUNED")  # what counts toward --n-trials
ENDED = (*FINISHED, "FAIL")


def _trial_seconds(trial: Any) -> float | None:
    seconds = trial.user_attrs.get("seconds")
    if seconds is None and trial.duration is not None:
        seconds = trial.duration.total_seconds()
    return seconds


def trial_line(trial: Any, finished: int, total: int, best: float | None) -> str:
    """One ended trial (an Optuna ``FrozenTrial``): its state, loss, epochs and time, and the best so far."""
    state = trial.state.name
    seconds = _trial_seconds(trial)
    took = f", {_seconds(seconds)}" if seconds is not None else ""
    steps = sorted(trial.intermediate_values)
    if state == "COMPLETE":
        epochs = f"{len(steps)} epoch" + ("" if len(steps) == 1 else "s")
        what = f"complete: val loss {trial.value:.4f} after {epochs}{took}"
    elif state == "PRUNED" and trial.user_attrs.get("pruned_reason"):
        what = f"pruned: loss not finite{took}"
    elif state == "PRUNED" and steps:
        what = f"pruned at epoch {steps[-1]}: val loss {trial.intermediate_values[steps[-1]]:.4f}{took}"
    else:
        what = {"FAIL": "failed"}.get(state, state.lower()) + took
    best_text = f"; best {best:.4f}" if best is not None else ""
    return fit_width(f"[{finished}/{total}] trial {trial.number} {what}{best_text}")


class TrialProgress:
    """A bar of finished trials on a terminal; one line per ended trial when piped.

    ``update`` takes the study's trials as polled (from any thread) and reports each trial once,
    when it ends, in the order trials ended.

    Args:
        total: the finished trials to reach.
        disable: neither bar nor lines (``--no-progress``).
    """

    def __init__(self, total: int, *, disable: bool = False) -> None:
        self.console = Console(file=sys.stderr)
        self.total, self.disabled = total, disable
        self.live = live(self.console) and not disable
        self.progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not self.live,
        )
        self.task = self.progress.add_task("trials", total=total, status="")
        self._reported: set[int] = set()
        self._finished = 0
        self._best: float | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> TrialProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def update(self, trials: list[Any], status: str, *, quiet: bool = False) -> None:
        """Report the trials that ended since the last call; ``quiet`` counts them without a line
        (a study's trials from before this run)."""
        with self._lock:
            ended = [t for t in trials if t.state.name in ENDED and t.number not in self._reported]
            for trial in sorted(ended, key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number)):
                self._reported.add(trial.number)
                if trial.state.name in FINISHED:
                    self._finished += 1
                if trial.state.name == "COMPLETE" and (self._best is None or trial.value < self._best):
                    self._best = trial.value
                if not (self.live or self.disabled or quiet):
                    say(trial_line(trial, self._finished, self.total, self._best))
            self.progress.update(self.task, completed=min(self._finished, self.total), status=status)


# ---- a command of named stages (verify): one line per finished stage --------------------------


def stage_line(count: int, total: int, name: str, stage: str, seconds: float, detail: str) -> str:
    """One finished stage: its place, name, wall time and what it found, in ``WIDTH`` columns."""
    return fit_width(f"[{count}/{total}] {name} {stage} in {_seconds(seconds)}: {detail}")


class StageProgress:
    """A bar of stages (and of the events generated so far) on a terminal; one line per finished
    stage when piped.

    Args:
        name: the command (``verify``), at the start of each line.
        stages: the stages to finish.
        disable: neither bar nor lines (``--no-progress``).
    """

    def __init__(self, name: str, stages: int, *, disable: bool = False) -> None:
        self.console = Console(file=sys.stderr)
        self.name, self.total, self.count, self.disabled = name, stages, 0, disable
        self.live = live(self.console) and not disable
        self.progress = counted_bar(self.console, disable=not self.live)
        self.task = self.progress.add_task(name, total=stages, last="")
        self.items: Any = None  # the sub-bar of a stage that counts items (generated events)
        self._last = time.perf_counter()

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def items_done(self, what: str, done: int, total: int) -> None:
        """Items of the running stage finished so far (the bar only: a line per batch would flood a log)."""
        if self.items is None:
            self.items = self.progress.add_task(what, total=total, last="")
        self.progress.update(self.items, completed=done, total=total, description=what)

    def done(self, stage: str, detail: str) -> None:
        """A stage finished: advance the bar, or print its line when output is not a terminal."""
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        self.count += 1
        self.progress.update(self.task, advance=1, last=fit_width(f"{stage}: {detail}", WIDTH // 2))
        if not self.live and not self.disabled:
            say(stage_line(self.count, self.total, self.name, stage, seconds, detail))
