"""Check a record read from a file against the shape its readers expect, naming the field path.

A record hand-edited or cut short must be refused in one line that names the file and the field
(``claims[3].ci[0]``), not crash in the renderer three calls later. A shape is a small nested
description:

- ``str``, ``int``, ``bool``: that Python type (``int`` excludes ``bool``);
- ``NUMBER``: an int or float that is finite (JSON lets NaN and Infinity through, and a NaN
  estimate would render as ``nanx`` beside a verdict);
- ``Maybe(shape)``: ``None`` or the shape;
- ``ListOf(shape, length)``, ``MapOf(shape)``: a list (of that length, if given), or an object,
  of the shape;
- ``Record(required, optional)``: an object with these fields (others are allowed: readers
  ignore them, and older records carry fields that are gone);
- ``OneOf(values)``: one of the values;
- ``ANY``: anything.

Pure: no I/O, so that every reader (JSON, TOML, a checkpoint's metadata) shares it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from diffusion.errors import ConfigError

REPR_LIMIT = 60  # a bad value is quoted in the message; a whole nested object would not fit a line


@dataclass(frozen=True)
class Maybe:
    shape: Shape


@dataclass(frozen=True)
class ListOf:
    shape: Shape
    length: int | None = None  # a pair (an interval's ends) has exactly two


@dataclass(frozen=True)
class MapOf:
    shape: Shape


@dataclass(frozen=True)
class Record:
    required: Mapping[str, Shape]
    optional: Mapping[str, Shape] = field(default_factory=dict)


@dataclass(frozen=True)
class OneOf:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Test:
    """A rule no type states (``holds (exact)`` is a verdict): ``ok`` says whether it holds."""

    ok: Callable[[Any], bool]
    wanted: str


NUMBER = "a finite number"
ANY = "anything"
Shape = type | str | Maybe | ListOf | MapOf | Record | OneOf | Test


def check(value: Any, shape: Shape, where: str, path: str = "") -> None:
    """Refuse ``value`` unless it has ``shape``.

    Args:
        value: the record (or part of it) as read.
        shape: what its readers expect.
        where: the file as the user named it (``--from 'r.json'``); it opens the message.
        path: the field path of ``value`` inside the file (empty for the whole record).

    Raises:
        ConfigError: ``{where}: `claims[3].ci[0]` must be a finite number, but got nan.``
    """
    wanted = _mismatch(value, shape, where, path)
    if wanted is not None:
        name = f"`{path}`" if path else "the record"
        raise ConfigError(f"{where}: {name} must be {wanted}, but got {_short(value)}.")


def _mismatch(value: Any, shape: Shape, where: str, path: str) -> str | None:
    """What ``value`` should have been, or None if it fits; nested parts are checked (and raise) here."""
    if isinstance(shape, Maybe):
        return None if value is None else _mismatch(value, shape.shape, where, path)
    if isinstance(shape, type):
        fits = isinstance(value, shape) and not (shape is int and isinstance(value, bool))
        return None if fits else _TYPE_NAMES.get(shape, f"a {shape.__name__}")
    if shape == NUMBER:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if fits else NUMBER
    if shape == ANY:
        return None
    if isinstance(shape, OneOf):
        return None if value in shape.values else "one of " + ", ".join(repr(v) for v in shape.values)
    if isinstance(shape, Test):
        return None if shape.ok(value) else shape.wanted
    if isinstance(shape, ListOf):
        if not isinstance(value, list):
            return "a list"
        if shape.length is not None and len(value) != shape.length:
            return f"a list of {shape.length}"
        for i, item in enumerate(value):
            check(item, shape.shape, where, f"{path}[{i}]")
        return None
    if isinstance(shape, MapOf):
        if not isinstance(value, dict):
            return "an object"
        for key, item in value.items():
            check(item, shape.shape, where, _join(path, str(key)))
        return None
    return _record_mismatch(value, shape, where, path)


def _record_mismatch(value: Any, shape: Record, where: str, path: str) -> str | None:
    if not isinstance(value, dict):
        return "an object"
    for key, sub in shape.required.items():
        if key not in value:
            raise ConfigError(f"{where}: `{_join(path, key)}` must be present, but it is missing.")
        check(value[key], sub, where, _join(path, key))
    for key, sub in shape.optional.items():
        if key in value:
            check(value[key], sub, where, _join(path, key))
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    float: "a number",
    list: "a list",
    dict: "an object",
}
