"""One output rule for every CLI: no output replaces an input or another output, and a
read-only target is refused, for root too."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from diffusion.cli import check_writable_dir, check_writable_file
from diffusion.errors import ConfigError
from diffusion.outputs import check_outputs, read_only, same_file
from tests.conftest import PYTHON, python_env


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(tmp_path: Path, blocked_tf: dict[str, str], command: list[str], kept: Path, flags: tuple[str, str]) -> None:
    """``command`` exits 2 with one line naming both flags, before TensorFlow, and ``kept`` is unchanged."""
    before = sha256(kept)
    result = subprocess.run(
        [PYTHON, "-m", *command], capture_output=True, text=True, env=python_env(**blocked_tf), cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(f"`{flag}" in lines[0] for flag in flags), result.stderr
    assert sha256(kept) == before


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A file standing for a saved measurement, journal or checkpoint: any content will do."""
    path = tmp_path / "R.json"
    path.write_text('{"schema": "saved", "measured": [1, 2, 3]}\n')
    return path


# ---- the rule ------------------------------------------------------------------------------------


def test_an_output_that_is_an_input_is_refused_naming_both_flags(tmp_path):
    with pytest.raises(ConfigError, match=r"`--markdown` must not be the file of `--from`, but both are"):
        check_outputs([("--markdown", tmp_path / "R.json")], [("--from", tmp_path / "R.json")])


def test_two_outputs_that_are_one_file_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"`--markdown` must not be the file of `--json`"):
        check_outputs([("--json", tmp_path / "X"), ("--markdown", tmp_path / "X")])


def test_paths_are_compared_resolved(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path / "d")
    with pytest.raises(ConfigError):
        check_outputs([("--json", Path("../R.json"))], [("--from", tmp_path / "R.json")])


def test_a_symlink_to_an_input_is_that_input(saved):
    link = saved.with_name("link.json")
    link.symlink_to(saved)
    assert same_file(link, saved)
    with pytest.raises(ConfigError, match="`--json` must not be the file of `--from`"):
        check_outputs([("--json", link)], [("--from", saved)])


def test_a_hard_link_to_an_input_is_that_input(saved):
    link = saved.with_name("hard.json")
    os.link(saved, link)
    assert same_file(link, saved)


def test_distinct_and_absent_paths_pass(tmp_path, saved):
    check_outputs([("--json", tmp_path / "a.json"), ("--markdown", None)], [("--from", saved), ("--claims", None)])


# ---- read-only targets, root included ----------------------------------------------------------------


def test_a_read_only_file_is_refused_even_for_root(saved):
    saved.chmod(0o444)
    assert read_only(saved)
    with pytest.raises(ConfigError, match="is not writable"):
        check_writable_file(saved, "--json")


