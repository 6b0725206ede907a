"""`python -m bench.calibrate` says what it is doing: a line per finished gate run when piped (at
most 80 columns), the defaults in --help, and a plot whose legend explains its red markers
without covering a run. Gate runs are fakes: nothing is measured here."""

from __future__ import annotations

import contextlib
import copy
import json

import pytest

from bench import calibrate, calibration_report
from diffusion.progress import WIDTH
from tests.conftest import ROOT

RECORD = ROOT / "results" / "gate-calibration-tiny-epyc-2cpu.json"


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(RECORD.read_text())


def measured_run(record: dict, kind: str) -> dict:
    """A run of ``kind`` as one_run returns it (the committed record's, without its kind)."""
    run = next(r for r in record["runs"] if r["kind"] == kind)
    return {k: v for k, v in copy.deepcopy(run).items() if k != "kind"}


def test_a_passed_run_shows_the_first_metrics_interval(record):
    detail = calibrate.run_detail(measured_run(record, "aa"))
    assert detail.startswith("passed: train ") and "x [" in detail and ", val " in detail


def test_a_fired_run_shows_the_interval_of_the_metric_that_fired_first(record):
    run = measured_run(record, "aa")
    run["fired"] = True
    val = next(c for c in run["checks"] if c["metric"] == "val_pass_s")
    val.update(passed=False, measured={"estimate": 0.8, "low": 0.75, "high": 0.85, "n": 5})
    assert calibrate.run_detail(run).startswith("FIRED: val 0.80x [0.75, 0.85], train ")


def test_an_unmeasured_metric_says_so(record):
    run = measured_run(record, "power")
    run["checks"][0]["measured"] = None
    assert "train not measured" in calibrate.run_detail(run)


@pytest.fixture
def fake_runs(monkeypatch, record):
    """bench.calibrate.main with every gate run a committed one: no tree exported, nothing measured."""
    import bench.gate

    @contextlib.contextmanager
    def no_trees(commit, fraction):
        yield object(), object()

    monkeypatch.setattr(calibrate, "trees", no_trees)
    monkeypatch.setattr(bench.gate, "ab_plan", lambda *args, **kwargs: None)
    monkeypatch.setattr(calibrate, "one_run", lambda plan, tolerance, seed: measured_run(record, "aa"))


def test_a_piped_calibration_prints_one_line_per_finished_run_in_80_columns(tmp_path, fake_runs, capsys):
    out = tmp_path / "C.json"
    assert calibrate.main(["--aa-runs", "3", "--power-runs", "2", "--json", str(out)]) == 0
    lines = capsys.readouterr().err.splitlines()
    runs = [line for line in lines if " calibrate " in line]
    assert [line.split(" in ")[0] for line in runs] == [
        "[1/5] calibrate A/A 1/3",
        "[2/5] calibrate planted 1/2",
        "[3/5] calibrate A/A 2/3",
        "[4/5] calibrate planted 2/2",
        "[5/5] calibrate A/A 3/3",
    ]
    assert all("passed: train " in line for line in runs)
    assert max(len(line) for line in lines) <= WIDTH
    assert out.exists() and out.with_suffix(".png").exists()


class Cut(Exception):
    """Stands for the kill: the calibration stops after its first run."""


def test_a_resumed_calibration_counts_only_the_runs_it_measures(tmp_path, fake_runs, monkeypatch, record, capsys):
    out = tmp_path / "C.json"
    args = ["--aa-runs", "2", "--power-runs", "1", "--json", str(out)]
    measured: list[int] = []

    def first_only(plan, tolerance, seed):
        if measured:
            raise Cut
        measured.append(seed)
        return measured_run(record, "aa")

    with monkeypatch.context() as patch:
        patch.setattr(calibrate, "one_run", first_only)
        with pytest.raises(Cut):
            calibrate.main(args)
    capsys.readouterr()
    assert calibrate.main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "calibrate: 1 of 3 runs reused" in err
    assert [line.split(" in ")[0] for line in err.splitlines() if line.startswith("[")] == [
        "[1/2] calibrate planted 1/1",
        "[2/2] calibrate A/A 2/2",
    ]


def test_a_long_detail_is_cut_so_the_whole_line_fits(record):
    from diffusion.progress import fit_job_detail

    class Bar:
        name, total = "calibrate", 2000

    run = measured_run(record, "aa")
    run["errors"] = ["worker exited 1: " + "x" * 200]
    what = calibrate.run_label("power", 999, 1000, 1000)
    line = f"[2000/2000] calibrate {what} in 9999.9 s: {fit_job_detail(Bar(), what, calibrate.run_detail(run))}"
    assert len(line) <= WIDTH and line.endswith("…")


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        calibrate.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    from bench.gate_options import calibrated_defaults

    force = calibrated_defaults("tiny")  # the calibration in force
    rounds, tolerance = f"(default: the gate's; at tiny {force['rounds']})", f"at tiny {force['tolerance']:g})"
    for says in (rounds, tolerance, "(default 1, the gate's)", "(default: none)"):
        assert says in text
    assert "at tiny turns)" in text or "at tiny processes)" in text


# ---- the plot ----------------------------------------------------------------------------


def test_the_calibration_plot_renders_a_png(tmp_path, record):
    path = tmp_path / "C.png"
    calibration_report.plot(record, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_legend_names_the_red_markers_and_every_kind_of_run(record):
    import matplotlib.pyplot as plt

    fig = calibration_report.figure(record)
    labels = calibration_report.legend_labels(fig)
    plt.close(fig)
    assert calibration_report.FIRED_LABEL in labels and "fired" in calibration_report.FIRED_LABEL
    assert labels[:2] == ["A/A (no change)", "planted slowdown"]
    assert any(label.startswith("floor ") for label in labels)


def test_the_red_marker_has_its_legend_entry_even_when_no_run_fired(record):
    import matplotlib.pyplot as plt

    quiet = {**record, "runs": [r for r in record["runs"] if r["kind"] == "aa" and not r["fired"]]}
    fig = calibration_report.figure(quiet)
    assert calibration_report.FIRED_LABEL in calibration_report.legend_labels(fig)
    plt.close(fig)


def test_the_legend_lies_below_the_panels_not_over_a_run(record):
    import matplotlib.pyplot as plt

    fig = calibration_report.figure(record)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    top = legend.get_window_extent(renderer).y1
    assert all(not ax.get_legend() for ax in fig.axes)  # no legend inside a panel
    assert all(top < ax.get_window_extent(renderer).y0 for ax in fig.axes)
    plt.close(fig)
