"""bench.history --measure: each commit of a range gated against its parent from its own
worktree, oldest first, skipping what cannot be measured; a bad range refused before anything runs.
The gate itself is faked here (a real gate run of a commit is a minute at tiny)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.history_measure import MAX_COMMITS, commits_in, measure
from diffusion.errors import ConfigError


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Four commits: one without a gate, one whose gate predates --history, two with it."""
    root = tmp_path_factory.mktemp("repo")
    git(root, "init", "-q", "-b", "main")
    gates = [
        None,
        'parser.add_argument("--json")',
        'parser.add_argument("--history")',
        'parser.add_argument("--history")  # 2',
    ]
    commits = []
    for i, text in enumerate(gates):
        (root / "README").write_text(f"commit {i}\n")
        if text is not None:
            (root / "bench").mkdir(exist_ok=True)
            (root / "bench" / "gate.py").write_text(text + "\n")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"commit {i}")
        commits.append(git(root, "rev-parse", "HEAD"))
    return root, commits


def test_each_commit_is_gated_against_its_parent_from_its_own_worktree_oldest_first(repo, tmp_path, capsys):
    root, commits = repo
    seen = []

    def gate(command: list[str], tree: Path) -> int:
        seen.append((git(tree, "rev-parse", "HEAD"), command, tree))
        assert (tree / "README").read_text() == f"commit {commits.index(seen[-1][0])}\n"
        return 1 if len(seen) == 2 else 0

    history = tmp_path / "history.jsonl"
    outcomes = measure(f"{commits[0]}..HEAD", history, rounds=4, root=root, gate=gate)
    assert [c for c, _ in outcomes] == commits[1:]
    assert [o for _, o in outcomes] == [
        "skipped: its gate predates --history",
        "measured",
        "measured; its gate fired (exit 1)",
    ]
    assert [s[0] for s in seen] == commits[2:]
    for _, command, _ in seen:
        assert command[1:] == ["-m", "bench.gate", "--against", "HEAD~1", "--preset", "tiny", "--history",
                               str(history.resolve()), "--rounds", "4"]  # fmt: skip
    # Every worktree is gone again, and the repository knows of none.
    assert not any(tree.exists() for *_, tree in seen)
    assert git(root, "worktree", "list").count("\n") == 0
    err = capsys.readouterr().err
    assert f"[3/3] {commits[3][:10]}: measured; its gate fired (exit 1)" in err


def test_a_commit_without_a_parent_is_skipped(repo, tmp_path):
    root, commits = repo
    outcomes = measure(commits[0], tmp_path / "h.jsonl", root=root, gate=lambda c, t: pytest.fail("ran"))
    assert outcomes == [(commits[0], "skipped: no parent to gate against")]


@pytest.mark.parametrize(
    ("revisions", "message"),
    [
        ("nope..HEAD", "must be a range of this repository's commits"),
        ("HEAD..HEAD", "holds no commit"),
        ("--all", "must be a range of commits such as HEAD~5..HEAD"),
    ],
)
def test_a_bad_range_is_refused(repo, revisions, message):
    with pytest.raises(ConfigError, match=message):
        commits_in(revisions, repo[0])


def test_a_range_longer_than_the_bound_is_refused(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    for i in range(MAX_COMMITS + 2):
        git(tmp_path, "commit", "-q", "--allow-empty", "-m", str(i))
    assert len(commits_in("HEAD~20..HEAD", tmp_path)) == MAX_COMMITS
    with pytest.raises(ConfigError, match=f"holds {MAX_COMMITS + 1} commits, but at most {MAX_COMMITS}"):
        commits_in("HEAD~21..HEAD", tmp_path)
