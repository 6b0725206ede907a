"""Every number a CLI takes is bounded: finite, positive where it must be, capped where a larger
one would run for hours, seeds 32-bit; and a path spec names each knob once."""

from __future__ import annotations

import argparse
import math
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diffusion.cli import SEED, TRAIN_SECONDS, Parser, bounded
from diffusion.errors import ConfigError
from diffusion.paths import parse_path
from tests.conftest import PYTHON, python_env

# ---- the type factory ----------------------------------------------------------------------------


@given(st.integers(-(2**40), 2**40))
def test_a_seed_is_accepted_exactly_in_0_to_2_pow_32_minus_1(value):
    if 0 <= value <= 2**32 - 1:
        assert SEED(str(value)) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="must be at (least 0|most 4294967295)"):
            SEED(str(value))


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_train_seconds_are_finite_positive_and_at_most_300(value):
    if math.isfinite(value) and 0 < value <= 300:
        assert TRAIN_SECONDS(repr(value)) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="must be (a finite number|positive|at most 300)"):
            TRAIN_SECONDS(repr(value))


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e400"])
def test_a_float_that_is_not_finite_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number"):
        bounded(float)(text)


def test_text_that_is_not_a_number_is_refused_naming_it():
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be an integer, but got '1\.5'"):
        bounded(int)("1.5")


def test_the_parser_says_which_option_and_the_rule_in_one_line(capsys):
    parser = Parser(prog="p")
    parser.add_argument("--rounds", type=bounded(int, low=1, high=100, why=" (hours)"))
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--rounds", "100000"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "p: error: --rounds must be at most 100 (hours), but got 100000. (see --help)\n"


