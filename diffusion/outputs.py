"""One output rule for every command line: no output overwrites an input or another output.

Every CLI calls ``check_outputs`` right after parsing, before it measures, trains or opens
anything, with each file it will write and each file it will read, named by the flag that gave
it. A directory a command reads (a run directory, a checkpoint directory) is passed as the
files in it that the command reads and writes, so ``--json D/checkpoint.npz`` is caught while
``--json D/summary.json`` is not.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from diffusion.errors import ConfigError

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
    for i, (flag, path) in enumerate(outs):
        for other, other_path in ins + outs[:i]:
            if same_file(path, other_path):
                raise ConfigError(
                    f"`{flag}` must not be the file of `{other}`, but both are {str(path)!r}; choose another file."
                )


def read_only(path: Path) -> bool:
    """Whether ``path`` exists and may not be written. ``os.access`` says yes to root for any file,
    so a file or directory with no write bit at all counts as read-only too: someone marked it so."""
    if not path.exists():
        return False
    return not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222
