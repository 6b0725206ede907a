"""Frozen turns: while one role takes its turn, nothing of the others runs.

A worker whose background thread keeps producing while it is idle (a prefetching loader)
would bank work between its turns and read faster in turns than alone. These tests start
real worker processes that speak the turn protocol (bench/worker.py's) around such a thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.measure import Job
from bench.roles import CodeTree, Role
from bench.turns import TurnWorker, run_turns, turn_round
from diffusion.paths import NEU, parse_path
from tests.conftest import TINY

# A producer thread makes an item in ten 1-ms sleeps (~90 items/s) whether or not the main
# thread consumes; a train turn consumes items (2 ms each) until its time is up. Alone, the
# rate is the producer's. Sleeps, not CPU, so the rates do not depend on the machine's speed.
BANKING_WORKER = """
import json, queue, sys, threading, time

items = queue.Queue()

def produce():
    while True:
        for _ in range(10):
            time.sleep(0.001)
        items.put(1)

threading.Thread(target=produce, daemon=True).start()
print(json.dumps({"ready": True, "protocol": 1}), flush=True)
steps, seconds = 0, 0.0
for line in sys.stdin:
    request = json.loads(line)
    if request["turn"] == "train":
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < request["seconds"]:
            items.get()
            time.sleep(0.002)
            n += 1
        took = time.perf_counter() - t0
        steps, seconds = steps + n, seconds + took
        print(json.dumps({"steps": n, "seconds": took}), flush=True)
    elif request["turn"] == "finish":
        print(json.dumps({"record": {"rate": steps / seconds}}), flush=True)
        break
    else:  # warm: nothing to trace here
        print(json.dumps({}), flush=True)
"""


@pytest.fixture(scope="module")
def banking_tree(tmp_path_factory: pytest.TempPathFactory) -> CodeTree:
    root = tmp_path_factory.mktemp("banking")
    (root / "bench").mkdir()
    (root / "bench" / "__init__.py").write_text("")
    (root / "bench" / "worker.py").write_text(BANKING_WORKER)
    return CodeTree(root, "banking worker", None)


def rates(tree: CodeTree, roles: int, *, freeze: bool) -> list[float]:
    """Each role's items per second over its turns, with ``roles`` banking workers taking turns."""
    plan = [Role(f"r{i}", parse_path("neu"), ("train",), tree=tree) for i in range(roles)]
    records = run_turns(
        plan,
        TINY,
        1,
        0.1,
        job_options={"train_seconds": 1.5, "min_steps": 1, "val_passes": 0},
        start=TurnWorker,
        freeze=freeze,
    )
    return [rec["rate"] for rec in records]


@pytest.mark.slow
def test_a_frozen_role_banks_nothing_between_turns_and_plain_turns_would_show_the_gain(banking_tree):
    (solo,) = rates(banking_tree, 1, freeze=True)
    plain = rates(banking_tree, 3, freeze=False)
    frozen = rates(banking_tree, 3, freeze=True)
    # Plain turns: two thirds of the time idle, the producer fills the queue, and a turn drains
    # it at the consumer's speed: up to 3x the solo rate. Frozen: the solo rate, less the
    # items one interrupted sleep lets through on thawing.
    print(f"solo {solo:.1f}/s, plain {plain}, frozen {frozen}")
    assert min(plain) > 1.6 * solo, (solo, plain)
    assert all(abs(rate / solo - 1) < 0.15 for rate in frozen), (solo, frozen)


