"""Every file read is validated: a record, registry, checkpoint, metrics log or journal of the
wrong shape is one line naming the file and the field (exit 2), never a traceback, and nothing
is written; a partial last metrics line, as a kill mid-append leaves it, is dropped on resume."""

from __future__ import annotations

import json
import math
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import baseline as stored
from bench.claims import load_claims
from diffusion.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from diffusion.errors import CheckpointError, ConfigError
from diffusion.shapes import NUMBER, ListOf, Maybe, Record, check
from tests.conftest import PYTHON, ROOT, python_env
from tests.test_gate import a_baseline

COMPARE_RECORD = ROOT / "results" / "compare-alt-neu-seed-epyc-2cpu.json"
GPU_RECORD = ROOT / "results" / "gpu-seed-h200-x2.json"
REPEAT_RECORD = ROOT / "results" / "repeat-small-epyc-2cpu.json"
MEMORY_RECORD = ROOT / "results" / "memory-small-epyc-2cpu.json"
CALIBRATION_RECORD = ROOT / "results" / "gate-calibration-tiny-epyc-2cpu.json"


def cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", *args], capture_output=True, text=True, env=python_env(**env), cwd=tmp_path, timeout=120
    )


def one_line_exit_2(result: subprocess.CompletedProcess, *parts: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for part in parts:
        assert part in result.stderr, result.stderr


def edited(source: Path, tmp_path: Path, edit: Any) -> Path:
    """A copy of a committed record with one hand edit applied (``edit`` mutates the dict)."""
    record = json.loads(source.read_text())
    edit(record)
    path = tmp_path / source.name
    path.write_text(json.dumps(record))  # NaN and Infinity as JSON writes them
    return path


def refused(call: Any, *parts: str) -> str:
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


# ---- the shape check -----------------------------------------------------------------------------


def test_a_wrong_type_deep_inside_is_named_by_its_field_path():
    shape = Record({"claims": ListOf(Record({"ci": ListOf(NUMBER)}))})
    value = {"claims": [{"ci": [1.0, 2.0]}] * 3 + [{"ci": ["x", 2.0]}]}
    refused(lambda: check(value, shape, "--from 'r.json'"), "--from 'r.json': `claims[3].ci[0]` must be a finite")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, True, "1"])
def test_a_number_must_be_finite_and_no_bool_or_text(bad):
    refused(lambda: check({"x": bad}, Record({"x": NUMBER}), "f"), "`x` must be a finite number")


def test_a_missing_field_is_named_and_none_is_allowed_only_where_maybe():
    refused(lambda: check({}, Record({"a": int}), "f"), "`a` must be present, but it is missing")
    check({"a": None}, Record({"a": Maybe(int)}), "f")
    refused(lambda: check({"a": None}, Record({"a": int}), "f"), "`a` must be an integer, but got None")


def test_fields_the_shape_does_not_name_are_left_alone():
    check({"a": 1, "extra": math.nan}, Record({"a": int}), "f")


# ---- bench.compare --from and the other --from readers -------------------------------------------


def claim(index: int, **changes: Any) -> Any:
    def edit(record: dict[str, Any]) -> None:
        record["claims"][index].update(changes)

    return edit


COMPARE_CASES = [
    (claim(3, ci=["x", 1.0]), "`claims[3].ci[0]` must be a finite number, but got 'x'"),
    (claim(0, measured={"estimate": math.nan, "low": 1.0, "high": 2.0}), "`claims[0].measured.estimate` must be a fi"),
    (claim(1, verdict="splendid"), "`claims[1].verdict` must be a verdict"),
    (lambda r: r["claims"][2].pop("id"), "`claims[2].id` must be present"),
    (lambda r: r["base"].update(spec=3), "`base.spec` must be a string, but got 3"),
    (
        lambda r: r["ablations"][0].update(ratio={"estimate": 2.0, "low": math.inf, "high": 3.0}),
        "`ablations[0].ratio.low`",
    ),
    (lambda r: r.update(claims={"V1": {}}), "`claims` must be a list"),
]


