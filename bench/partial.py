"""Cut runs keep their work: each finished job is appended to a partial record beside the output.

``OUT.json`` gets ``OUT.partial.jsonl`` (``OUT.speed.partial.jsonl`` for one part of a run
that has several): the first line is the run's identity (the digest of the code that makes
the records, the plan, the machine's fingerprint), then one line per finished job, flushed
and fsynced as the job finishes, so a SIGKILL loses at most the job in flight. The same
command with ``--resume`` reads it back, refuses it if the identity differs (naming what
differs), reuses the finished jobs and measures the rest; once the final output is written
(atomically), the partial record is removed. Without ``--resume`` an existing partial record is
refused, so that nothing is silently lost or mixed.

    partial = Partial.beside(args.json, run_identity(plan.record()), resume=args.resume, part="speed")
    records = run_plan(plan, done=partial.done(), on_job=partial.on_job(progress))
    write_json_atomic(args.json, result)
    partial.finish()
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffusion.errors import ConfigError
from diffusion.files import json_line, whole_json_lines, write_text_atomic
from diffusion.shapes import Shape, check

if TYPE_CHECKING:
    from bench.roles import OnJob

SCHEMA = "pmt-bench/partial/1"
ROOT = Path(__file__).resolve().parent.parent
# The code a worker runs to make a record: the system under test and the measuring core.
# A suite adds its own module (and whatever judges its records, for calibrate the gate).
MEASURING_CODE = (
    "diffusion",
    "bench/measure.py",
    "bench/probes.py",
    "bench/worker.py",
    "bench/footprint.py",
    "bench/roles.py",
    "bench/runner.py",
    "bench/turns.py",
)

Key = Hashable  # a JSON value with lists as tuples: (round, role name), (spec, batch), ...


def code_digest(parts: Iterable[str], *, salt: str = "", root: Path = ROOT) -> str:
    """The digest of the code that makes a run's records: every ``.py`` below each folder of
    ``parts`` and each file of it, by relative path and bytes.

    The quality suite's ``code_digest`` is this with ``("diffusion", "bench/quality.py",
    "bench/hpo.py")`` and its schema as ``salt`` (the same hex digits; a test holds them equal).
    """
    files: list[Path] = []
    for part in parts:
        path = root / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    h = hashlib.sha256(salt.encode())
    for path in sorted(files):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class Identity:
    """What a partial record's jobs were measured with; another identity's jobs are not reused.

    Attributes:
        code: ``code_digest`` of the code that makes the records.
        plan: the plan's JSON record (everything that decides which jobs run and how).
        machine: ``bench.baseline.fingerprint()``: CPU, cores, backend, versions, thread settings.
    """

    code: str
    plan: Mapping[str, Any]
    machine: Mapping[str, Any]

    def record(self) -> dict[str, Any]:
        """The JSON form, as the header line holds it (tuples become lists)."""
        return json.loads(json_line({"code": self.code, "plan": self.plan, "machine": self.machine}))


def run_identity(plan: Mapping[str, Any], *own_code: str) -> Identity:
    """This checkout's and this machine's identity for ``plan``; ``own_code``: the suite's modules
    beyond ``MEASURING_CODE`` (e.g. ``"bench/memory.py"``)."""
    from bench.baseline import fingerprint

    return Identity(code_digest((*MEASURING_CODE, *own_code)), plan, fingerprint())


def partial_path(output: Path, part: str = "") -> Path:
    """``R.json`` -> ``R.partial.jsonl``; with ``part`` ``speed``: ``R.speed.partial.jsonl``."""
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(f"{stem}{'.' + part if part else ''}.partial.jsonl")


def differences(stored: Any, here: Any, where: str = "") -> list[str]:
    """Each difference of two JSON values as "where: stored -> here", objects by key."""
    if isinstance(stored, dict) and isinstance(here, dict):
        return [
            diff
            for key in sorted(set(stored) | set(here))
            for diff in differences(stored.get(key), here.get(key), f"{where}.{key}" if where else str(key))
        ]
    return [] if stored == here else [f"{where}: {stored!r} -> {here!r}"]


def _is_key(value: Any) -> bool:
    """Whether ``value`` is a job key as ``append`` writes it: a string, number or null, or a list of
    keys (an object in a hand-edited line would be unhashable, and a traceback, on reuse)."""
    if isinstance(value, list):
        return all(_is_key(v) for v in value)
    return value is None or isinstance(value, (str, int, float))


def _key(value: Any) -> Key:
    return tuple(_key(v) for v in value) if isinstance(value, list) else value


class Partial:
    """A partial record being written: the jobs it already holds, and an append for each new one.

    Open one with ``Partial.open`` (a given path) or ``Partial.beside`` (beside a CLI's output,
    or nothing kept when there is no output).
    """

    def __init__(self, path: Path | None, done: dict[Key, dict[str, Any]], note: str | None = None) -> None:
        self.path = path
        self.note = note
        self._done = done
        self._file = path.open("a") if path is not None else None

    @classmethod
    def open(
        cls, path: Path, identity: Identity, *, resume: bool, what: str = "partial record", shape: Shape | None = None
    ) -> Partial:
        """Start the partial record at ``path``, or (``resume``) continue the one there.

        A torn last line (a kill mid-append) is dropped and said so in ``note``; the file is
        cut back to its whole lines before anything is appended. With ``shape``, every finished
        job's record (one without ``error``) must have it (``diffusion.shapes``): a
        hand-edited line is refused here, naming its field, not in the analysis after the run.

        Raises:
            ConfigError: one exists but ``resume`` is false; it belongs to another identity
                (the message names each difference: code digest, plan, machine); a line before
                the last is not a job, the header is not one, or a record has not ``shape``.
        """
        here = identity.record()
        header = json_line({"schema": SCHEMA, "identity": here})
        lines, note = _read(path, what) if path.exists() else ([], None)
        if note and not lines:  # the header is written whole (atomically): this is no partial record
            raise ConfigError(
                f"{what} {str(path)!r} is not a partial record (line 1 is not JSON); remove it or choose another --json."
            )
        if lines and not resume:
            raise ConfigError(
                f"{what} {str(path)!r} holds the finished jobs of a cut run: add --resume to continue it, "
                "or remove the file to start afresh."
            )
        if not lines:
            note = f"no {what} at {str(path)!r}: starting afresh." if resume else None
            write_text_atomic(path, header + "\n")
            return cls(path, {}, note)
        stored = json.loads(lines[0])
        if (
            not isinstance(stored, dict)
            or stored.get("schema") != SCHEMA
            or not isinstance(stored.get("identity"), dict)
        ):
            raise ConfigError(f"{what} {str(path)!r} line 1 must be a {SCHEMA} header, but got {lines[0][:120]!r}.")
        was = stored["identity"]
        diffs = [f"code digest {was.get('code')} -> {here['code']}"] if was.get("code") != here["code"] else []
        diffs += [f"plan {d}" for d in differences(was.get("plan"), here["plan"])]
        diffs += [f"machine {d}" for d in differences(was.get("machine"), here["machine"])]
        if diffs:
            raise ConfigError(
                f"{what} {str(path)!r} was measured by another run, so its jobs cannot be reused: "
                f"{'; '.join(diffs)}. Rerun it as it was, or remove the file to start afresh."
            )
        done: dict[Key, dict[str, Any]] = {}
        for n, line in enumerate(lines[1:], 2):
            job = json.loads(line)
            if (
                not isinstance(job, dict)
                or "key" not in job
                or not _is_key(job["key"])
                or not isinstance(job.get("record"), dict)
            ):
                raise ConfigError(
                    f"{what} {str(path)!r} line {n} must be a job {{key, record}}, but got {line[:120]!r}."
                )
            if shape is not None and "error" not in job["record"]:
                check(job["record"], shape, f"{what} {str(path)!r} line {n}", "record")
            done[_key(job["key"])] = job["record"]
        write_text_atomic(path, "".join(line + "\n" for line in lines))  # cut a torn line off before appending
        return cls(path, done, note)

    @classmethod
    def beside(
        cls, output: Path | None, identity: Identity, *, resume: bool, part: str = "", shape: Shape | None = None
    ) -> Partial:
        """The partial record beside a CLI's output (``partial_path``); with no output, one that
        keeps nothing. A note (a dropped torn line, nothing to resume) goes to stderr.

        Raises:
            ConfigError: as ``open``; or ``resume`` without an output to find the record by.
        """
        if output is None:
            if resume:
                raise ConfigError("--resume needs --json: the partial record of a cut run lies beside it.")
            return cls(None, {})
        partial = cls.open(
            partial_path(output, part), identity, resume=resume, what="--json's partial record", shape=shape
        )
        if partial.note:
            print(f"note: {partial.note}", file=sys.stderr)
        return partial

    def done(self) -> dict[Key, dict[str, Any]]:
        """Records of the finished jobs by key. A failed job (its record holds ``error``) is left
        out: it runs again on resume, as the quality suite's do."""
        return {key: record for key, record in self._done.items() if "error" not in record}

    def append(self, key: Key, record: dict[str, Any]) -> None:
        """Keep a finished job: one line, flushed and fsynced before this returns."""
        self._done[key] = record
        if self._file is None:
            return
        self._file.write(json_line({"key": key, "record": record}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def on_job(self, then: OnJob | None = None) -> OnJob:
        """An ``on_job`` for ``bench.runner.run_plan``: appends each (round, role name) job, then
        calls ``then`` (a progress line)."""

        def on_job(round_id: int, role: Any, record: dict[str, Any]) -> None:
            self.append((round_id, role.name), record)
            if then is not None:
                then(round_id, role, record)

        return on_job

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finish(self) -> None:
        """Remove the partial record: call it once the final output is written."""
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _read(path: Path, what: str) -> tuple[list[str], str | None]:
    """The whole lines of a partial record, and a note if a torn last line was dropped.

    Raises:
        ConfigError: a line before the last is not JSON (no kill leaves that).
    """
    try:
        raw = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({exc}).") from None
    parsed, torn = whole_json_lines(
        raw.splitlines(),
        lambda n, why: (
            f"{what} {str(path)!r} line {n} must be JSON, but it is not ({why}); remove the file to start afresh."
        ),
    )
    lines = [line for _, line, _ in parsed]
    note = f"{what} {str(path)!r} line {torn} is a torn line (a kill mid-append); dropped that job." if torn else None
    return lines, note
