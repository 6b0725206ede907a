from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diffusion.errors import ConfigError
from diffusion.paths import ALT, KNOBS, NEU, TrainingPath, format_path, parse_path


def test_alt_and_neu_are_the_seed_setups():
    assert (ALT.train_compile, ALT.val_compile, ALT.loader, ALT.clip_norm) == ("eager", "eager", "sync", None)
    assert (ALT.batch_size, ALT.val_batches, ALT.val_batch_size) == (32, 50, 32)
    assert (NEU.train_compile, NEU.val_compile, NEU.loader, NEU.clip_norm) == ("graph", "graph", "prefetch", 1.0)
    assert (NEU.batch_size, NEU.val_batches, NEU.val_batch_size) == (32, 20, 64)
    assert (ALT.tracking, NEU.tracking) == ("jsonl", "tensorboard")


def test_tracking_parses_from_a_spec():
    assert parse_path("neu:tracking=tensorboard") == NEU
    assert parse_path("alt:tracking=none").tracking == "none"


def test_knob_names_are_the_shared_vocabulary():
    assert KNOBS == (
        "train_compile",
        "val_compile",
        "batch_size",
        "loader",
        "clip_norm",
        "val_batches",
        "val_batch_size",
        "tracking",
    )


def test_spec_overrides_one_knob():
    assert parse_path("neu:train_compile=xla") == dataclasses.replace(NEU, train_compile="xla")


def test_spec_overrides_several_knobs_and_none():
    path = parse_path("alt:val_batches=20,val_batch_size=64,clip_norm=none")
    assert (path.val_batches, path.val_batch_size, path.clip_norm) == (20, 64, None)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("nope", "valid paths: alt, neu"),
        ("neu:speed=11", "valid knobs: train_compile"),
        ("neu:train_compile=jit", "eager, graph, xla"),
        ("neu:loader=async", "sync, prefetch"),
        ("neu:batch_size=0", "at least 1"),
        ("neu:batch_size=many", "integer"),
        ("neu:clip_norm=-1", "positive number or none"),
        ("neu:train_compile", "knob=value"),
        ("neu:tracking=wandb", "none, jsonl, tensorboard, histograms"),
    ],
)
def test_bad_spec_names_the_value_and_the_choices(spec, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_path(spec)


paths = st.builds(
    TrainingPath,
    train_compile=st.sampled_from(["eager", "graph", "xla"]),
    val_compile=st.sampled_from(["eager", "graph", "xla"]),
    batch_size=st.integers(1, 512),
    loader=st.sampled_from(["sync", "prefetch"]),
    clip_norm=st.one_of(st.none(), st.floats(0.01, 100.0)),
    val_batches=st.integers(1, 100),
    val_batch_size=st.integers(1, 256),
    tracking=st.sampled_from(["none", "jsonl", "tensorboard", "histograms"]),
)


@given(paths)
def test_format_path_round_trips(path):
    assert parse_path(format_path(path)) == path