class Recorder:
    """A fake worker that logs every call, to check who runs when."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log

    def ask(self, request):
        turn = "ready" if request is None else request["turn"]
        self.log.append((self.name, turn))
        return {"finish": {"record": {}}, "train": {"steps": 5, "seconds": 0.05}}.get(turn, {})

    def freeze(self) -> None:
        self.log.append((self.name, "freeze"))

    def thaw(self) -> None:
        self.log.append((self.name, "thaw"))

    def close(self) -> None:
        pass


def test_in_frozen_turns_only_the_worker_taking_its_turn_is_thawed():
    log: list[tuple[str, str]] = []
    roles = [Role(n, parse_path("neu"), ("validate", "train")) for n in ("a", "b", "c")]
    jobs = {r.name: Job(NEU, TINY, train_seconds=0.1, min_steps=1, val_passes=2) for r in roles}
    started = iter("abc")  # the workers start in the order given
    turn_round(roles, jobs, 0.05, np.random.default_rng(0), lambda job, root: Recorder(next(started), log), freeze=True)
    running: set[str] = set()
    for name, event in log:
        if event == "freeze":
            running.discard(name)
        elif event == "thaw":
            running.add(name)
        elif event == "ready":  # set-up runs side by side, until each is frozen
            continue
        else:
            assert running == {name}, (name, event, running)
            if event == "finish":  # a worker exits once it has sent its record
                running.discard(name)
    # Set-up side by side, each frozen once ready; then each warms up alone, before any turn.
    assert log[:6] == [(n, e) for n in "abc" for e in ("ready", "freeze")]
    assert log[6:15] == [(n, e) for n in "abc" for e in ("thaw", "warm", "freeze")]


@pytest.mark.slow
def test_a_frozen_worker_is_stopped_and_a_closed_one_leaves_no_process(banking_tree):
    worker = TurnWorker(Job(NEU, TINY, phases=("train",)), banking_tree.root, timeout=30)
    assert worker.ask(None)["ready"] is True
    worker.freeze()
    for _ in range(200):  # a signal is delivered asynchronously: wait (up to 10 s) until it lands
        state = Path(f"/proc/{worker.proc.pid}/stat").read_text().split()[2]
        if state == "T":
            break
        time.sleep(0.05)
    assert state == "T", state  # stopped
    worker.thaw()
    assert worker.ask({"turn": "train", "seconds": 0.05})["steps"] > 0
    worker.freeze()
    worker.close()  # SIGKILL reaches a stopped group too
    assert worker.proc.returncode == -signal.SIGKILL


# The process that starts a worker, then dies of SIGKILL (no cleanup of its own runs) while the
# worker is frozen: as when a run of the main job is killed.
ORPHANING_PARENT = """
import os, signal, sys
from pathlib import Path
import bench.turns
from bench.measure import Job
from diffusion.paths import NEU
from diffusion.presets import get_preset

if sys.argv[2] == "without":
    bench.turns.DIE_WITH_PARENT = None  # the workers as they were before
