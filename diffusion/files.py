"""Files our tools write and read: atomic replacement (a reader sees the old file or the new
one, never half), JSON records and JSON lines, and one-line errors for JSON that is not.

Below every CLI and the trainer alike: nothing here parses arguments."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffusion.dataset import temp_beside
from diffusion.errors import ConfigError
from diffusion.outputs import check_readable_file


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old file or the new one, never half."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one, never half."""
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, record: Any) -> None:
    write_text_atomic(path, json.dumps(record, indent=2, default=_jsonable) + "\n")


def json_line(record: Any) -> str:
    """``record`` as one line of JSON, NumPy values and paths included (as files get them)."""
    return json.dumps(record, default=_jsonable)


# What ``json.loads`` raises on text it cannot turn into a value: malformed JSON (a ValueError),
# an integer of more than 4,300 digits (a ValueError too: Python's guard against slow
# conversions) and nesting deeper than the interpreter's stack (a RecursionError).
UNREADABLE_JSON: tuple[type[Exception], ...] = (ValueError, RecursionError)


def json_error(exc: Exception) -> str:
    """One short line for an ``UNREADABLE_JSON`` error (Python's digit-limit message runs long)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(";")[0] if "integer string conversion" in str(exc) else str(exc)


def whole_json_lines(
    lines: list[str], bad_line: Callable[[int, str], str]
) -> tuple[list[tuple[int, str, Any]], int | None]:
    """The non-blank lines of a JSON-lines file that parse, as (line number, line, value), and the
    number of a torn last line (a kill mid-append leaves one) that was left out, or None.

    Raises:
        ConfigError: ``bad_line(n, why)``'s message for a line before the last that is not JSON
            (no kill leaves that).
    """
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    out: list[tuple[int, str, Any]] = []
    for n, line in numbered:
        try:
            out.append((n, line, json.loads(line)))
        except UNREADABLE_JSON as exc:
            if n != numbered[-1][0]:
                raise ConfigError(bad_line(n, json_error(exc))) from None
            return out, n
    return out, None


def read_json_record(path: Path, what: str, *, schema: str | None = None, hint: str = "") -> dict[str, Any]:
    """Read a JSON object written by one of our tools.

    Raises:
        ConfigError: missing, not JSON, not an object, or (with ``schema``) another schema.
    """
    check_readable_file(path, what)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r}: no such file{hint}.")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, *UNREADABLE_JSON) as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid JSON ({json_error(exc)}).") from None
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
