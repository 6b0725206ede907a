"""One output rule for every command line: no output overwrites an input or another output.

Every CLI calls ``check_outputs`` right after parsing, before it measures, trains or opens
anything, with each file it will write and each file it will read, named by the flag that gave
it. A directory a command reads (a run directory, a checkpoint directory) is passed as the
files in it that the command reads and writes, so ``--json D/checkpoint.npz`` is caught while
``--json D/summary.json`` is not.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from diffusion.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
# The checkout's own code and configuration: inputs of every command (the gate reads
# pyproject.toml for its default REF, compare reads bench/claims.toml), never an output.
SOURCE_SUFFIXES = frozenset({".py", ".toml", ".cfg", ".ini"})
SOURCE_NAMES = frozenset({"README.md", "LICENSE", "STYLE.md", "DESIGN.md"})
Named = tuple[str, Path | None]  # (the flag that names it, e.g. "--markdown's plot"; the path or None)


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same path once symlinks are followed, or (both
    existing) the same inode, which also catches a hard link."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def check_outputs(outputs: Iterable[Named], inputs: Iterable[Named] = ()) -> None:
    """Refuse an output that is one of the inputs or another output.

    Args:
        outputs: ``(flag, path)`` of every file the command writes; ``None`` paths are skipped.
        inputs: ``(flag, path)`` of every file the command reads.

    Raises:
        ConfigError: two of them are one file; the message names both flags and the path.
    """
    outs = [(flag, path) for flag, path in outputs if path is not None]
    ins = [(flag, path) for flag, path in inputs if path is not None]
    for flag, path in outs:
        check_not_special(path, flag)
    for i, (flag, path) in enumerate(outs):
        for other, other_path in ins + outs[:i]:
            if same_file(path, other_path):
                raise ConfigError(
                    f"`{flag}` must not be the file of `{other}`, but both are {str(path)!r}; choose another file."
                )


def special_kind(path: Path) -> str | None:
    """What ``path`` is if it exists and is neither a regular file nor a directory (a device, a FIFO,
    a socket), following symlinks; else None."""
    try:
        mode = path.stat().st_mode
    except OSError:  # absent (or unreadable: the writability checks say so)
        return None
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else None


def check_not_special(path: Path, flag: str) -> None:
    """Refuse ``-``, a device, FIFO or socket, and the checkout's own code as an output. Outputs are
    written to a temporary file and renamed over the target, so ``--json /dev/null`` run as root
    would replace the system's /dev/null with a regular file; ``-`` would make a file named ``-``,
    not stdout; ``bench.gate --json pyproject.toml`` replaced the file it reads its REF from.

    Raises:
        ConfigError: naming the flag, the path and what it is.
    """
    if str(path) == "-":
        raise ConfigError(f"`{flag}` must be a file path, but got '-' (nothing is written to stdout); name a file.")
    kind = special_kind(path)
    if kind is not None:
        raise ConfigError(f"`{flag}` must be a regular file, but {str(path)!r} is {kind}; name a file.")
    if is_checkout_source(path):
        raise ConfigError(
            f"`{flag}` must not replace this checkout's code, configuration or git data, but {str(path)!r} is one; "
            "choose another file (results/ holds records)."
        )


def is_checkout_source(path: Path) -> bool:
    """Whether ``path`` (resolved) is inside this checkout's ``.git``, or an existing file of its code or
    configuration (``SOURCE_SUFFIXES``, ``SOURCE_NAMES``) outside ``results/`` and ``baselines/``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(ROOT):
        return False
    top = resolved.relative_to(ROOT).parts[:1]
    if top == (".git",):
        return True
    if top in (("results",), ("baselines",)) or not resolved.is_file():
        return False
    return resolved.suffix in SOURCE_SUFFIXES or resolved.name in SOURCE_NAMES


def check_readable_file(path: Path, what: str) -> None:
    """Refuse an input that is a device, FIFO or socket: reading a FIFO (or ``/dev/stdin``) waits
    for a writer forever, and ``/dev/zero`` or ``/dev/urandom`` never ends, filling memory.

    Raises:
        ConfigError: naming the flag, the path and what it is.
    """
    kind = special_kind(path)
    if kind is not None:
        raise ConfigError(f"{what} {str(path)!r} must be a regular file, but it is {kind}.")


def read_only(path: Path) -> bool:
    """Whether ``path`` exists and may not be written. ``os.access`` says yes to root for any file,
    so a file or directory with no write bit at all counts as read-only too: someone marked it so."""
    if not path.exists():
        return False
    return not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222