# ---- path specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["neu:batch_size=8,batch_size=64", "alt:clip_norm=1,loader=sync,clip_norm=none"])
def test_a_knob_given_twice_in_a_path_spec_is_refused(spec):
    with pytest.raises(ConfigError, match=r"knob '\w+' is given twice in spec") as info:
        parse_path(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_clip_norm_that_is_not_finite_is_refused(value):
    with pytest.raises(ConfigError, match="`clip_norm` must be a finite positive number or none"):
        parse_path(f"neu:clip_norm={value}")


# ---- every CLI, as a user runs it (TensorFlow blocked: the answer comes first) -----------------------

# Each command also names something that fails at once should the bound be missing (a --from or
# --baseline that does not exist), so a broken bound can never start a measurement here.
NO_FILE = "/nonexistent/r.json"
CASES = [
    (["bench.compare", "--from", NO_FILE, "--train-seconds", "inf"], "--train-seconds must be a finite number"),
    (["bench.compare", "--from", NO_FILE, "--train-seconds", "nan"], "--train-seconds must be a finite number"),
    (["bench.compare", "--from", NO_FILE, "--rounds", "100000"], "--rounds must be at most 100"),
    (["bench.compare", "--from", NO_FILE, "--seed", "-1"], "--seed must be at least 0"),
    (["bench.compare", "--from", NO_FILE, "--seed", "4294967296"], "--seed must be at most 4294967295"),
    (["bench.compare", "--from", NO_FILE, "--hpo-trials", "1000000"], "--hpo-trials must be at most 1000"),
    (["bench.compare", "--from", NO_FILE, "--quality-concurrent", "0"], "--quality-concurrent must be at least 1"),
    (["bench.gate", "--baseline", NO_FILE, "--train-seconds", "inf"], "--train-seconds must be a finite number"),
    (["bench.gate", "--baseline", NO_FILE, "--rounds", "100000"], "--rounds must be at most 100"),
    (["bench.gate", "--baseline", NO_FILE, "--seed", "-1"], "--seed must be at least 0"),
    (["bench.calibrate", "--json", NO_FILE, "--aa-runs", "100000"], "--aa-runs must be at most 1000"),
    (["bench.calibrate", "--json", NO_FILE, "--train-seconds", "nan"], "--train-seconds must be a finite number"),
    (["bench.calibrate", "--json", NO_FILE, "--planted-slowdown", "inf"], "--planted-slowdown must be a finite"),
    (["bench.memory", "--from", NO_FILE, "--train-seconds", "inf"], "--train-seconds must be a finite number"),
    (["bench.repeat", "--from", NO_FILE, "--runs", "100000"], "--runs must be at most 100"),
    (["bench.swarm", "--json", NO_FILE, "--workers", "1,256"], "--workers must be worker counts in 1..128"),
    (["bench.swarm", "--json", NO_FILE, "--trials-per-worker", "1000"], "--trials-per-worker must be at most 20"),
    (["bench.swarm", "--json", NO_FILE, "--deadline-s", "inf"], "--deadline-s must be a finite number"),
    (["bench.swarm", "--json", NO_FILE, "--mean-trial-s", "0"], "--mean-trial-s must be at least 0.2"),
    (["bench.gpu", "--json", NO_FILE, "--seconds", "inf"], "--seconds must be a finite number"),
    (["diffusion.rings", "--json", NO_FILE, "--seed", "-1"], "--seed must be at least 0"),
    (["diffusion.verify", "--checkpoint", NO_FILE, "--seed", "4294967296"], "--seed must be at most 4294967295"),
    (["diffusion.verify", "--checkpoint", NO_FILE, "--events", "100000000"], "--events must be at most 1000000"),
    (["diffusion.train", "--out", NO_FILE, "--seed", "-1"], "--seed must be at least 0"),
    (["diffusion.train", "--out", NO_FILE, "--seed", "4294967296"], "--seed must be at most 4294967295"),
    (["diffusion.train", "--out", NO_FILE, "--target-loss", "nan"], "--target-loss must be a finite number"),
    (["diffusion.train", "--out", NO_FILE, "--path", "neu:batch_size=8,batch_size=64"], "given twice"),
    (["diffusion.hpo", "sbatch", "--study", "s", "--n-trials", "1", "--workers", "0"], "--workers must be at least 1"),
    (["diffusion.hpo", "worker", "--study", "s", "--n-trials", "10000000"], "--n-trials must be at most 100000"),
]


@pytest.mark.parametrize(("command", "message"), CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES])
def test_an_out_of_bounds_number_is_one_line_exit_2_before_tensorflow(tmp_path, command, message, blocked_tf):
    result = subprocess.run(
        [PYTHON, "-m", *command], capture_output=True, text=True, env=python_env(**blocked_tf), cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_hpo_run_with_an_out_of_range_seed_creates_no_journal(tmp_path, seed, blocked_tf):
    journal = tmp_path / "s.log"
    command = ["diffusion.hpo", "run", "--study", "s", "--n-trials", "1", "--storage", str(journal), "--seed", seed]
    result = subprocess.run(
        [PYTHON, "-m", *command], capture_output=True, text=True, env=python_env(**blocked_tf), cwd=tmp_path
    )
    assert result.returncode == 2 and "--seed must be at" in result.stderr, result.stderr
    assert not journal.exists() and list(Path(tmp_path).iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("neu:val_batches=10001", "`val_batches` must be at most 10000"),
        ("alt:batch_size=65537", "`batch_size` must be at most 65536"),
        ("alt:val_batch_size=1000000", "`val_batch_size` must be at most 65536"),
    ],
)
def test_a_count_knob_past_its_cap_is_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_path(spec)


def test_a_count_knob_at_its_cap_is_accepted():
    assert parse_path("alt:batch_size=65536,val_batches=10000").val_batches == 10_000


def test_a_memory_plan_refuses_a_batch_past_the_cap():
    from bench.memory import MemoryPlan

    with pytest.raises(ConfigError, match="`batches` must be at most 65536"):
        MemoryPlan.from_specs(preset="tiny", paths=("alt",), batches=(32, 1_000_000))
