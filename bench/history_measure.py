"""Measure a range of this repository's commits into a history: ``bench.history --measure RANGE``.

Each commit of ``RANGE`` (``git rev-list --first-parent --reverse``: oldest first, e.g.
``HEAD~5..HEAD``) is checked out into a temporary git worktree, and that commit's own gate runs
there against its parent (``python -m bench.gate --against C~1 --history FILE``), so every point
is measured by the code it stands for and appended as soon as it is finished: a cut run keeps
the commits it measured. Its HEAD/REF ratio cancels the machine's drift within a run; its
absolute samples/s is a point of a series that only the same machine, measured in one sitting,
makes comparable. A commit whose gate cannot append to a history (older than ``--history``) is
skipped, and said so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from diffusion.errors import ConfigError

# Each commit is a gate run of about a minute at tiny: 20 take about 20 minutes.
MAX_COMMITS = 20
GATE_TIMEOUT_S = 1800.0


def commits_in(revisions: str, root: Path) -> list[str]:
    """The commits of ``revisions`` (a git range, or one commit), oldest first, along first parents.

    Raises:
        ConfigError: git cannot read the range, it holds no commit, or more than ``MAX_COMMITS``.
    """
    from bench.trees import git

    if revisions.startswith("-"):
        raise ConfigError(f"--measure must be a range of commits such as HEAD~5..HEAD, but got {revisions!r}.")
    ranged = ".." in revisions
    args = ["rev-list", "--first-parent", "--reverse", revisions] if ranged else ["rev-list", "-n", "1", revisions]
    proc = git(*args, "--", cwd=root)
    if proc.returncode != 0:
        raise ConfigError(
            f"--measure {revisions!r} must be a range of this repository's commits (e.g. HEAD~5..HEAD), "
            f"but git says: {proc.stderr.strip()[:200]}"
        )
    commits = proc.stdout.split()
    if not commits:
        raise ConfigError(f"--measure {revisions!r} holds no commit.")
    if len(commits) > MAX_COMMITS:
        raise ConfigError(
            f"--measure {revisions!r} holds {len(commits)} commits, but at most {MAX_COMMITS} are measured in one run "
            "(each a gate run of about a minute); give a shorter range."
        )
    return commits


@contextmanager
def worktree(commit: str, root: Path) -> Iterator[Path]:
    """``commit`` checked out in a temporary git worktree of ``root``, removed on exit."""
    from bench.trees import git, short, terminate_as_interrupt

    with terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix=f"history-{short(commit)}-") as tmp:
        tree = Path(tmp) / "tree"
        proc = git("worktree", "add", "--detach", str(tree), commit, cwd=root)
        if proc.returncode != 0:
            raise ConfigError(f"--measure: `git worktree add` of {short(commit)} failed: {proc.stderr.strip()[:200]}.")
        try:
            yield tree
        finally:
            git("worktree", "remove", "--force", str(tree), cwd=root)


def gate_command(history: Path, preset: str, rounds: int | None) -> list[str]:
    """The gate a commit runs against its parent, from its own worktree."""
    command = [sys.executable, "-m", "bench.gate", "--against", "HEAD~1", "--preset", preset]
    return command + ["--history", str(history.resolve())] + (["--rounds", str(rounds)] if rounds else [])


def takes_history(tree: Path) -> bool:
    """Whether the gate of the commit checked out at ``tree`` has ``--history``."""
    files = (tree / "bench" / name for name in ("gate_options.py", "gate.py"))  # the parser's homes, then and now
    return any(f.is_file() and '"--history"' in f.read_text(errors="replace") for f in files)


def run_gate(command: list[str], tree: Path) -> int:
    """Run a commit's gate in its worktree, its own modules first on the path; its lines pass through."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    try:
        return subprocess.run(command, cwd=tree, env=env, timeout=GATE_TIMEOUT_S).returncode
    except subprocess.TimeoutExpired:
        return 124


def measure(
    revisions: str,
    history: Path,
    *,
    preset: str = "tiny",
    rounds: int | None = None,
    root: Path | None = None,
    gate: Callable[[list[str], Path], int] = run_gate,
) -> list[tuple[str, str]]:
    """Gate every commit of ``revisions`` against its parent, appending each result to ``history``.

    Args:
        gate: runs a gate command in a tree and returns its exit status (tests pass a fake).

    Returns:
        (commit, outcome) per commit: "measured" (also when the gate fired), or why it was skipped.

    Raises:
        ConfigError: a bad range (see ``commits_in``).
    """
    from bench.trees import ROOT, git, short

    root = root or ROOT
    commits = commits_in(revisions, root)
    outcomes = []
    for i, commit in enumerate(commits, start=1):
        label = f"[{i}/{len(commits)}] {short(commit)}"
        if git("rev-parse", "--verify", "--quiet", f"{commit}~1", cwd=root).returncode != 0:
            outcome = "skipped: no parent to gate against"
        else:
            with worktree(commit, root) as tree:
                if not takes_history(tree):
                    outcome = "skipped: its gate predates --history"
                else:
                    print(f"{label}: gating against its parent", file=sys.stderr, flush=True)
                    code = gate(gate_command(history, preset, rounds), tree)
                    outcome = {0: "measured", 1: "measured; its gate fired (exit 1)"}.get(
                        code, f"skipped: its gate exited {code}"
                    )
        print(f"{label}: {outcome}", file=sys.stderr, flush=True)
        outcomes.append((commit, outcome))
    return outcomes