@pytest.mark.parametrize(("edit", "message"), COMPARE_CASES, ids=[m.split("`")[1] for _, m in COMPARE_CASES])
def test_a_hand_edited_comparison_is_refused_naming_the_file_and_field(tmp_path, edit, message):
    from bench.compare import main

    path = edited(COMPARE_RECORD, tmp_path, edit)
    out = tmp_path / "out.json"
    refused(lambda: main(["--from", str(path), "--json", str(out)]), f"--from {str(path)!r}", message)
    assert not out.exists()


def test_a_hand_edited_comparison_is_one_line_exit_2_from_the_cli(tmp_path, blocked_tf):
    path = edited(COMPARE_RECORD, tmp_path, claim(3, ci=[1.0, math.nan]))
    out, md = tmp_path / "out.json", tmp_path / "out.md"
    result = cli(tmp_path, blocked_tf, "bench.compare", "--from", str(path), "--json", str(out), "--markdown", str(md))
    one_line_exit_2(result, str(path), "`claims[3].ci[1]` must be a finite number, but got nan")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_an_infinite_estimate_in_a_gpu_record_is_refused(tmp_path):
    from bench.compare import main

    path = edited(GPU_RECORD, tmp_path, lambda r: r["claims"][0].update(measured={"estimate": math.inf}))
    refused(lambda: main(["--from", str(path)]), str(path), "`claims[0].measured.estimate` must be a finite")


def test_a_repeat_record_of_the_wrong_shape_is_refused(tmp_path):
    from bench.repeat import main

    path = edited(REPEAT_RECORD, tmp_path, lambda r: r["runs"][1]["verdicts"].update(V1="great"))
    out = tmp_path / "out.md"
    refused(lambda: main(["--from", str(path), "--markdown", str(out)]), str(path), "`runs[1].verdicts.V1` must be")
    assert not out.exists()


def test_a_memory_record_of_the_wrong_shape_is_refused(tmp_path):
    from bench.memory import main

    path = edited(MEMORY_RECORD, tmp_path, lambda r: r["records"][2].update(batch="64"))
    out = tmp_path / "out.md"
    refused(lambda: main(["--from", str(path), "--markdown", str(out)]), str(path), "`records[2].batch` must be")
    assert not out.exists()


def test_a_calibration_record_of_the_wrong_shape_is_refused_and_writes_nothing_beside_it(tmp_path):
    from bench.calibrate import main

    path = edited(CALIBRATION_RECORD, tmp_path, lambda r: r["runs"][0]["checks"][1].update(passed="yes"))
    refused(lambda: main(["--from", str(path)]), str(path), "`runs[0].checks[1].passed` must be true or false")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rounds": "3"}, "`rounds` must be an integer"),
        ({"fingerprint": []}, "`fingerprint` must be an object"),
        ({"metrics": {"train_samples_per_s": {"ratio": math.inf, "tolerance": 0.1}}}, "`metrics.train_samples_per_s"),
    ],
)
def test_a_gate_baseline_of_the_wrong_shape_is_refused(tmp_path, change, message):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(a_baseline(**change)))
    refused(lambda: stored.load(path), f"--baseline {str(path)!r}", message)


def test_every_committed_record_still_passes_its_reader():
    from bench.compare import load_result
    from bench.shapes import CALIBRATION, MEMORY, REPEAT

    for path in [COMPARE_RECORD, GPU_RECORD, *ROOT.glob("results/[csq]*-*.json")]:
        if json.loads(path.read_text())["schema"].startswith("pmt-bench/compare/"):
            load_result(path)
    load_result(GPU_RECORD)
    for path, shape in ((REPEAT_RECORD, REPEAT), (MEMORY_RECORD, MEMORY), (CALIBRATION_RECORD, CALIBRATION)):
        check(json.loads(path.read_text()), shape, str(path))


# ---- the claims registry -------------------------------------------------------------------------

ROW = 'id="X1"\nfamily="validation"\ntext="t"\nmetric="val_pass_s"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[claim]\n" + ROW + "claimed=2.0\n", "`claim` must be a list"),
        ("[[claim]]\n" + ROW + "claimed=inf\n", "`claim[0].claimed` must be a finite number, but got inf"),
        ("[[claim]]\n" + ROW + "claimed=nan\n", "`claim[0].claimed` must be a finite number, but got nan"),
        ("[[claim]]\n" + ROW + 'claimed="2"\n', "`claim[0].claimed` must be a finite number, but got '2'"),
        ("[[claim]]\n" + ROW + "claimed=2.0\nfactor=[1]\n", "`claim[0].factor[0]` must be a string"),
        ("[[claim]]\n" + ROW + "claimed=2.0\ntolerance=inf\n", "`claim[0].tolerance` must be a finite number"),
    ],
)
def test_a_registry_of_the_wrong_shape_is_refused_naming_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "claims.toml"
    path.write_text(text)
    refused(lambda: load_claims(path), f"claims registry {path}", message)


