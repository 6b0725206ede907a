"""What ``fit`` logs beside the checkpoint, by the path's ``tracking`` knob.

Levels, each writing what the one before writes and more:

- ``none``: nothing (the history lives only in the returned ``FitResult``).
- ``jsonl``: one JSON line per epoch in ``metrics.jsonl`` (ALT).
- ``tensorboard``: that line, plus TensorBoard event files laid out as Keras's TensorBoard
  callback writes them: runs ``tensorboard/train/`` and ``tensorboard/validation/``, each with
  ``epoch_loss`` (so TensorBoard draws train and validation loss on one chart), train's
  learning rate, samples/s and input-wait share, validation's loss stderr and pass time, and
  train's ``batch_loss`` every ``STEP_EVERY`` steps (NEU).
- ``histograms``: that, plus a histogram of every weight per epoch in ``train/`` (Keras's
  ``histogram_freq=1``).

One difference from Keras: every event's step is the global optimizer step, the epoch scalars'
too (Keras steps those by epoch). Resume relies on it: TensorBoard's reader drops a file's
events from a ``SessionLog.START``'s step on, across all tags, so one unit per file.

Event files are written through the ``tensorboard`` package's own record writer and protocol
buffers, not ``tf.summary``: in TensorFlow 2.21 ``tf.summary.scalar`` itself raises
``TBNotInstalledError`` without that package, so it is the requirement on either backend, and
this way the JAX backend writes the same files without importing TensorFlow.

Resume: the log never runs ahead of the checkpoint in what a reader sees. ``metrics.jsonl`` is
cut back to the checkpoint's epoch; each TensorBoard run gets a new event file that opens with
a ``SessionLog.START`` one step after the checkpoint, which TensorBoard's reader takes as "drop
what earlier files logged from this step on" (what a kill between log and checkpoint left).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from diffusion.errors import ConfigError
from diffusion.files import whole_json_lines, write_text_atomic
from diffusion.shapes import Record, check

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# Per-step loss every N optimizer steps: the loss curve inside an epoch at ~1/10 the volume of
# every step (Keras's TensorBoard(update_freq=N) habit).
STEP_EVERY = 10
# TensorBoard runs (subfolders of tensorboard/), named as Keras's TensorBoard callback names them.
TRAIN_RUN, VALIDATION_RUN = "train", "validation"
RUNS = (TRAIN_RUN, VALIDATION_RUN)
# Per-epoch scalars: (run, tag) -> key of the epoch record. The same tag in both runs is what
# puts train and validation loss on one chart.
EPOCH_SCALARS: dict[tuple[str, str], str] = {
    (TRAIN_RUN, "epoch_loss"): "train_loss",
    (VALIDATION_RUN, "epoch_loss"): "val_loss",
    (VALIDATION_RUN, "epoch_loss_stderr"): "val_loss_stderr",
    (TRAIN_RUN, "epoch_samples_per_s"): "train_samples_per_s",
    (VALIDATION_RUN, "epoch_pass_s"): "val_pass_s",
    (TRAIN_RUN, "epoch_input_wait_share"): "input_wait_share",
    (TRAIN_RUN, "epoch_learning_rate"): "learning_rate",
}
STEP_TAG = "batch_loss"  # in the train run: Keras's name for the loss every `update_freq` batches
HISTOGRAM_BINS = 30  # tf.summary.histogram's default bucket count
WRITES_EVENTS = ("tensorboard", "histograms")


def check_tracking(tracking: str) -> None:
    """Say before training starts whether this machine can write what ``tracking`` asks.

    Raises:
        ConfigError: event files are asked for and the ``tensorboard`` package is missing.
    """
    if tracking in WRITES_EVENTS and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            f"`tracking` {tracking} needs the tensorboard package (on either backend; TensorFlow's "
            "tf.summary needs it too), but it is not installed: pip install tensorboard, or use tracking=jsonl."
        )


# What resume reads from each line; the rest of an epoch record is history, returned as written.
EPOCH_LINE = Record({"epoch": int})


def read_metrics(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
    """The lines of a metrics log with their records, and a note if a partial last line was dropped.

    A kill mid-append leaves the last line cut short; the checkpoint, written after the line,
    is the truth, so that line is dropped (and said so) rather than blocking the resume. A bad
    line before the last is no such accident: it is refused.

    Raises:
        ConfigError: a line before the last is not JSON, or a line has no integer ``epoch``.
    """
    raw = path.read_text(errors="replace").splitlines()
    parsed, torn = whole_json_lines(
        raw,
        lambda n, why: (
            f"{path} line {n} must be a JSON epoch record, but it is not JSON ({why}); "
            "delete the file to resume without its history."
        ),
    )
    for n, _, record in parsed:
        check(record, EPOCH_LINE, f"{path} line {n}")
    out = [(line, record) for _, line, record in parsed]
    note = (
        f"{path} line {torn} is a partial line (a kill mid-append); dropped it, the checkpoint is the truth."
        if torn
        else None
    )
    return out, note


class JsonlLog:
    """One JSON line per epoch, appended; cut back to the checkpoint on resume."""

    def __init__(self, out: Path) -> None:
        self.path = out / METRICS_NAME

    def start(self, *, resumed_epoch: int | None, global_step: int) -> list[dict[str, Any]]:
        if resumed_epoch is None:
            self.path.unlink(missing_ok=True)
            return []
        if not self.path.exists():
            return []
        lines, note = read_metrics(self.path)
        if note:
            print(f"note: {note}", file=sys.stderr)
        kept = [(line, record) for line, record in lines if record["epoch"] <= resumed_epoch]
        write_text_atomic(self.path, "".join(line + "\n" for line, _ in kept))
        return [record for _, record in kept]

    def on_step(self, step: int, loss: float) -> None:
        pass

    def on_epoch(self, record: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        pass


class EventFile:
    """One TensorBoard run's event file of this process, written through the tensorboard
    package's record writer and protocol buffers."""

    _serial = itertools.count()

    def __init__(self, rundir: Path, *, resumed: bool, global_step: int) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        rundir.mkdir(parents=True, exist_ok=True)
        # One new file per process, named as TensorFlow names them (the reader sorts by name).
        name = f"events.out.tfevents.{time.time():010.0f}.{socket.gethostname()}.{os.getpid()}.{next(self._serial)}.v2"
        self._file: BinaryIO | None = (rundir / name).open("ab")
        self._writer = RecordWriter(self._file)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        if resumed:
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._write(event_pb2.Event(wall_time=time.time(), step=global_step + 1, session_log=start))
        self.flush()

    def _write(self, event: Any) -> None:
        self._writer.write(event.SerializeToString())

    def summary(self, step: int, values: list[Any]) -> None:
        summary = self._summary_pb2.Summary(value=values)
        self._write(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def scalar(self, tag: str, value: float) -> Any:
        return self._summary_pb2.Summary.Value(tag=tag, simple_value=value)

    def histogram(self, tag: str, array: np.ndarray) -> Any:
        values = np.asarray(array, dtype=np.float64).ravel()
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
        histo = self._summary_pb2.HistogramProto(
            min=float(values.min()),
            max=float(values.max()),
            num=float(values.size),
            sum=float(values.sum()),
            sum_squares=float(np.dot(values, values)),
            bucket_limit=edges[1:].tolist(),
            bucket=counts.astype(float).tolist(),
        )
        return self._summary_pb2.Summary.Value(tag=tag, histo=histo)

    def flush(self) -> None:
        # fsync: the epoch's events are on disk before its checkpoint is, so a kill never
        # leaves a checkpoint ahead of its log.
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None


class TensorBoardLog:
    """TensorBoard event files in Keras's layout: runs ``train/`` and ``validation/`` with
    scalars per epoch, ``batch_loss`` every ``STEP_EVERY`` steps, optional weight histograms.

    Args:
        logdir: the runs' parent directory (``tensorboard --logdir`` it or any folder above).
        histograms: also write a histogram of every weight per epoch.
    """

    def __init__(self, logdir: Path, *, histograms: bool) -> None:
        check_tracking("tensorboard")
        self.logdir, self.histograms = logdir, histograms
        self._runs: dict[str, EventFile] = {}

    def start(self, *, resumed_epoch: int | None, global_step: int) -> list[dict[str, Any]]:
        self.logdir.mkdir(parents=True, exist_ok=True)
        if resumed_epoch is None:
            for old in self.logdir.rglob("*tfevents*"):  # the runs' and an older flat layout's
                old.unlink()
        resumed = resumed_epoch is not None
        self._runs = {run: EventFile(self.logdir / run, resumed=resumed, global_step=global_step) for run in RUNS}
        return []

    def on_step(self, step: int, loss: float) -> None:
        if step % STEP_EVERY == 0:
            train = self._runs[TRAIN_RUN]
            train.summary(step, [train.scalar(STEP_TAG, loss)])

    def on_epoch(self, record: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        for run, events in self._runs.items():
            values = [
                events.scalar(tag, float(record[key]))
                for (where, tag), key in EPOCH_SCALARS.items()
                if where == run and record.get(key) is not None
            ]
            if self.histograms and run == TRAIN_RUN:
                values += [events.histogram(f"weights/{name}", array) for name, array in weights.items()]
            if values:
                events.summary(int(record["global_step"]), values)
        self.flush()

    def flush(self) -> None:
        for events in self._runs.values():
            events.flush()

    def close(self) -> None:
        for events in self._runs.values():
            events.close()


class Tracking:
    """The writers a ``tracking`` level asks for, driven as one.

    Args:
        tracking: the path's knob value.
        out: the run directory.
    """

    def __init__(self, tracking: str, out: Path) -> None:
        self.logs: list[JsonlLog | TensorBoardLog] = []
        if tracking != "none":
            self.logs.append(JsonlLog(out))
        if tracking in WRITES_EVENTS:
            self.logs.append(TensorBoardLog(out / TENSORBOARD_DIR, histograms=tracking == "histograms"))

    @property
    def wants_weights(self) -> bool:
        return any(isinstance(log, TensorBoardLog) and log.histograms for log in self.logs)

    def start(self, *, resumed_epoch: int | None, global_step: int) -> list[dict[str, Any]]:
        """Open the logs: fresh (``resumed_epoch`` None) or continuing; returns the kept history."""
        history: list[dict[str, Any]] = []
        for log in self.logs:
            history = log.start(resumed_epoch=resumed_epoch, global_step=global_step) or history
        return history

    def on_step(self, step: int, loss: float) -> None:
        for log in self.logs:
            log.on_step(step, loss)

    def on_epoch(self, record: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        for log in self.logs:
            log.on_epoch(record, weights)

    def close(self) -> None:
        for log in self.logs:
            log.close()
