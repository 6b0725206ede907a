"""bench.gate in CI: nothing to compare is refused, JUnit XML and Markdown for CI, GitHub
annotations, exit codes and calibrated defaults in --help, a line per round while it measures.

Gate runs here are in-process with fake turn-taking workers (``fake_workers``): the gate's own
git export, probe (TensorFlow blocked), rounds, checks and outputs run for real; only the
training is faked, so these tests are fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

import bench.gate
import bench.gate_options
import bench.trees
from bench.gate import build_parser, gate
from bench.gate_ci import Check, annotation, junit_xml, summary_markdown
from diffusion.errors import ConfigError
from tests.conftest import PYTHON, ROOT, TF_BLOCKED, TINY, python_env
from tests.test_gate import bench as run_module
from tests.test_gate import one_line_exit_2

WHERE = "AMD EPYC, 2 usable cores"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def shallow_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``git clone --depth 1`` (file://, so the depth holds) of a two-commit repository of this
    checkout's files, uncommitted changes included: HEAD has a parent, but not in the clone."""
    origin = tmp_path_factory.mktemp("origin")
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (origin / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, origin / name)
    git(origin, "init", "-q")
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "parent")
    (origin / "NOTE").write_text("a second commit, so HEAD has a parent that the clone leaves out\n")
    git(origin, "add", "NOTE")
    git(origin, "commit", "-qm", "child")
    clone = tmp_path_factory.mktemp("ci") / "clone"
    git(origin, "clone", "-q", "--depth", "1", f"file://{origin}", str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    return clone


def gate_cli_in(clone: Path, blocked_tf: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python -m bench.gate ARGS`` from the clone's own code, TensorFlow blocked."""
    site = blocked_tf["PYTHONPATH"].split(os.pathsep)[0]
    env = python_env(**blocked_tf)
    env["PYTHONPATH"] = os.pathsep.join([site, str(clone)])
    return subprocess.run(
        [PYTHON, "-m", "bench.gate", *args], capture_output=True, text=True, timeout=120, cwd=clone, env=env
    )


# ---- nothing to compare -----------------------------------------------------------------------


def test_head_in_a_depth_1_clone_is_refused_naming_the_shallow_clone_and_the_fix(shallow_clone, blocked_tf):
    # TensorFlow is blocked: the refusal comes before any worker, from git alone.
    result = gate_cli_in(shallow_clone, blocked_tf, "--against", "HEAD")
    one_line_exit_2(result, "REF 'HEAD' resolves to HEAD's commit ")
    for part in (
        "nothing to compare",
        "this is a shallow clone (git clone --depth 1), which has no parent of HEAD",
        "git fetch --deepen=1",
        "--against HEAD~1",
        "--baseline FILE",
        "--aa",
    ):
        assert part in result.stderr, result.stderr


def test_head_parent_in_a_depth_1_clone_is_refused_saying_the_clone_is_shallow(shallow_clone, blocked_tf):
    result = gate_cli_in(shallow_clone, blocked_tf, "--against", "HEAD~1")
    one_line_exit_2(result, "--against 'HEAD~1' must name a commit of this repository")
    assert "this is a shallow clone" in result.stderr and "git fetch --deepen=1" in result.stderr


def test_head_named_in_a_full_clone_is_refused_with_its_own_cause(monkeypatch, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    for n in range(2):
        (repo / "f").write_text(str(n))
        git(repo, "add", "f")
        git(repo, "commit", "-qm", str(n))
    monkeypatch.setattr(bench.trees, "ROOT", repo)
    with pytest.raises(ConfigError, match="nothing to compare, as 'HEAD' is HEAD itself; gate --against HEAD~1"):
        bench.trees.resolve_against("HEAD", aa=False)
    assert bench.trees.resolve_against("HEAD~1", aa=False)[1] == git(repo, "rev-parse", "HEAD~1")
    # Another path on HEAD's code is something to compare (the gate's own --candidate check).
    assert bench.trees.resolve_against("HEAD", aa=False, same_path=False)[0] == "HEAD"
    # So is an uncommitted change: HEAD with it against HEAD.
    (repo / "f").write_text("changed")
    assert bench.trees.resolve_against("HEAD", aa=False)[1] == git(repo, "rev-parse", "HEAD")


def test_a_shallow_branch_clone_without_the_merge_base_says_so(monkeypatch, tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    for name in ("a", "b"):
        (origin / name).write_text(name)
        git(origin, "add", name)
        git(origin, "commit", "-qm", name)
    git(origin, "checkout", "-q", "-b", "feature", "HEAD~1")
    (origin / "c").write_text("c")
    git(origin, "add", "c")
    git(origin, "commit", "-qm", "c")
    clone = tmp_path / "clone"
    git(
        origin,
        "clone",
        "-q",
        "--depth",
        "1",
        "--no-single-branch",
        "--branch",
        "feature",
        f"file://{origin}",
        str(clone),
    )
    monkeypatch.setattr(bench.trees, "ROOT", clone)
    with pytest.raises(ConfigError, match="HEAD and origin/main have no merge base here .*shallow clone.*--unshallow"):
        bench.trees.resolve_against(None, aa=False)


def test_the_default_ref_that_is_head_says_it_was_the_default():
    message = bench.trees.nothing_to_compare("0123abc", "0123abc" + "0" * 33, default=True, shallow=False)
    assert "the default REF (gate-against in pyproject, else the merge base with main) is HEAD itself" in message


def test_aa_against_another_commit_is_refused(monkeypatch, shallow_clone, tmp_path):
    repo = tmp_path / "repo"
    git(shallow_clone, "clone", "-q", f"file://{shallow_clone}", str(repo))
    (repo / "NOTE").write_text("newer\n")
    git(repo, "commit", "-qam", "newer")
    monkeypatch.setattr(bench.trees, "ROOT", repo)
    with pytest.raises(
        ConfigError, match="--aa runs HEAD against its own commit .* but REF 'HEAD~1' is .*leave out --aa"
    ):
        bench.trees.resolve_against("HEAD~1", aa=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--aa", "--baseline", "b.json"], "--aa applies to the A/B gate"),
        (["--baseline", "b.json", "--write-baseline", "--junit", "g.xml"], "--write-baseline measures no check"),
    ],
)
def test_options_that_do_not_fit_are_one_line_exit_2_before_tensorflow(blocked_tf, tmp_path, args, message):
    one_line_exit_2(run_module("bench.gate", *args, **blocked_tf), message)


# ---- a gate run with fake workers ----------------------------------------------------------------


class Fake:
    """A turn-taking worker that answers at once; its record's training speed and validation
    time are ``speed`` times those of REF (a head tree that is ``speed`` as fast)."""

    def __init__(self, speed: float, jitter: float) -> None:
        self.speed, self.jitter = speed, jitter

    def ask(self, request):
        turn = "ready" if request is None else request["turn"]
        if turn == "finish":
            speed = self.speed * self.jitter
            phases = {"train": {"train_samples_per_s": 1000.0 * speed}, "validate": {"val_pass_s": 0.05 / speed}}
            return {"record": {"phases": phases}}
        return {"steps": 5, "seconds": 0.05} if turn == "train" else {}

    def freeze(self):
        pass

    def thaw(self):
        pass

    def close(self):
        pass


def fake_workers(head_speed: float = 1.0):
    """A starter of ``Fake`` workers: the head tree's at ``head_speed`` times 1, 1.01 and 0.99 in
    turn, so that the interval has a width."""
    heads = []

    def start(job, root):
        if Path(root) != bench.trees.ROOT:
            return Fake(1.0, 1.0)
        heads.append(root)
        return Fake(head_speed, (1.0, 1.01, 0.99)[(len(heads) - 1) % 3])

    return start


@pytest.fixture
def in_clone(shallow_clone, monkeypatch, blocked_tf):
    """The gate's git runs in the shallow clone, as if it were this checkout; the probe of REF's
    exported tree is a real process, with TensorFlow blocked; no record of the real results/ is touched."""
    monkeypatch.setattr(bench.trees, "ROOT", shallow_clone)
    monkeypatch.setenv("PYTHONPATH", blocked_tf["PYTHONPATH"])
    monkeypatch.setenv(TF_BLOCKED, "1")
    for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    return shallow_clone


def run_gate(*argv: str, head_speed: float = 1.0) -> int:
    # A fixed tolerance, so these tests do not move with the calibration in force (a later one wins).
    args = build_parser().parse_args(
        ["--preset", "tiny", "--rounds", "3", "--tolerance", "0.1", "--train-seconds", "0.1", *argv]
    )
    return gate(args, start=fake_workers(head_speed))


def test_aa_in_a_depth_1_clone_runs_head_against_itself(in_clone, tmp_path, capsys):
    with pytest.raises(ConfigError, match="shallow clone"):
        run_gate("--against", "HEAD")
    out = tmp_path / "gate.json"
    assert run_gate("--against", "HEAD", "--aa", "--json", str(out)) == 0
    stdout = capsys.readouterr().out
    assert "an A/A check on purpose (--aa)" in stdout and stdout.count("ok ") == 2
    record = json.loads(out.read_text())
    assert record["aa"] is True and record["ref"]["commit"] == git(in_clone, "rev-parse", "HEAD")
    assert [r["round"] for r in record["records"]] == [0, 0, 1, 1, 2, 2]


def test_another_candidate_path_against_head_is_something_to_compare(in_clone, capsys):
    assert run_gate("--against", "HEAD", "--candidate", "neu:train_compile=eager") == 0  # the fakes train alike
    assert "HEAD " in capsys.readouterr().out
    with pytest.raises(ConfigError, match="nothing to compare"):
        run_gate("--against", "HEAD", "--candidate", "neu")  # the same knobs as --path


@pytest.mark.slow
def test_aa_in_a_depth_1_clone_measures_for_real(shallow_clone, tmp_path):
    junit = tmp_path / "gate.xml"
    env = python_env()
    env["PYTHONPATH"] = str(shallow_clone)
    result = subprocess.run(
        [PYTHON, "-m", "bench.gate", "--aa", "--preset", "tiny", "--rounds", "2", "--train-seconds", "0.2",
         "--junit", str(junit)],
        capture_output=True, text=True, timeout=600, cwd=shallow_clone, env=env,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stdout + result.stderr  # measured, whatever 2 rounds say
    assert "an A/A check on purpose (--aa)" in result.stdout and "[2/2] gate round 2" in result.stderr
    xml = JUnitXml.fromfile(str(junit))
    assert (xml.tests, xml.errors) == (2, 0), result.stdout + result.stderr  # both checks measured


def test_aa_alone_means_against_head(in_clone, capsys):
    assert run_gate("--aa") == 0
    assert "against REF HEAD = " in capsys.readouterr().out


def test_a_line_per_finished_round_when_stderr_is_not_a_terminal(in_clone, capsys):
    run_gate("--aa")
    lines = [x for x in capsys.readouterr().err.splitlines() if " gate round " in x]
    assert [x.split(" in ")[0] for x in lines] == ["[1/3] gate round 1", "[2/3] gate round 2", "[3/3] gate round 3"]
    assert [x.split(": ", 1)[1] for x in lines] == [
        f"HEAD/REF train_samples_per_s {r}x, val_pass_s {r}x" for r in ("1", "1.01", "0.99")
    ]


def test_a_regression_fails_its_junit_case_with_the_interval(in_clone, tmp_path, capsys):
    junit, summary = tmp_path / "gate.xml", tmp_path / "gate.md"
    code = run_gate("--aa", "--junit", str(junit), "--summary", str(summary), head_speed=0.8)
    assert code == 1
    xml = JUnitXml.fromfile(str(junit))
    assert (xml.tests, xml.failures, xml.errors) == (2, 2, 0)
    cases = {case.name: case for suite in xml for case in suite}
    assert set(cases) == {"train_samples_per_s HEAD/REF", "val_pass_s HEAD/REF"}
    for case in cases.values():
        (failure,) = case.result
        assert isinstance(failure, Failure) and failure.message.startswith("REGRESSION ")
        assert "0.8x [0.78" in failure.message and "floor 0.9x" in failure.message, failure.message
    md = summary.read_text()
    assert md.startswith("### Regression gate FIRED\n")
    assert "| `train_samples_per_s` | HEAD/REF | 0.8x | [0.78" in md and "| **REGRESSION** |" in md


def test_github_actions_gets_an_annotation_per_check(in_clone, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    run_gate("--aa", head_speed=0.8)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("::")]
    assert [x.split("::")[1] for x in lines] == [
        "error title=bench.gate train_samples_per_s",
        "error title=bench.gate val_pass_s",
    ]
    assert lines[0].split("::", 2)[2].startswith("REGRESSION train_samples_per_s: HEAD/REF 0.8x [")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    run_gate("--aa")
    assert [x.split("::")[1] for x in capsys.readouterr().out.splitlines() if x.startswith("::")] == [
        "notice title=bench.gate train_samples_per_s",
        "notice title=bench.gate val_pass_s",
    ]


def test_a_refusal_under_github_actions_is_an_error_annotation_too(in_clone, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    with pytest.raises(ConfigError):
        bench.gate.main(["--against", "HEAD"])
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("::error title=bench.gate refused::REF 'HEAD' resolves to HEAD's commit ")


def test_the_step_summary_is_appended_to_when_no_summary_file_is_named(in_clone, monkeypatch, tmp_path):
    steps = tmp_path / "step_summary.md"
    steps.write_text("an earlier step's summary\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(steps))
    run_gate("--aa")
    text = steps.read_text()
    assert text.startswith("an earlier step's summary\n### Regression gate passed\n")
    named = tmp_path / "gate.md"
    run_gate("--aa", "--summary", str(named))
    assert steps.read_text() == text and named.read_text().startswith("### Regression gate passed\n")


# ---- the renderers, on checks made by hand -----------------------------------------------------


def checks() -> list[Check]:
    def measured(estimate: float, low: float, high: float) -> dict[str, float]:
        return {"estimate": estimate, "low": low, "high": high, "n": 5}

    return [
        Check(
            "train_samples_per_s",
            "HEAD/REF",
            1.0,
            0.1,
            measured(0.99, 0.95, 1.03),
            "REF a 1000, HEAD b 990",
            WHERE,
            0.062,
        ),
        Check("val_pass_s", "HEAD/REF", 1.0, 0.1, measured(0.8, 0.75, 0.85), "REF a 0.05 | x, HEAD b 0.0625", WHERE),
        Check("val_pass_s", "neu/alt", 20.0, 0.15, None, "alt -, neu -; 2 worker failure(s): killed", WHERE),
    ]


def test_junit_has_a_case_per_check_a_failure_per_regression_and_an_error_per_unmeasured(tmp_path):
    path = tmp_path / "gate.xml"
    path.write_text(junit_xml(checks(), subject="HEAD b against REF main a", seconds=93.5))
    xml = JUnitXml.fromfile(str(path))
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.time) == (3, 1, 1, 93.5)
    assert suite.name == "bench.gate: HEAD b against REF main a"
    passed, regressed, unmeasured = list(suite)
    assert passed.is_passed and passed.classname == "bench.gate" and passed.system_out.startswith("ok ")
    assert isinstance(regressed.result[0], Failure)
    assert regressed.result[0].message == checks()[1].message and "[0.75, 0.85]" in regressed.result[0].message
    assert isinstance(unmeasured.result[0], Error) and unmeasured.result[0].message.startswith("NOT MEASURED")


def test_the_summary_is_a_markdown_table_with_a_row_per_check():
    md = summary_markdown(checks(), subject="HEAD b against REF main a", setup="tiny, 5 rounds", seconds=93.5)
    lines = md.splitlines()
    assert lines[0] == "### Regression gate FIRED"
    assert lines[2] == f"HEAD b against REF main a: tiny, 5 rounds, 94 s on {WHERE}."
    table = [x for x in lines if x.startswith("|")]
    assert len(table) == 2 + 3 and all(x.count(" | ") == 7 for x in table[2:]), table
    assert table[2] == "| `train_samples_per_s` | HEAD/REF | 0.99x | [0.95, 1.03] | 5 | 0.9x | 6.2% | ok |"
    assert table[3] == "| `val_pass_s` | HEAD/REF | 0.8x | [0.75, 0.85] | 5 | 0.9x | - | **REGRESSION** |"
    assert table[4] == "| `val_pass_s` | neu/alt | - | - | 0 | 17x | - | NOT MEASURED |"
    assert "REF a 0.05 \\| x" in md  # a '|' in a value does not split its line's cells


def test_an_annotation_escapes_what_github_would_read_as_syntax():
    line = annotation("error", "gate: a, b", "100% lost\nsee: log")
    assert line == "::error title=gate%3A a%2C b::100%25 lost%0Asee: log"


# ---- --help -----------------------------------------------------------------------------------


def test_help_states_the_exit_codes():
    text = build_parser().format_help()
    for part in ("exit status:", "0  every check passed", "1  a regression", "2  bad input or refused"):
        assert part in text, text


def test_help_defaults_are_the_calibration_in_force(monkeypatch, tmp_path):
    monkeypatch.setattr(bench.gate_options, "RESULTS", tmp_path)
    record = {"meets_target": True, "tolerance": 0.07, "rounds": 9, "cpus": 1, "pairing": "processes"}
    (tmp_path / "gate-calibration-tiny-here.json").write_text(json.dumps(record))
    text = " ".join(build_parser().format_help().split())
    for part in (
        "interleaved rounds (default at tiny: 9)",
        "(default at tiny: 0.07, i.e. 7%)",
        "match (default at tiny: 1)",
        "(default at tiny: processes)",
        "at tiny: gate-calibration-tiny-here.json.",
    ):
        assert part in text, text
    (tmp_path / "gate-calibration-tiny-here.json").unlink()
    text = " ".join(build_parser().format_help().split())
    assert "interleaved rounds (default at tiny: 5)" in text and "provisional (no full calibration committed)" in text


def test_help_comes_from_the_cli_before_tensorflow(blocked_tf):
    result = run_module("bench.gate", "--help", **blocked_tf)
    assert result.returncode == 0 and "exit status:" in result.stdout, result.stderr


# ---- outputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--json", "out", "--junit", "out"], {}, "`--junit` must not be the file of `--json`"),
        (["--json", "out", "--summary", "out"], {}, "`--summary` must not be the file of `--json`"),
        (["--json", "out"], {"GITHUB_STEP_SUMMARY": "out"}, "`$GITHUB_STEP_SUMMARY` must not be the file of `--json`"),
        (["--baseline", "out", "--junit", "out"], {}, "`--junit` must not be the file of `--baseline`"),
    ],
)
def test_an_output_that_is_an_input_or_another_output_is_refused(monkeypatch, tmp_path, argv, env, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message.replace("$", r"\$")):
        bench.gate_options.check_paths(build_parser().parse_args(argv))


def test_a_junit_file_in_a_missing_directory_is_one_line_exit_2_and_nothing_runs(blocked_tf, tmp_path):
    result = run_module("bench.gate", "--aa", "--junit", str(tmp_path / "no" / "gate.xml"), **blocked_tf)
    one_line_exit_2(result, "--junit")
    assert "does not exist" in result.stderr


def test_whole_processes_get_a_line_per_round_too(capsys):
    from bench.roles import CodeTree, Role
    from bench.runner import Plan
    from diffusion.paths import parse_path

    def run_job(job, root):  # REF takes 0.05 s a validation pass, HEAD 0.1: half as fast
        slow = 2.0 if str(root) == "/head" else 1.0
        return {"phases": {"train": {"train_samples_per_s": 1000.0 / slow}, "validate": {"val_pass_s": 0.05 * slow}}}

    roles = (
        Role("ref", parse_path("neu"), ("validate", "train"), tree=CodeTree(Path("/ref"), "REF x", "abc")),
        Role(
            "head", parse_path("neu"), ("validate", "train"), reference="ref", tree=CodeTree(Path("/head"), "HEAD", "d")
        ),
    )
    records = bench.gate.measure(Plan(roles, TINY, 2), ("ref", "head"), "HEAD/REF", runner=run_job)
    assert len(records) == 4
    lines = [x for x in capsys.readouterr().err.splitlines() if " gate round " in x]
    assert [x.split(" in ")[0] for x in lines] == ["[1/2] gate round 1", "[2/2] gate round 2"]
    assert all(x.endswith(": HEAD/REF train_samples_per_s 0.5x, val_pass_s 0.5x") for x in lines), lines


def test_a_bar_instead_of_lines_on_a_terminal(in_clone, monkeypatch, capsys):
    import sys

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then takes stderr for a terminal
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    run_gate("--aa")
    err = capsys.readouterr().err
    assert "[1/3] gate round 1" not in err
    assert "3/3" in err and "round 3: HEAD/REF train_samples_per_s 0.99x" in err, err


def test_the_order_of_turns_is_drawn_afresh_for_every_run_recorded_and_replayable(in_clone, tmp_path, capsys):
    seeds = []
    for i in range(2):
        out = tmp_path / f"gate{i}.json"
        run_gate("--aa", "--json", str(out))
        record = json.loads(out.read_text())
        assert record["plan"]["seed"] == record["seed"]
        assert f"order of turns from seed {record['seed']} (--seed {record['seed']} replays it)" in (
            capsys.readouterr().out
        )
        seeds.append(record["seed"])
    assert seeds[0] != seeds[1]  # 1 in 2**32 to collide
    out = tmp_path / "replay.json"
    run_gate("--aa", "--seed", str(seeds[0]), "--json", str(out))
    assert json.loads(out.read_text())["seed"] == seeds[0]


def test_every_check_says_what_loss_its_run_could_have_caught(in_clone, tmp_path, capsys):
    from bench.stats import detectable_loss

    out = tmp_path / "gate.json"
    run_gate("--aa", "--tolerance", "0.04", "--json", str(out))
    stdout = capsys.readouterr().out
    record = json.loads(out.read_text())
    # The fakes train at 1, 1.01 and 0.99 of REF in turn: the spread of those three logs.
    spread = float(__import__("numpy").std(__import__("numpy").log([1.0, 1.01, 0.99]), ddof=1))
    for check in record["checks"]:
        assert check["detectable_loss"] == pytest.approx(detectable_loss(spread, 3, 0.96), rel=1e-6)
    expected = f"would catch a loss of {record['checks'][0]['detectable_loss']:.1%} or more in 90% of runs"
    assert stdout.count(expected) == 2, stdout