def test_a_bad_value_in_a_registry_row_names_the_file_too(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text("[[claim]]\n" + ROW + "claimed=-1\n")
    refused(lambda: load_claims(path), f"claims registry {path}: claim 'X1': `claimed` must be positive")


def test_compare_claims_of_the_wrong_shape_is_one_line_exit_2(tmp_path, blocked_tf):
    path = tmp_path / "claims.toml"
    path.write_text("[claim]\n" + ROW + "claimed=2.0\n")
    result = cli(tmp_path, blocked_tf, "bench.compare", "--from", str(COMPARE_RECORD), "--claims", str(path))
    one_line_exit_2(result, str(path), "`claim` must be a list")


# ---- checkpoints ---------------------------------------------------------------------------------

META = {"global_step": 4, "epoch": 1, "path": {}, "preset": "tiny", "model": {}, "seed": 0}


def test_a_checkpoint_with_metadata_of_the_right_shape_loads(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, Checkpoint([np.zeros(3)], [np.ones(2)], META))
    assert load_checkpoint(path).meta["global_step"] == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [({"global_step": "4"}, "`global_step` must be an integer"), ({"path": None}, "`path` must be an object")],
)
def test_a_checkpoint_whose_metadata_has_a_wrong_shape_names_the_file_and_field(tmp_path, change, message):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, Checkpoint([np.zeros(3)], [np.ones(2)], META | change))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert f"checkpoint {path}" in str(info.value) and message in str(info.value)


def test_a_checkpoint_missing_a_field_names_it(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, Checkpoint([np.zeros(3)], [], {k: v for k, v in META.items() if k != "seed"}))
    refused(lambda: load_checkpoint(path), str(path), "`seed` must be present")


# ---- metrics.jsonl -------------------------------------------------------------------------------


def test_a_partial_last_metrics_line_is_dropped_and_said(tmp_path):
    from diffusion.tracking import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "val_loss": 0.5}\n{"epoch": 2, "val_lo')
    lines, note = read_metrics(path)
    assert [record["epoch"] for _, record in lines] == [1]
    assert note is not None and "line 2 is a partial line" in note and str(path) in note


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"epoch": 1}\n{"epoch": 2, "val\n{"epoch": 3}\n', "line 2 must be a JSON epoch record"),
        ('{"epoch": 1}\n{"epoch": "2"}\n', "line 2: `epoch` must be an integer"),
        ('{"epoch": 1}\n[2]\n', "line 2: the record must be an object"),
    ],
)
def test_a_bad_metrics_line_before_the_last_or_without_an_epoch_is_refused(tmp_path, text, message):
    from diffusion.tracking import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text(text)
    refused(lambda: read_metrics(path), str(path), message)


def test_resume_after_a_kill_mid_append_drops_the_partial_line_and_trains_on(tiny, tiny_data, tmp_path, capsys):
    from diffusion.paths import ALT
    from diffusion.trainer import Trainer, fit

    fit(Trainer(tiny, ALT, data=tiny_data), 1, tmp_path)
    log = tmp_path / "metrics.jsonl"
    with log.open("a") as f:
        f.write('{"epoch": 2, "train_loss": 0.')  # killed mid-append
    capsys.readouterr()
    result = fit(Trainer(tiny, ALT, data=tiny_data), 2, tmp_path, resume=True)
    assert "is a partial line (a kill mid-append); dropped it" in capsys.readouterr().err
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2]


# ---- hpo journal files ---------------------------------------------------------------------------


