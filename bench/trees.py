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

from bench.roles import ROOT, CodeTree, tree_env
from diffusion.errors import ConfigError

MAIN_BRANCHES = ("main", "origin/main")


class CannotTakeTurns(ConfigError):
    """A tree's worker cannot take turns the way this checkout asks (an older commit)."""


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``git ARGS`` in ``cwd``, by default this checkout (``ROOT``, read at call time)."""
    try:
        return subprocess.run(["git", *args], cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"git is needed for an A/B gate, but `git {' '.join(args)}` failed: {exc}.") from None


def resolve_ref(ref: str) -> str:
    """The commit a ref names.

    Raises:
        ConfigError: not a commit in this repository.
    """
    proc = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if proc.returncode != 0 or not proc.stdout.strip():
        hint = ""
        if is_shallow():  # HEAD~1 in a `git clone --depth 1`: say why it is missing
            hint = " (this is a shallow clone, whose history stops short: `git fetch --deepen=1` fetches a parent)"
        raise ConfigError(f"--against {ref!r} must name a commit of this repository, but git cannot resolve it{hint}.")
    return proc.stdout.strip()


def is_shallow() -> bool:
    """Whether this checkout is a shallow clone (``git clone --depth N``), whose oldest commits
    have no parents here."""
    return git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"


def default_ref() -> str:
    """``[tool.pmt-bench] gate-against`` from pyproject.toml, else the merge base with main."""
    try:
        config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        config = {}
    named = config.get("tool", {}).get("pmt-bench", {}).get("gate-against")
    if isinstance(named, str) and named:
        return named
    found = []
    for branch in MAIN_BRANCHES:
        proc = git("merge-base", "HEAD", branch)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
        if git("rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}").returncode == 0:
            found.append(branch)
    if not found:
        raise ConfigError("--against must be given: there is no branch main to take the merge base with.")
    # A shallow clone cuts the history where the merge base would be.
    why = (
        "this shallow clone's history stops short of it: git fetch --unshallow" if is_shallow() else "no shared history"
    )
    raise ConfigError(f"--against must be given: HEAD and {found[0]} have no merge base here ({why}).")


def short(commit: str) -> str:
    return commit[:10]


def nothing_to_compare(ref: str, commit: str, *, default: bool, shallow: bool) -> str:
    """The refusal of a REF that is HEAD's own commit with nothing uncommitted: its cause and its fix.

    Args:
        default: REF was not named (it came from pyproject or the merge base with main).
        shallow: a shallow clone that lacks HEAD's parent, so ``HEAD~1`` is no way out.
    """
    if shallow:
        cause = "this is a shallow clone (git clone --depth 1), which has no parent of HEAD"
        fix = (
            "fetch one (git fetch --deepen=1, or clone with --depth 2) and gate --against HEAD~1, "
            "gate --against a named ref you fetched, or against a stored --baseline FILE"
        )
    else:
        named = "the default REF (gate-against in pyproject, else the merge base with main)" if default else repr(ref)
        cause = f"{named} is HEAD itself"
        fix = "gate --against HEAD~1 or another named ref, or against a stored --baseline FILE"
    return (
        f"REF {ref!r} resolves to HEAD's commit {short(commit)} and nothing is uncommitted: nothing to compare, "
        f"as {cause}; {fix}; --aa runs this A/A check on purpose."
    )


def resolve_against(against: str | None, *, aa: bool, same_path: bool = True) -> tuple[str, str]:
    """REF's name and commit, checked by git alone (before any worker starts).

    Args:
        against: the REF named, or None for the default (``default_ref``; with ``aa``, HEAD).
        aa: an A/A check on purpose: REF must then be HEAD's own commit.
        same_path: both sides run the same path (False: HEAD runs a candidate path, which
            is something to compare even on REF's own code).

    Raises:
        ConfigError: REF does not resolve; REF is HEAD's own commit with nothing uncommitted,
            the same path on both sides and no ``aa`` (nothing to compare); ``aa`` with a REF
            that is another commit.
    """
    name = against or ("HEAD" if aa else default_ref())
    commit = resolve_ref(name)
    head = git("rev-parse", "--verify", "--quiet", "HEAD").stdout.strip()
    if aa and commit != head:
        raise ConfigError(
            f"--aa runs HEAD against its own commit {short(head)}, but REF {name!r} is "
            f"{short(commit)}; leave out --aa to gate against it."
        )
    if commit == head and same_path and not aa and is_clean():
        no_parent = git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}").returncode != 0
        raise ConfigError(nothing_to_compare(name, commit, default=against is None, shallow=no_parent and is_shallow()))
    return name, commit


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


# Runs in the other tree: what its worker's payload accepts and what its paths mean, without TensorFlow.
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
    import bench.measure
    from diffusion.paths import parse_path
    fields = getattr(bench.measure, "PAYLOAD_FIELDS", None)  # an older tree: its Job's own fields
    out["job_fields"] = list(fields or (f.name for f in dataclasses.fields(bench.measure.Job)))
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
