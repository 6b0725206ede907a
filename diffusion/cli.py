"""Shared command-line plumbing: one-line errors with exit status 2, bounded numbers, writable outputs."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

from diffusion.errors import ConfigError
from diffusion.outputs import check_not_special, read_only

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        # argparse says "argument --rounds: must be ..." for a `bounded` value; say it as every
        # other check does: "--rounds must be ...".
        message = re.sub(r"^argument (\S+): (must be )", r"\1 \2", message)
        from diffusion.hpo.storage import scrub_urls  # here: diffusion.hpo's package loads its search

        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {scrub_urls(message)} (see --help)\n")


Number = TypeVar("Number", int, float)


def bounded(
    kind: Callable[[str], Number],
    *,
    low: Number | None = None,
    high: Number | None = None,
    positive: bool = False,
    why: str = "",
) -> Callable[[str], Number]:
    """An argparse ``type`` that reads an ``int`` or ``float`` and refuses it outside its bounds.

    Args:
        kind: ``int`` or ``float``.
        low: the least value allowed.
        high: the greatest value allowed; ``why`` says what a larger one would cost.
        positive: also refuse 0 (and below).

    Returns:
        The parser; a float must also be finite (``inf`` would run until a timeout, ``nan``
        compares false with every bound).
    """

    def parse(text: str) -> Number:
        noun = "an integer" if kind is int else "a number"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun}, but got {text!r}.") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, but got {text!r}.")
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, but got {value}.")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, but got {value}.")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}{why}, but got {value}.")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


# Bounds shared by every CLI.
SEED = bounded(int, low=0, high=2**32 - 1, why=" (NumPy and Keras seeds are 32-bit)")
# A worker is killed after 900 s (bench.runner); a job must train for well under that.
TRAIN_SECONDS = bounded(float, positive=True, high=300.0, why=" (a worker is killed after 900 s)")
# Each round runs every job once (about 10 jobs of a few seconds each in a comparison): 100
# rounds take hours already, and intervals stop narrowing long before.
ROUNDS = bounded(int, low=1, high=100, why=" (each round runs every job once; 100 take hours)")
# Cores to pin a worker to: an integer here; the command checks its range, 1 to this machine's
# usable cores (bench.gate.check_cpus), and says that range.
CORES = bounded(int)


def _tolerance(text: str) -> float:
    """An argparse ``type`` for a gate tolerance: a share of the reference, in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), but got {text!r}.") from None
    if not 0 <= value < 1:  # false for nan too
        raise argparse.ArgumentTypeError(f"must be in [0, 1), but got {value}.")
    return value


_tolerance.__name__ = "float"  # argparse names the type in its own messages
TOLERANCE = _tolerance


# For the --help of every CLI that loads a backend.
FRAMEWORK_LOGS = (
    "TensorFlow's start-up log lines (absl, oneDNN, CPU features) are hidden: "
    "TF_CPP_MIN_LOG_LEVEL=0 shows them, 3 hides C++ errors too"
)


def quiet_frameworks() -> None:
    """Hide TensorFlow's C++ start-up chatter (its INFO and WARNING lines: absl's notice, oneDNN's,
    the CPU-feature guard's); its errors still show. A ``TF_CPP_MIN_LOG_LEVEL`` the user set
    wins (``0`` shows everything); an empty one counts as unset. Call before TensorFlow loads:
    the C++ logger reads the variable once, at import."""
    if not os.environ.get("TF_CPP_MIN_LOG_LEVEL"):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"


# What a backend's C++ libraries log while they load, before TensorFlow's logger starts: no log
# level applies to them yet (tensorflow/tensorflow#100442), so on a CPU where TensorFlow turns on
# its oneDNN custom ops (AVX-512 VNNI or BF16) two lines reach stderr whatever
# TF_CPP_MIN_LOG_LEVEL says. absl's line prefix: severity, MMDD, time, thread, file:line].
ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
SEVERITIES = "IWEF"  # TF_CPP_MIN_LOG_LEVEL 1 hides I, 2 also W, 3 also E


def log_level() -> int:
    """TF_CPP_MIN_LOG_LEVEL as a number (0, the backend's own default, when unset or not 0-3)."""
    text = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "")
    return int(text) if text in ("0", "1", "2", "3") else 0


def hidden(line: str, level: int) -> bool:
    """Whether a start-up line of the backend falls below ``level`` (``TF_CPP_MIN_LOG_LEVEL``)."""
    if line.rstrip("\n") == ABSL_NOTICE:
        return level >= 1  # it is a warning of its own
    match = ABSL_LINE.match(line)
    return match is not None and SEVERITIES.index(match.group(1)) < level


@contextmanager
def backend_log_filter(level: int) -> Iterator[None]:
    """Route this process's stderr (fd 2) through a pipe while the block runs, dropping the
    lines ``hidden`` at ``level``; every other line reaches the real stderr as it comes."""
    sys.stderr.flush()
    saved = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    # Both ends opened here, not in the thread: a thread that starts late must still find them.
    pipe, out = os.fdopen(read, "rb"), os.fdopen(os.dup(saved), "wb", buffering=0)

    def pump() -> None:
        with pipe, out:
            for raw in pipe:
                if not hidden(raw.decode(errors="replace"), level):
                    out.write(raw)

    thread = threading.Thread(target=pump, name="backend-log-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump reads to its end and stops
        os.close(saved)
        thread.join(timeout=10)


def load_backend() -> None:
    """``quiet_frameworks``, then import Keras and its backend with their start-up lines below
    the log level filtered out (``backend_log_filter``). Call where the backend loads anyway."""
    quiet_frameworks()
    level = log_level()
    if "keras" in sys.modules or level == 0:
        import keras  # noqa: F401

        return
    with backend_log_filter(level):
        import keras  # noqa: F401


def check_writable_dir(path: Path, what: str) -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Raises:
        ConfigError: it is a file, cannot be created, or is not writable.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a file, not a directory.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be created: {exc.strerror}.") from None
    if not os.access(path, os.W_OK | os.X_OK) or read_only(path):
        raise ConfigError(f"{what} {str(path)!r} is not writable.")
    return path


def check_writable_file(path: Path, what: str) -> Path:
    """Check that ``path`` can be written (its directory exists and is writable; it is not a directory)."""
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a directory, not a file.")
    check_not_special(path, what)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{what} {str(path)!r}: directory {str(parent)!r} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK) or read_only(parent) or read_only(path):
        raise ConfigError(f"{what} {str(path)!r} is not writable.")
    return path


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> NoReturn:
    """Call ``main``; a ConfigError becomes one line on stderr and exit status 2, no traceback."""
    try:
        code = main(argv)
    except ConfigError as exc:
        from diffusion.hpo.storage import scrub_urls  # a storage URL typed in the wrong place

        print(f"error: {scrub_urls(str(exc))}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
