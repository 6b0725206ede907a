"""Code trees for A/B runs: resolve a git ref, export its files to a temp directory, and check
that its worker understands what this checkout sends.

A ref is exported through a throw-away index (``git read-tree`` + ``git checkout-index``)
rather than ``git worktree add``: the files are the same, and nothing is registered in the
repository's shared metadata, so a gate killed mid-run leaves no stale worktree behind (only a
temp directory). Git writes the files itself, so no archive is unpacked: ``tarfile``'s safe
``filter=`` argument is missing before Python 3.11.4 (Debian 12 ships 3.11.2).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.runner import ROOT, CodeTree, tree_env
from diffusion.errors import ConfigError

MAIN_BRANCHES = ("main", "origin/main")


class CannotTakeTurns(ConfigError):
    """A tree's worker cannot take turns the way this checkout asks (an older commit)."""


def git(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"git is needed for an A/B gate, but `git {' '.join(args)}` failed: {exc}.") from None


def resolve_ref(ref: str) -> str:
    """The commit a ref names.

    Raises:
        ConfigError: not a commit in this repository.
    """
    proc = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ConfigError(f"--against {ref!r} must name a commit of this repository, but git cannot resolve it.")
    return proc.stdout.strip()


def default_ref() -> str:
    """``[tool.pmt-bench] gate-against`` from pyproject.toml, else the merge base with main."""
    try:
        config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        config = {}
    named = config.get("tool", {}).get("pmt-bench", {}).get("gate-against")
    if isinstance(named, str) and named:
        return named
    for branch in MAIN_BRANCHES:
        proc = git("merge-base", "HEAD", branch)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    raise ConfigError("--against must be given: there is no branch main to take the merge base with.")


def short(commit: str) -> str:
    return commit[:10]


def head_tree() -> CodeTree:
    """This checkout as measured: HEAD's commit, marked when uncommitted changes are measured too."""
    proc = git("rev-parse", "HEAD")
    commit = proc.stdout.strip() if proc.returncode == 0 else None
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    label = commit and short(commit) + ("+uncommitted" if dirty else "")
    return CodeTree(ROOT, f"HEAD {label or '(no commit)'}", label)


def is_clean() -> bool:
    return not git("status", "--porcelain", "--untracked-files=no").stdout.strip()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (a CI timeout, ``timeout``) into KeyboardInterrupt for the block, so a temp
    tree is removed and a running worker killed, instead of both being left behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def exported(commit: str, label: str) -> Iterator[CodeTree]:
    """The files of ``commit`` in a temp directory, removed on exit (SIGTERM included)."""
    with terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix=f"gate-{short(commit)}-") as tmp:
        root = Path(tmp) / "tree"
        # The index lives in the temp directory: the repository's own index is never touched.
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        for args in (["read-tree", commit], ["checkout-index", "--all", f"--prefix={root}{os.sep}"]):
            proc = git(*args, env=env)
            if proc.returncode != 0:
                raise ConfigError(f"--against {label!r}: `git {args[0]}` failed: {proc.stderr.strip()[:200]}.")
        yield CodeTree(root, label, short(commit))


# Runs in the other tree: what its Job accepts and what its paths mean, without TensorFlow.
PROBE = """
import dataclasses, importlib.util, json, sys
from pathlib import Path
root = Path.cwd().resolve()
out = {"outside": [], "knobs": {}}
for name in ("bench.worker", "bench.measure", "diffusion.paths"):
    spec = importlib.util.find_spec(name)
    if spec is None or not Path(spec.origin).resolve().is_relative_to(root):
        out["outside"].append(name)
if not out["outside"]:
    from bench.measure import Job
    from diffusion.paths import parse_path
    out["job_fields"] = [f.name for f in dataclasses.fields(Job)]
    import bench.worker
    out["turns_protocol"] = getattr(bench.worker, "TURNS_PROTOCOL", None)
    for spec in sys.argv[1:]:
        try:
            out["knobs"][spec] = parse_path(spec).knobs()
        except Exception as exc:
            out["knobs"][spec] = {"error": str(exc)}
print(json.dumps(out))
"""


def probe(tree: CodeTree, job_fields: list[str], specs: list[str], *, turns: bool = False) -> dict[str, dict[str, Any]]:
    """Check that ``tree``'s worker takes the Job this checkout sends and knows ``specs`` (and,
    with ``turns``, takes turns the way this checkout asks).

    Returns:
        The knobs each spec means in that tree.

    Raises:
        ConfigError: its worker is missing, its Job lacks a field this checkout sends, or a
            spec does not parse there.
    """
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *specs],
        cwd=tree.root,
        env=tree_env(tree.root),
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"{tree.label}: its code cannot be loaded ({tail}).") from None
    if out["outside"]:
        raise ConfigError(f"{tree.label} has no {', '.join(out['outside'])}: it predates the benchmark worker.")
    missing = [f for f in job_fields if f not in out["job_fields"]]
    if missing:
        raise ConfigError(
            f"{tree.label}: its worker's Job lacks {', '.join(missing)}, which this checkout sends; "
            "gate against a later ref."
        )
    if turns:
        from bench.worker import TURNS_PROTOCOL

        theirs = out.get("turns_protocol")
        if theirs != TURNS_PROTOCOL:
            why = (
                "predates taking turns"
                if theirs is None
                else f"speaks turn protocol {theirs}, this checkout {TURNS_PROTOCOL}"
            )
            raise CannotTakeTurns(
                f"{tree.label}: its worker {why}; gate against a later ref, or pass --pairing processes."
            )
    for spec, knobs in out["knobs"].items():
        if "error" in knobs:
            raise ConfigError(f"{tree.label} cannot run path {spec!r}: {knobs['error']}")
    return out["knobs"]
