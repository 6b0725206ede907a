"""A second hostile look (issue 19's last item): inputs the first round did not name, each refused in
one line naming the file or flag and the rule, nothing written, no secret shown."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from bench.partial import Identity, Partial
from diffusion.cli import CORES, TOLERANCE, check_writable_file
from diffusion.files import read_json_record
from diffusion.hpo.storage import check_journal, has_secret, redact, resolve_storage, scrub
from diffusion.outputs import check_outputs
from tests.test_reads import CALIBRATION_RECORD, COMPARE_RECORD, MEMORY_RECORD, cli, edited, one_line_exit_2, refused

DEEP = "[" * 100_000 + "]" * 100_000  # past the interpreter's stack: json raises RecursionError
HUGE_INT = "9" * 5000  # past Python's 4,300-digit limit: json raises a ValueError that is no JSONDecodeError


# ---- JSON that json.loads cannot turn into a value, in every reader -------------------------------


@pytest.mark.parametrize(("text", "says"), [(DEEP, "nested too deeply"), ('{"a": ' + HUGE_INT + "}", "4300 digits")])
def test_a_record_nested_too_deeply_or_with_a_5000_digit_number_is_one_line(tmp_path, text, says):
    path = tmp_path / "r.json"
    path.write_text(text)
    refused(lambda: read_json_record(path, "--from"), "--from", "is not valid JSON", says)


def test_a_deeply_nested_record_is_one_line_exit_2_from_the_cli(tmp_path, blocked_tf):
    (tmp_path / "r.json").write_text(DEEP)
    one_line_exit_2(cli(tmp_path, blocked_tf, "bench.compare", "--from", "r.json"), "'r.json'", "nested too deeply")


def test_a_metrics_line_with_a_5000_digit_number_before_the_last_is_refused(tmp_path):
    from diffusion.tracking import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": ' + HUGE_INT + '}\n{"epoch": 3}\n')
    refused(lambda: read_metrics(path), str(path), "line 2 must be a JSON epoch record")


def test_a_journal_line_nested_too_deeply_is_refused(tmp_path):
    path = tmp_path / "j.log"
    path.write_text(DEEP + "\n")
    refused(lambda: check_journal(path), "line 1 must be a JSON journal entry")


def test_a_repeat_record_with_a_5000_digit_number_is_refused(tmp_path):
    from bench.repeat import render_saved

    path = tmp_path / "r.json"
    path.write_text(HUGE_INT)
    refused(lambda: render_saved(path, None), "is not a readable repeat record")


# ---- partial records (--resume) --------------------------------------------------------------------

IDENTITY = Identity("c0de", {"plan": 1}, {"machine": "m"})


def partial_with(tmp_path: Path, *jobs: str) -> Path:
    path = tmp_path / "r.partial.jsonl"
    header = json.dumps({"schema": "pmt-bench/partial/1", "identity": IDENTITY.record()})
    path.write_text("\n".join([header, *jobs]) + "\n")
    return path


@pytest.mark.parametrize("key", ['{"a": 1}', '[1, {"a": 1}]', "[[1, [2, {}]]]"])
def test_a_partial_job_whose_key_holds_an_object_is_refused_not_a_traceback(tmp_path, key):
    path = partial_with(tmp_path, '{"key": ' + key + ', "record": {}}')
    refused(lambda: Partial.open(path, IDENTITY, resume=True), str(path), "line 2 must be a job {key, record}")


def test_a_partial_line_with_a_5000_digit_number_before_the_last_is_refused(tmp_path):
    path = partial_with(tmp_path, '{"key": ' + HUGE_INT + ', "record": {}}', '{"key": 2, "record": {}}')
    refused(lambda: Partial.open(path, IDENTITY, resume=True), "line 2 must be JSON")


def test_a_partial_job_record_of_the_wrong_shape_is_refused_naming_the_field(tmp_path):
    from bench.shapes import CALIBRATION_RUN

    run = {"kind": "aa", "seconds": math.nan, "fired": False, "checks": [], "per_round": {}}
    path = partial_with(tmp_path, json.dumps({"key": ["aa", 0], "record": run}))
    refused(
        lambda: Partial.open(path, IDENTITY, resume=True, shape=CALIBRATION_RUN),
        "line 2: `record.seconds` must be a finite number, but got nan",
    )


def test_a_failed_job_in_a_partial_record_is_not_held_to_the_shape(tmp_path):
    from bench.shapes import CALIBRATION_RUN

    path = partial_with(tmp_path, json.dumps({"key": ["aa", 0], "record": {"error": "worker exited 1"}}))
    partial = Partial.open(path, IDENTITY, resume=True, shape=CALIBRATION_RUN)
    partial.close()
    assert partial.done() == {}


def test_every_committed_calibration_run_and_memory_job_fits_its_partial_shape():
    from bench.shapes import CALIBRATION_RUN, MEMORY_JOB
    from diffusion.shapes import check

    for run in json.loads(CALIBRATION_RECORD.read_text())["runs"]:
        check(run, CALIBRATION_RUN, CALIBRATION_RECORD.name)
    for job in json.loads(MEMORY_RECORD.read_text())["records"]:
        check(job, MEMORY_JOB, MEMORY_RECORD.name)


# ---- --from records: the parts the renderers read -------------------------------------------------

COMPARE_EDITS = [
    (lambda r: r["environment"].update(versions="x"), "`environment.versions` must be an object"),
    (lambda r: r["environment"].update(gpus=[1]), "`environment.gpus[0]` must be a string"),
    (lambda r: r.update(roles=[{}]), "`roles[0].name` must be present"),
    (lambda r: r.update(scaling={"paths": [], "counts": []}), "`scaling.table` must be present"),
    (lambda r: r.update(sequential="x"), "`sequential` must be an object"),
    (lambda r: r.update(search={"plan": {"preset": "tiny", "trials": "8", "repeats": 1}}), "`search.plan.trials`"),
    (lambda r: r.update(quality={"verification": {"seeds": 1, "metrics": [], "detection_rate": {}}}), "metrics`"),
]


@pytest.mark.parametrize(("edit", "message"), COMPARE_EDITS, ids=[m.split("`")[1] for _, m in COMPARE_EDITS])
def test_a_comparison_with_a_bad_part_the_renderer_reads_is_refused(tmp_path, edit, message):
    from bench.compare import load_result

    path = edited(COMPARE_RECORD, tmp_path, edit)
    refused(lambda: load_result(path, reassess=True), f"--from {str(path)!r}", message)


CALIBRATION_EDITS = [
    (lambda r: r["target"].pop("aa_runs"), "`target.aa_runs` must be present"),
    (lambda r: r.update(post_hoc_at_tolerance={"0.05": "x"}), "`post_hoc_at_tolerance.0.05` must be an object"),
    (lambda r: r.update(seconds_per_run=math.nan), "`seconds_per_run` must be a finite number"),
    (lambda r: r["runs"][0].update(kind="nope"), "`runs[0].kind` must be one of 'aa', 'power'"),
    (lambda r: r.pop("tolerance"), "`tolerance` must be present"),
]


@pytest.mark.parametrize(("edit", "message"), CALIBRATION_EDITS, ids=[m.split("`")[1] for _, m in CALIBRATION_EDITS])
def test_a_calibration_with_a_bad_part_the_summary_reads_is_refused_and_writes_nothing(tmp_path, edit, message):
    from bench.calibrate import render

    path = edited(CALIBRATION_RECORD, tmp_path, edit)
    refused(lambda: render(path), f"--from {str(path)!r}", message)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# ---- secrets in the places a query parser does not look -------------------------------------------

SECRET = "Zq7sEcReT"
HIDDEN_URLS = [
    f"postgresql://h/db?options=-c%20password%3D{SECRET}",  # an encoded '=' inside a value
    f"postgresql://h/db?x=1;password={SECRET}",  # ';' separates pairs for libpq, not for parse_qsl
    f"postgresql://h/db#password={SECRET}",  # a fragment
    f"postgresql://u%3A{SECRET}@h/db",  # an encoded ':' between user and password
    f"postgresql://h/db?password%3D{SECRET}",
]


@pytest.mark.parametrize("url", HIDDEN_URLS)
def test_a_password_a_query_parser_misses_is_still_hidden(url):
    assert has_secret(url)
    assert SECRET not in redact(url)
    assert SECRET not in resolve_storage(url, "s").line()
    assert SECRET not in scrub(f"could not connect to {url}: password {SECRET} rejected", url)


def test_a_url_given_as_a_journal_path_is_refused_without_its_password():
    url = f"journal:postgresql://u:{SECRET}@h/db"
    message = refused(lambda: resolve_storage(url, "s"), "`--storage` must be journal:PATH with a file path")
    assert SECRET not in message
    assert has_secret(url) and SECRET not in redact(url)


def test_a_plain_journal_path_still_passes_unchanged():
    assert redact("journal:results/hpo/s.log") == "journal:results/hpo/s.log"
    assert resolve_storage("results/hpo/a=b.log", "s").url == "journal:results/hpo/a=b.log"


# ---- outputs that are no regular file ---------------------------------------------------------------


def test_dash_as_an_output_is_refused_not_written_as_a_file_named_dash(tmp_path):
    refused(lambda: check_outputs([("--json", Path("-"))]), "`--json` must be a file path, but got '-'")


def test_a_fifo_as_an_output_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(lambda: check_outputs([("--json", fifo)]), "`--json` must be a regular file", "is a FIFO")
    refused(lambda: check_writable_file(fifo, "--json"), "is a FIFO")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_as_an_output_is_refused_so_dev_null_is_never_replaced(tmp_path):
    null = tmp_path / "null"
    os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))  # a character device, as /dev/null
    link = tmp_path / "link"
    link.symlink_to(null)
    refused(lambda: check_outputs([("--json", link)]), "is a character device")


def test_compare_refuses_a_fifo_as_json_in_one_line(tmp_path, blocked_tf):
    os.mkfifo(tmp_path / "fifo")
    result = cli(tmp_path, blocked_tf, "bench.compare", "--from", str(COMPARE_RECORD), "--json", "fifo")
    one_line_exit_2(result, "`--json` must be a regular file")


# ---- numbers and script values ---------------------------------------------------------------------


@pytest.mark.parametrize(("parse", "text", "says"), [
    (CORES, "0x2", "must be an integer, but got '0x2'"),
    (TOLERANCE, "abc", "must be a number in [0, 1), but got 'abc'"),
    (TOLERANCE, "nan", "must be in [0, 1), but got nan"),
    (TOLERANCE, "1", "must be in [0, 1), but got 1.0"),
])  # fmt: skip
def test_cores_and_tolerance_say_their_range(parse: Any, text, says):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert says in str(info.value)


@pytest.mark.parametrize("module", ["bench.gate", "bench.calibrate"])
def test_gate_and_calibrate_say_the_range_of_cpus_and_tolerance(module, capsys):
    import importlib

    parser = importlib.import_module(module).build_parser()
    for args, says in ((["--cpus", "0x2"], "--cpus must be an integer"), (["--tolerance", "x"], "in [0, 1)")):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(args)
        assert info.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.parametrize("value", ["4:00:00$(id)", "٤:٠٠:٠٠", "1-", "abc", "4:00:00:00", "10:000"])
def test_an_sbatch_time_that_is_none_of_its_forms_is_refused(value):
    from diffusion.hpo.sbatch import check_time

    refused(lambda: check_time(value), "`--time` must be one of sbatch's forms")


@pytest.mark.parametrize("value", ["90", "90:30", "04:00:00", "2-12", "2-12:30", "1-00:00:00", "UNLIMITED"])
def test_every_sbatch_time_form_is_accepted(value):
    from diffusion.hpo.sbatch import check_time

    assert check_time(value) == value


# ---- a storage URL typed in the wrong place ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--study", "s", "--n-trials", "1", "--storagee", f"postgresql://u:{SECRET}@h/db"],  # a misspelt flag
        ["run", "--study", "s", "--n-trials", "1", f"postgresql://u:{SECRET}@h/db"],  # no flag at all
        ["run", "--study", f"postgresql://u:{SECRET}@h/db", "--n-trials", "1"],  # the wrong flag
        ["best", "--study", "s", "--out", f"postgresql://u:{SECRET}@h/db"],  # a URL as a path: one '/' left
    ],
    ids=["misspelt-flag", "positional", "as-study", "as-out"],
)
def test_a_storage_url_in_the_wrong_place_is_redacted_in_the_error(tmp_path, blocked_tf, args):
    result = cli(tmp_path, blocked_tf, "diffusion.hpo", *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert SECRET not in result.stdout + result.stderr and "***" in result.stderr


def test_scrub_urls_leaves_text_without_a_secret_alone():
    from diffusion.hpo.storage import scrub_urls

    text = "unknown path 'neu:x' in spec 'journal:/tmp/a.log'; see https://example.org/x?y=1"
    assert scrub_urls(text) == text
    assert scrub_urls(f"got 'sqlite:///a.db?password={SECRET}'.") == "got 'sqlite:///a.db?password=***'."


# ---- the quality suite's finished jobs (--work-dir) --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"), [('{"a": 1', "is not valid JSON"), ("[1]", "holds a list"), (DEEP, "deeply")]
)
def test_a_finished_quality_job_that_is_no_json_object_is_refused_naming_the_file(tmp_path, text, says):
    from bench.quality import Work

    (tmp_path / "search-alt-0.json").write_text(text)
    ran = []
    message = refused(lambda: Work(tmp_path).job("search-alt-0", ran.append), "search-alt-0.json", says)
    assert "Remove it to run the job again" in message and not ran


def test_a_work_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    from bench.quality import Work

    (tmp_path / "w").write_text("")
    refused(lambda: Work(tmp_path / "w"), "--work-dir", "is a file, not a directory")


# ---- inputs that are no regular file: a FIFO blocks forever, /dev/zero fills memory ------------------


def fifo_in(tmp_path: Path) -> Path:
    path = tmp_path / "in.fifo"
    os.mkfifo(path)
    return path


def test_a_fifo_as_a_claims_registry_is_refused_not_read(tmp_path):
    from bench.claims import load_claims

    refused(lambda: load_claims(fifo_in(tmp_path)), "claims registry", "must be a regular file, but it is a FIFO")


def test_a_fifo_as_a_journal_is_refused_not_read(tmp_path):
    refused(lambda: check_journal(fifo_in(tmp_path)), "journal file", "is a FIFO")


def test_a_fifo_as_a_saved_record_is_refused_not_read(tmp_path):
    from bench.repeat import render_saved

    fifo = fifo_in(tmp_path)
    refused(lambda: render_saved(fifo, None), "--from", "is a FIFO")
    refused(lambda: read_json_record(fifo, "--config"), "--config", "is a FIFO")


def test_compare_with_a_fifo_as_claims_answers_at_once(tmp_path, blocked_tf):
    fifo_in(tmp_path)
    result = cli(tmp_path, blocked_tf, "bench.compare", "--from", str(COMPARE_RECORD), "--claims", "in.fifo")
    one_line_exit_2(result, "claims registry 'in.fifo' must be a regular file")


# ---- best.json parameters: Python's 64.0 == 64 and True == 1.0 ------------------------------------


@pytest.mark.parametrize(
    "params",
    [{"hidden_dim": 64.0}, {"blocks": 2.0}, {"blocks": True}, {"clip_norm": True}, {"batch_size": 16.0}],
    ids=["float-width", "float-blocks", "bool-blocks", "bool-clip", "float-batch"],
)
def test_a_best_json_value_equal_to_an_option_but_of_another_type_is_refused(tmp_path, params):
    from diffusion.hpo.space import load_best

    path = tmp_path / "best.json"
    path.write_text(json.dumps({"params": params}))
    name = next(iter(params))
    refused(lambda: load_best(path), f"--config {str(path)!r}", f"`{name}` must be one of")


def test_a_best_json_integer_for_a_float_option_is_taken_as_that_float(tmp_path):
    from diffusion.hpo.space import check_params

    assert check_params({"clip_norm": 1, "hidden_dim": 64}) == {"clip_norm": 1.0, "hidden_dim": 64}
    assert isinstance(check_params({"clip_norm": 1})["clip_norm"], float)


def test_train_refuses_a_float_block_count_in_its_config_before_tensorflow(tmp_path, blocked_tf):
    (tmp_path / "best.json").write_text('{"params": {"blocks": 2.0}}')
    result = cli(tmp_path, blocked_tf, "diffusion.train", "--config", "best.json", "--out", "run", "--preset", "tiny")
    one_line_exit_2(result, "`blocks` must be one of 2, 3, 4, 6, but got 2.0")
    assert not (tmp_path / "run").exists()


# ---- memory plans: a repeated job or thousands of them ----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"batches": (32, 64, 32)}, "`batches` must not repeat a value, but got 32"),
        ({"paths": ("neu", "alt", "neu")}, "`paths` must not repeat a value, but got neu"),
        ({"batches": tuple(range(1, 300))}, "at most 200 jobs"),
    ],
    ids=["repeated-batch", "repeated-path", "too-many-jobs"],
)
def test_a_memory_plan_with_a_repeated_or_huge_job_list_is_refused(changes, says):
    from bench.memory import MemoryPlan

    refused(lambda: MemoryPlan.from_specs(preset="tiny", **changes), says)


def test_the_memory_defaults_are_within_the_job_cap():
    from bench.memory import GPU_BATCHES, MemoryPlan

    MemoryPlan.from_specs(preset="tiny", batches=GPU_BATCHES)


# ---- bench.repeat's compare arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--from", "r.json"], "--from"),
        (["--markdown", "results/x.md"], "--markdown"),
        (["--json", "x.json"], "--json"),
    ],
)
def test_repeat_refuses_compare_options_it_owns(args, flag):
    from bench.repeat import check_compare_args

    refused(lambda: check_compare_args(["alt", "neu", *args]), f"must not include {flag}")


def test_repeat_takes_the_readme_main_job_as_it_is_and_a_preset_by_name():
    from bench.repeat import check_compare_args

    check_compare_args(["alt", "neu"])  # no --preset: compare's own default, seed
    check_compare_args(["alt", "neu", "--preset", "tiny"])
    refused(lambda: check_compare_args(["alt", "neu", "--preset", "huge"]), "huge")


def test_repeat_refuses_a_bad_compare_argument_once_before_any_run(tmp_path, blocked_tf):
    result = cli(tmp_path, blocked_tf, "bench.repeat", "--json", "r.json", "--runs", "2", "--", "--rounds", "0")
    one_line_exit_2(result, "--rounds must be at least 1")
    assert not (tmp_path / "r.json").exists()


def test_repeat_refuses_rendering_a_saved_record_as_n_runs(tmp_path, blocked_tf):
    args = ("bench.repeat", "--json", "r.json", "--runs", "2", "--", "--from", str(COMPARE_RECORD))
    one_line_exit_2(cli(tmp_path, blocked_tf, *args), "must not include --from")


# ---- verify: a trigger no selection could reach -------------------------------------------------------


def test_verify_refuses_a_trigger_k_above_the_selected_pmts_before_tensorflow(tmp_path):
    import numpy as np

    from diffusion.checkpoint import Checkpoint, save_checkpoint
    from diffusion.verify import main
    from tests.test_reads import META

    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "checkpoint.npz", Checkpoint([np.zeros(3)], [], META))
    args = ["--checkpoint", str(tmp_path / "run"), "--select", "10", "--trigger-k", "11"]
    refused(lambda: main(args), "--trigger-k must be at most the 10 selected PMTs (--select), but got 11")
    refused(lambda: main([*args[:2], "--trigger-k", "1000000"]), "--trigger-k must be at most the")


# ---- outputs over the checkout itself --------------------------------------------------------------------

ROOT = COMPARE_RECORD.parent.parent


@pytest.mark.parametrize("name", ["pyproject.toml", "bench/gate.py", "README.md", ".git/HEAD", "bench/claims.toml"])
def test_an_output_over_the_checkouts_code_or_configuration_is_refused(name):
    refused(lambda: check_outputs([("--json", ROOT / name)]), "`--json` must not replace this checkout's code")


@pytest.mark.parametrize("name", ["results/new-record.json", "baselines/new.json", "new.py"])
def test_an_output_in_results_baselines_or_a_new_file_passes(name):
    check_outputs([("--json", ROOT / name)])


def test_gate_refuses_to_write_its_record_over_pyproject_it_reads_its_ref_from(tmp_path, blocked_tf):
    import hashlib

    pyproject = ROOT / "pyproject.toml"
    before = hashlib.sha256(pyproject.read_bytes()).hexdigest()
    one_line_exit_2(cli(tmp_path, blocked_tf, "bench.gate", "--json", str(pyproject)), "`--json` must not replace")
    assert hashlib.sha256(pyproject.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    ("text", "says"),
    [("x = " + "[" * 100_000 + "]" * 100_000, "nested too deeply"), ("x = " + HUGE_INT, "4300 digits")],
)
def test_a_claims_registry_nested_too_deeply_or_with_a_5000_digit_number_is_one_line(tmp_path, text, says):
    from bench.claims import load_claims

    path = tmp_path / "claims.toml"
    path.write_text(text + "\n")
    refused(lambda: load_claims(path), "claims registry", "is unreadable", says)


# ---- checkpoints that would fill memory -------------------------------------------------------------


def test_a_checkpoint_whose_array_header_claims_terabytes_is_corrupt_not_a_memory_error(tmp_path):
    import io
    import zipfile

    import numpy as np
    from numpy.lib import format as npy

    from diffusion.checkpoint import load_checkpoint
    from diffusion.errors import CheckpointError

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**13,)})
    path = tmp_path / "checkpoint.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w0000.npy", header.getvalue() + b"\0" * 64)
        for name in ("__meta__", "__digest__"):
            member = io.BytesIO()
            np.save(member, np.array("{}"))
            archive.writestr(f"{name}.npy", member.getvalue())
    with pytest.raises(CheckpointError, match=r"is corrupt \(MemoryError"):
        load_checkpoint(path)


def test_a_checkpoint_that_unpacks_past_the_cap_is_refused_before_unpacking(tmp_path, monkeypatch):
    import numpy as np

    from diffusion import checkpoint
    from diffusion.errors import CheckpointError
    from tests.test_reads import META

    path = tmp_path / "checkpoint.npz"
    checkpoint.save_checkpoint(path, checkpoint.Checkpoint([np.zeros(1000)], [], META))
    monkeypatch.setattr(checkpoint, "MAX_UNPACKED_BYTES", 4096)
    with pytest.raises(CheckpointError, match=r"it unpacks to 0\.0 GiB; ours stay under"):
        checkpoint.load_checkpoint(path)