worker = bench.turns.TurnWorker(Job(NEU, get_preset("tiny"), phases=("train",)), Path(sys.argv[1]), timeout=30)
print(worker.proc.pid, flush=True)  # first: a parent that fails below still names its worker
assert worker.ask(None)["ready"] is True
worker.freeze()
print("frozen", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc ("T" stopped), or "gone" (a reaped or zombie process)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"
    return "gone" if state in ("Z", "X") else state


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from Linux's /proc")
@pytest.mark.parametrize("kind", ["with", "without"])
def test_a_frozen_worker_dies_with_the_process_that_started_it_and_without_the_signal_would_stay(banking_tree, kind):
    import bench.turns
    from tests.conftest import ROOT

    if kind == "with" and bench.turns.DIE_WITH_PARENT is None:
        pytest.fail("bench.turns found no prctl on Linux")
    parent = subprocess.run(
        [sys.executable, "-c", ORPHANING_PARENT, str(banking_tree.root), kind],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    pid = int(parent.stdout.split()[0])
    try:
        assert parent.returncode == -signal.SIGKILL and "frozen" in parent.stdout, parent.stderr
        # Up to 5 s for the kernel's signal and init's reaping; the control needs only a moment
        # to show that nothing comes.
        for _ in range(100 if kind == "with" else 10):
            if process_state(pid) == "gone":
                break
            time.sleep(0.05)
        assert process_state(pid) == ("gone" if kind == "with" else "T")
    finally:
        if process_state(pid) != "gone":
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:  # it went in between
                pass


class Slow(Recorder):
    """A recorder whose train turns take 4x as long for worker ``a``."""

    def ask(self, request):
        answer = super().ask(request)
        if request is not None and request["turn"] == "train" and self.name == "a":
            return {"steps": 1, "seconds": 0.2}
        return answer

    def send(self, request) -> None:
        self.log.append((self.name, "sent " + request["turn"]))


def test_frozen_a_worker_that_has_trained_enough_sits_out_and_warm_ups_may_run_side_by_side():
    log: list[tuple[str, str]] = []
    roles = [Role(n, parse_path("neu"), ("train",)) for n in ("a", "b")]
    jobs = {r.name: Job(NEU, TINY, phases=("train",), train_seconds=0.38, min_steps=1) for r in roles}
    started = iter("ab")
    turn_round(roles, jobs, 0.05, np.random.default_rng(0), lambda job, root: Slow(next(started), log),
               freeze=True, warm_together=True)  # fmt: skip
    turns = {name: sum(1 for n, e in log if n == name and e == "train") for name in "ab"}
    assert turns == {"a": 2, "b": 8}  # a: 2 x 0.2 s; b: 8 x 0.05 s; a sat out b's last six
    warm = [(n, e) for n, e in log if "warm" in e]
    assert warm == [("a", "sent warm"), ("b", "sent warm")]  # both sent before either answer is read


class Timed(Recorder):
    """A recorder whose answers take as long as their stage is meant to, to be timed."""

    WAITS = {"ready": 0.06, "warm": 0.04, "validate": 0.03, "train": 0.0, "finish": 0.02}

    def ask(self, request):
        turn = "ready" if request is None else request["turn"]
        time.sleep(self.WAITS[turn])
        return super().ask(request)


def test_every_record_of_a_round_says_where_its_wall_time_went():
    from bench.report import stages_line

    log: list[tuple[str, str]] = []
    roles = [Role(n, parse_path("neu"), ("validate", "train")) for n in ("a", "b")]
    jobs = {r.name: Job(NEU, TINY, train_seconds=0.1, min_steps=1, val_passes=1) for r in roles}
    started = iter("ab")
    began = time.perf_counter()
    out = turn_round(
        roles, jobs, 0.05, np.random.default_rng(0), lambda job, root: Timed(next(started), log), freeze=True
    )
    wall = time.perf_counter() - began
    stages = out["a"]["stages_s"]
    assert out["b"]["stages_s"] == stages and list(stages) == ["setup", "warm", "validate", "train", "finish"]
    # Two workers per stage: at least twice each answer's wait; the stages add up to the round.
    for stage, wait in Timed.WAITS.items():
        assert stages["setup" if stage == "ready" else stage] >= 2 * wait - 1e-3, (stage, stages)
    assert sum(stages.values()) == pytest.approx(wall, abs=0.05)
    records = [{**rec, "round": r} for r in (0, 1) for rec in out.values()]
    line = stages_line({"records": records})
    assert line is not None and line.startswith("A round of turns took") and "(median of 2)" in line
    assert "set-up 0 s" in line and "training" in line
    assert stages_line({"records": [{"round": 0, "phases": {}}]}) is None  # records from before stages_s


class Batches(Recorder):
    """A recorder whose validation pass takes ``turns`` validate turns of a few batches each."""

    TURNS = {"a": 3, "b": 1}

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        super().__init__(name, log)
        self.asked = 0

    def ask(self, request):
        answer = super().ask(request)
        if request is not None and request["turn"] == "validate":
            assert request["seconds"] == 0.05
            self.asked += 1
            return {"batches": 2, "seconds": 0.05, "passes": self.asked // self.TURNS[self.name]}
        return answer


def test_frozen_a_pass_spread_over_turns_alternates_until_each_role_has_its_passes():
    log: list[tuple[str, str]] = []
    roles = [Role(n, parse_path("neu"), ("validate",)) for n in "ab"]
    jobs = {r.name: Job(NEU, TINY, phases=("validate",), val_passes=1) for r in roles}
    started = iter("ab")
    turn_round(roles, jobs, 0.05, np.random.default_rng(0), lambda job, root: Batches(next(started), log),
               freeze=True, val_turn_seconds=0.05)  # fmt: skip
    turns = [n for n, e in log if e == "validate"]
    assert sorted(turns) == ["a", "a", "a", "b"]  # b's pass was done after one turn: it sat out a's last two
    assert turns[-2:] == ["a", "a"] and "b" in turns[:2]  # both took a turn before either's second


def test_a_pass_spread_over_turns_is_the_whole_pass_batch_for_batch():
    """In-process, at tiny: the turns' pieces of a pass are the batches of a whole pass, and the
    untimed first call is ``val_warm_batches`` batches, timed as a first call, not as a pass."""
    from bench.measure import TurnTaker
    from diffusion.paths import ALT

    with pytest.raises(ValueError, match="val_warm_batches must be in 1..50"):
        Job(ALT, TINY, val_warm_batches=51)
    taker = TurnTaker(Job(ALT, TINY, phases=("validate",), val_passes=1, val_warm_batches=2))
    try:
        assert taker.warm_up()["first_val_call_s"] > 0 and taker.first_pass.batches == 2
        answers = []
        while not answers or answers[-1]["passes"] < 1:
            answers.append(taker.validate(1e-9))  # one batch a turn: a turn overruns by one batch at most
        assert [a["batches"] for a in answers] == [1] * ALT.val_batches
        whole = taker.trainer.validate()
        np.testing.assert_allclose(taker.passes[0].batch_losses, whole.batch_losses, rtol=1e-6)
        validate = taker.record(close=False)["phases"]["validate"]
    finally:
        taker.trainer.close()
    assert "first_val_pass_s" not in validate and validate["first_val_call_s"] > 0
    assert validate["val_batches"] == ALT.val_batches and validate["val_pass_s"] == pytest.approx(
        taker.passes[0].seconds
    )