def not_a_journal(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.log"
    if kind == "text":
        path.write_text("hello\nworld\n")
    elif kind == "bytes":
        path.write_bytes(random.Random(0).randbytes(200) + b"\n" + random.Random(1).randbytes(100))
    else:
        path.mkdir()
    return path


@pytest.mark.parametrize("kind", ["text", "bytes", "directory"])
def test_a_storage_that_is_no_journal_is_refused_in_process(tmp_path, kind):
    from diffusion.hpo.storage import open_storage

    path = not_a_journal(tmp_path, kind)
    refused(lambda: open_storage(f"journal:{path}"), f"journal file {str(path)!r}")


def test_a_journal_that_optuna_wrote_opens_and_a_partial_last_line_is_left_to_optuna(tmp_path):
    import optuna

    from diffusion.hpo.storage import check_journal, open_storage

    path = tmp_path / "s.log"
    optuna.create_study(study_name="s", storage=open_storage(f"journal:{path}"))
    with path.open("ab") as f:
        f.write(b'{"op_code": 1, "wor')  # a writer mid-append
    check_journal(path)


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (["best", "--out", "best.json"], "text"),
        (["best", "--out", "best.json"], "bytes"),
        (["best", "--out", "best.json"], "directory"),
        (["worker", "--n-trials", "1"], "text"),
        (["run", "--n-trials", "1"], "text"),
        (["init"], "text"),
    ],
)
def test_an_hpo_storage_that_is_no_journal_is_one_line_exit_2(tmp_path, blocked_tf, command, kind):
    path = not_a_journal(tmp_path, kind)
    before = path.read_bytes() if path.is_file() else None
    result = cli(
        tmp_path, blocked_tf, "diffusion.hpo", command[0], "--study", "s", "--storage", str(path), *command[1:]
    )
    one_line_exit_2(result, f"journal file {str(path)!r}")
    assert (path.read_bytes() if path.is_file() else None) == before
    assert not (tmp_path / "best.json").exists()


# ---- the gate's failure count --------------------------------------------------------------------


def test_the_gate_counts_failed_workers_not_distinct_messages():
    from bench.gate import gate_checks

    records = [{"role": role, "round": r, "error": "worker exited 1"} for r in range(3) for role in ("ref", "head")]
    checks = gate_checks(records, (("ref", "REF"), ("head", "HEAD")), {"train_samples_per_s": (1.0, 0.1)}, "here")
    assert "6 worker failure(s): worker exited 1" in checks[0].message


# ---- read-only targets beside the named outputs ---------------------------------------------------


def test_a_read_only_markdown_beside_a_calibration_record_is_refused_and_kept(tmp_path):
    from bench.calibrate import main

    path = tmp_path / CALIBRATION_RECORD.name
    path.write_text(CALIBRATION_RECORD.read_text())
    md = path.with_suffix(".md")
    md.write_text("kept")
    md.chmod(0o444)
    refused(lambda: main(["--from", str(path)]), f"--from's Markdown {str(md)!r} is not writable")
    assert md.read_text() == "kept" and not path.with_suffix(".png").exists()


def test_a_read_only_plot_beside_memory_markdown_is_refused(tmp_path):
    from bench.memory import main

    md, png = tmp_path / "m.md", tmp_path / "m.png"
    png.write_text("kept")
    png.chmod(0o444)
    refused(lambda: main(["--from", str(MEMORY_RECORD), "--markdown", str(md)]), f"{str(png)!r} is not writable")
    assert png.read_text() == "kept" and not md.exists()


# ---- hpo best.json and the data-set cache ---------------------------------------------------------


def test_a_best_json_outside_the_space_names_the_file_and_the_parameter(tmp_path):
    from diffusion.hpo.space import load_best

    path = tmp_path / "best.json"
    path.write_text(json.dumps({"params": {"learning_rate": math.nan}}))
    refused(lambda: load_best(path), f"--config {str(path)!r}: `learning_rate` must be a number in")


def test_a_data_set_cache_whose_metadata_is_no_object_is_regenerated(tmp_path, tiny):
    from diffusion.dataset import dataset_key, load_events

    detector, events, n = tiny.detector, tiny.events, 8
    path = tmp_path / f"events-{dataset_key(detector, events, n, 0)}.npz"
    np.savez(path, __meta__=np.array("[1, 2]"))
    with pytest.warns(UserWarning, match="regenerating corrupt data-set cache"):
        regenerated = load_events(detector, events, n, 0, directory=tmp_path)
    assert len(regenerated.arrays()["charge"]) == n
