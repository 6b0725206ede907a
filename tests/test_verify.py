"""`python -m diffusion.verify`, run as a user runs it, on a checkpoint trained here."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import PYTHON, python_env


def verify(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "diffusion.verify", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=python_env(**env),
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny NEU model after 2 epochs, trained by the training CLI."""
    out = tmp_path_factory.mktemp("verify") / "run"
    result = subprocess.run(
        [PYTHON, "-m", "diffusion.train", "--path", "neu", "--preset", "tiny", "--epochs", "2"]
        + ["--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        env=python_env(),
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_verify_prints_the_metrics_with_the_ceiling_and_writes_json_and_plots(tiny_run, tmp_path):
    record_path, plots = tmp_path / "verify.json", tmp_path / "plots"
    result = verify(
        "--checkpoint",
        str(tiny_run),
        "--events",
        "60",
        "--steps",
        "5",
        "--json",
        str(record_path),
        "--plots",
        str(plots),
    )
    assert result.returncode == 0, result.stderr
    assert "ceiling (simulated vs simulated)" in result.stdout
    assert "PMT selection" in result.stdout
    record = json.loads(record_path.read_text())
    assert record["schema"] == "pmt-bench/verify/1"
    assert record["preset"] == "tiny" and record["epoch"] == 2
    metrics = record["metrics"]
    assert set(metrics) == {
        "val_loss",
        "fidelity",
        "classifier_auc",
        "physics_score",
        "multiplicity_success",
        "energy_violation",
    }
    for name, values in metrics.items():
        if name != "val_loss":
            assert 0.0 <= values["ceiling"] <= 1.0 + 1e-9
    # The ceiling is two simulations of the same truth: better than a 2-epoch model on the metrics
    # a model can only approach.
    assert metrics["fidelity"]["ceiling"] > metrics["fidelity"]["generated"]
    assert metrics["energy_violation"]["ceiling"] < metrics["energy_violation"]["generated"]
    selection = record["selection"]
    assert selection["select"] == 48  # half of tiny's 96 PMTs: the report's 300 do not fit
    assert 0.0 <= selection["top_overlap"] <= 1.0
    assert selection["detection_rate_all_pmts"] >= selection["detection_rate"]["random"]
    assert sorted(p.name for p in plots.iterdir()) == ["hit_maps.png", "observables.png", "selection.png"]
    assert all(p.stat().st_size > 1000 for p in plots.iterdir())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nowhere", "no checkpoint at"),
        (lambda d: (d / "checkpoint.npz").write_bytes(b"not a zip") and d, "is corrupt"),
    ],
)
def test_a_missing_or_corrupt_checkpoint_answers_in_one_line_before_tensorflow_loads(
    blocked_tf, tmp_path, make, message
):
    path = make(tmp_path)
    json_path = tmp_path / "keep.json"
    json_path.write_text("{}")
    result = verify("--checkpoint", str(path), "--json", str(json_path), **blocked_tf)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert json_path.read_text() == "{}"  # nothing already written is lost


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events", "5"], "--events must be at least 20"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--permutations", "7"], "--permutations must be even"),
        (["--trigger-k", "0"], "--trigger-k must be at least 1"),
        (["--select", "0"], "--select must be at least 1"),
    ],
)
def test_bad_arguments_answer_in_one_line(blocked_tf, tmp_path, args, message):
    result = verify("--checkpoint", str(tmp_path), *args, **blocked_tf)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# ---- progress: a line per finished stage, in-process on an untrained model ------------------


@pytest.fixture
def untrained(tmp_path, tiny, tiny_data, monkeypatch):
    """A checkpoint of tiny's denoiser as built (no training), and a classifier that says 0.5
    without training one: verification's stages, not its numbers, are under test."""
    import dataclasses

    import diffusion.two_sample
    from diffusion.checkpoint import Checkpoint, save_checkpoint
    from diffusion.model import build_denoiser
    from tests.test_reads import META

    model = build_denoiser(tiny_data.train.x.shape[1], tiny_data.train.cond.shape[1], tiny.model)
    path = tmp_path / "run" / "checkpoint.npz"
    save_checkpoint(path, Checkpoint(model.get_weights(), [], {**META, "model": dataclasses.asdict(tiny.model)}))
    monkeypatch.setattr(diffusion.two_sample, "classifier_auc", lambda a, b, *, seed=0: 0.5)
    return path.parent


def test_a_piped_verification_prints_one_line_per_stage_within_80_columns(untrained, tmp_path, capsys):
    from diffusion.verify import main, stages

    plots = tmp_path / "plots"
    args = ["--checkpoint", str(untrained), "--events", "20", "--steps", "1", "--permutations", "2"]
    assert main([*args, "--plots", str(plots)]) == 0
    lines = capsys.readouterr().err.splitlines()
    planned = stages(selection=True, plots=True)
    shown = [line for line in lines if line.startswith("[")]
    assert [line.split(" in ")[0] for line in shown] == [
        f"[{n}/{len(planned)}] verify {stage}" for n, stage in enumerate(planned, 1)
    ]
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    said = dict(zip(planned, shown, strict=True))
    assert said["generation"].endswith("events/s incl. tracing")
    assert "AUC 0.500 (ceiling 0.500" in said["classifier"]
    assert "3 PNGs" in said["plots"]


def test_the_selection_record_says_whether_the_trigger_energies_lie_inside_the_training_ones():
    from diffusion.detector import PHYSICS_EVENTS, TRIGGER_EVENTS, EventConfig
    from diffusion.verify import energy_note

    assert "inside the 2-80 MeV" in energy_note(TRIGGER_EVENTS, PHYSICS_EVENTS)
    assert "outside" in energy_note(TRIGGER_EVENTS, EventConfig(energy_range_mev=(15.0, 80.0)))