def test_a_file_in_a_read_only_directory_is_refused_even_for_root(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            check_writable_file(locked / "new.json", "--json")
        with pytest.raises(ConfigError, match="is not writable"):
            check_writable_dir(locked, "--plots")
    finally:
        locked.chmod(0o755)


def test_a_writable_file_passes(saved):
    assert not read_only(saved) and check_writable_file(saved, "--json") == saved


# ---- every CLI, as a user runs it (TensorFlow blocked: the answer comes first) -----------------------


def test_hpo_best_refuses_to_write_over_its_journal(tmp_path, saved, blocked_tf):
    command = ["diffusion.hpo", "best", "--study", "s1", "--storage", str(saved), "--out", str(saved)]
    refused(tmp_path, blocked_tf, command, saved, ("--out", "--storage"))


def test_hpo_best_refuses_to_write_over_its_sqlite_database(tmp_path, saved, blocked_tf):
    command = ["diffusion.hpo", "best", "--study", "s1", "--storage", f"sqlite:///{saved}", "--out", str(saved)]
    refused(tmp_path, blocked_tf, command, saved, ("--out", "--storage"))


@pytest.mark.parametrize("flag", ["--markdown", "--json"])
def test_compare_refuses_to_write_over_the_record_it_renders(tmp_path, saved, flag, blocked_tf):
    refused(tmp_path, blocked_tf, ["bench.compare", "--from", str(saved), flag, str(saved)], saved, (flag, "--from"))


def test_compare_refuses_json_and_markdown_in_one_file(tmp_path, saved, blocked_tf):
    command = ["bench.compare", "--from", str(tmp_path / "none.json"), "--json", str(saved), "--markdown", str(saved)]
    refused(tmp_path, blocked_tf, command, saved, ("--markdown", "--json"))


def test_compare_refuses_a_plot_over_the_record(tmp_path, saved, blocked_tf):
    png = saved.rename(saved.with_suffix(".png"))  # --markdown R.md draws R.png
    command = ["bench.compare", "--from", str(png), "--markdown", str(png.with_suffix(".md"))]
    refused(tmp_path, blocked_tf, command, png, ("--markdown's plot", "--from"))


def test_compare_refuses_to_write_over_its_claims_registry(tmp_path, saved, blocked_tf):
    command = ["bench.compare", "--from", str(tmp_path / "r.json"), "--claims", str(saved), "--json", str(saved)]
    refused(tmp_path, blocked_tf, command, saved, ("--json", "--claims"))


def test_memory_refuses_to_write_over_the_record_it_renders(tmp_path, saved, blocked_tf):
    command = ["bench.memory", "--from", str(saved), "--markdown", str(saved)]
    refused(tmp_path, blocked_tf, command, saved, ("--markdown", "--from"))


def test_repeat_refuses_to_write_over_the_record_it_renders(tmp_path, saved, blocked_tf):
    command = ["bench.repeat", "--from", str(saved), "--markdown", str(saved)]
    refused(tmp_path, blocked_tf, command, saved, ("--markdown", "--from"))


def test_repeat_refuses_json_and_markdown_in_one_file(tmp_path, saved, blocked_tf):
    command = ["bench.repeat", "--json", str(saved), "--markdown", str(saved)]
    refused(tmp_path, blocked_tf, command, saved, ("--markdown", "--json"))


def test_calibrate_refuses_to_render_over_the_record_it_reads(tmp_path, saved, blocked_tf):
    md = saved.rename(saved.with_suffix(".md"))
    refused(tmp_path, blocked_tf, ["bench.calibrate", "--from", str(md)], md, ("--from's Markdown", "--from"))


def test_calibrate_refuses_a_record_named_like_its_plot(tmp_path, saved, blocked_tf):
    png = saved.rename(saved.with_suffix(".png"))
    refused(tmp_path, blocked_tf, ["bench.calibrate", "--json", str(png)], png, ("--json's plot", "--json"))


def test_gate_refuses_to_write_over_its_baseline(tmp_path, saved, blocked_tf):
    refused(
        tmp_path,
        blocked_tf,
        ["bench.gate", "--baseline", str(saved), "--json", str(saved)],
        saved,
        ("--json", "--baseline"),
    )


def test_gate_refuses_a_new_baseline_and_its_record_in_one_file(tmp_path, saved, blocked_tf):
    command = ["bench.gate", "--baseline", str(saved), "--write-baseline", "--json", str(saved)]
    refused(tmp_path, blocked_tf, command, saved, ("--json", "--baseline"))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory holding a checkpoint (its content does not matter: nothing reads it)."""
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really a checkpoint")
    return directory


def test_train_refuses_a_summary_over_its_checkpoint(tmp_path, run_dir, blocked_tf):
    ckpt = run_dir / "checkpoint.npz"
    command = ["diffusion.train", "--out", str(run_dir), "--json", str(ckpt), "--preset", "tiny"]
    refused(tmp_path, blocked_tf, command, ckpt, ("--json", "--out's checkpoint.npz"))


def test_train_refuses_a_summary_over_its_config(tmp_path, saved, blocked_tf):
    command = ["diffusion.train", "--out", str(tmp_path / "run"), "--config", str(saved), "--json", str(saved)]
    refused(tmp_path, blocked_tf, command, saved, ("--json", "--config"))


@pytest.mark.parametrize("given", ["directory", "file"])
def test_verify_refuses_a_record_over_the_checkpoint_it_reads(tmp_path, run_dir, given, blocked_tf):
    ckpt = run_dir / "checkpoint.npz"
    source = run_dir if given == "directory" else ckpt
    command = ["diffusion.verify", "--checkpoint", str(source), "--json", str(ckpt)]
    refused(tmp_path, blocked_tf, command, ckpt, ("--json", "--checkpoint"))


def test_a_summary_beside_the_checkpoint_is_allowed(tmp_path, run_dir):
    from diffusion.train import build_parser, check_paths

    check_paths(build_parser().parse_args(["--out", str(run_dir), "--json", str(run_dir / "summary.json")]))
