"""Shared command-line plumbing: one-line errors with exit status 2, atomic JSON output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from diffusion.dataset import temp_beside
from diffusion.errors import ConfigError
from diffusion.outputs import read_only

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def quiet_frameworks() -> None:
    """Hide TensorFlow's C++ start-up chatter; warnings and errors still show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{what} {str(path)!r}: directory {str(parent)!r} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK) or read_only(parent) or read_only(path):
        raise ConfigError(f"{what} {str(path)!r} is not writable.")
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old file or the new one, never half."""
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, record: Any) -> None:
    write_text_atomic(path, json.dumps(record, indent=2, default=_jsonable) + "\n")


def json_line(record: Any) -> str:
    """``record`` as one line of JSON, NumPy values and paths included (as files get them)."""
    return json.dumps(record, default=_jsonable)


def read_json_record(path: Path, what: str, *, schema: str | None = None, hint: str = "") -> dict[str, Any]:
    """Read a JSON object written by one of our tools.

    Raises:
        ConfigError: missing, not JSON, not an object, or (with ``schema``) another schema.
    """
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r}: no such file{hint}.")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {str(path)!r} holds a {type(data).__name__}, not a JSON object.")
    if schema is not None and data.get("schema") != schema:
        raise ConfigError(f"{what} {str(path)!r} has schema {data.get('schema')!r}; expected {schema!r}.")
    return data


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> NoReturn:
    """Call ``main``; a ConfigError becomes one line on stderr and exit status 2, no traceback."""
    try:
        code = main(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
