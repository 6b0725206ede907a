"""Study storages: a journal file by default (no server), any RDB URL, PostgreSQL for many nodes.

Every subcommand resolves its storage with ``resolve_storage``: ``--storage``, else
``$OPTUNA_STORAGE``, else the journal file ``results/hpo/STUDY.log``. A bare file path is a
journal file (as optuna-dashboard takes it); ``journal:PATH`` is the same file.

Both kinds get heartbeats, so a worker killed mid-trial has its trial failed and retried by
Optuna's own ``RetryHeartbeatStaleTrialCallback``. RDBStorage has heartbeats built in; for the journal
file this module implements Optuna's ``BaseHeartbeat`` interface on ``JournalStorage``.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from diffusion.errors import ConfigError
from diffusion.outputs import check_readable_file
from diffusion.shapes import Record, check

HEARTBEAT_S = 2  # how often a running trial says it is alive
GRACE_S = 10  # silence after which a running trial counts as dead (its worker was killed)
MAX_RETRY = 3
SCHEMA_RACE_TRIES = 5  # opening an empty database from many processes at once: see _lost_schema_race
DEFAULT_DIR = Path("results") / "hpo"
HEARTBEAT_ATTR = "heartbeat_unix_s"
ENV_VAR = "OPTUNA_STORAGE"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # "postgresql:", "sqlite:", "journal:"


# A query parameter whose name says it carries a credential (libpq's `password`, `sslpassword`, ...).
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|key|cred|auth", re.IGNORECASE)
_MASK = "***"
# `name=value` anywhere in a URL once %-decoded: a query split on ';', a fragment, an encoded '='
# (`?password%3Dx`) or libpq options (`options=-c password=x`) a query parser reads otherwise.
_ASSIGNMENT = re.compile(r"([^=&;?#/\s]+)=([^&;#\s]*)")


def _userinfo_password(url: str) -> str | None:
    """The raw text between the user name's ``:`` and the last ``@``: every character that may be a
    password, whatever a parser makes of it (``u:p@ss@host`` gives ``p@ss``)."""
    rest = url.split("://", 1)[-1]
    userinfo, at, _ = rest.rpartition("@")
    return userinfo.partition(":")[2] if at and ":" in userinfo else None


def _parse(url: str) -> Any:
    """SQLAlchemy's reading of ``url``, or None where it cannot be trusted to have found the password:
    not parseable, or a second ``@`` after a password (``u:p@ss@host``: SQLAlchemy reads password
    ``p`` and host ``ss@host``), or a password where the last-``@`` reading sees another."""
    if "://" not in url:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return None
    before, _, after = url.split("://", 1)[1].partition("@")
    if ":" in before and "@" in after:
        return None
    raw = _userinfo_password(url)
    if (unquote(raw) if raw else None) != (parsed.password or None):
        return None
    return parsed


def _secrets(url: str) -> set[str]:
    """Every substring of ``url`` that may be a secret, raw and %-decoded (an over-estimate: a
    redaction that contains none of them shows no secret)."""
    found: set[str] = set()
    raw = _userinfo_password(url)
    if raw:
        found |= {raw, unquote(raw)}
    userinfo = url.split("://", 1)[-1].rpartition("@")[0]
    if ":" in unquote(userinfo):  # `u%3Apw@host`: a driver reads user `u:pw`, a person a password
        found.add(unquote(userinfo).partition(":")[2])
    for text in {url, unquote(url)}:
        for key, value in _ASSIGNMENT.findall(text):
            if _SECRET_KEY.search(key) and value:
                found |= {value, unquote(value), quote(value, safe=""), quote_plus(value)}
    # The query as typed (a value's raw %-escapes), as decoded, and as SQLAlchemy read it.
    typed = [pair.partition("=")[::2] for pair in url.partition("?")[2].split("&")]
    queries = [typed, parse_qsl(url.partition("?")[2], keep_blank_values=True)]
    parsed = _parse(url)
    if parsed is not None:
        if parsed.password:
            found |= {parsed.password, quote(parsed.password, safe="")}
        queries.append([(k, v) for k, vs in parsed.query.items() for v in ((vs,) if isinstance(vs, str) else vs)])
    for key, value in (pair for query in queries for pair in query):
        if _SECRET_KEY.search(key) and value:
            found |= {value, unquote(value), quote(value, safe=""), quote_plus(value)}
    return {s for s in found if s}


def has_secret(url: str) -> bool:
    """Whether a storage URL may hold a password (in its user part or a query parameter)."""
    if url.startswith("journal:"):
        return "://" in url and has_secret(url.removeprefix("journal:"))
    return bool(_secrets(url))


def _hidden(url: str) -> str:
    """All but the scheme replaced: for a string whose secrets no parser can be trusted to find."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return _MASK
    return scheme.group(0) + ("//" if url[scheme.end() :].startswith("//") else "") + _MASK


def redact(url: str) -> str:
    """The storage URL with its password and credential query values replaced by ``***``, for
    every message, log line, record and script.

    SQLAlchemy's URL parser finds the password; where its reading is doubtful (see ``_parse``)
    or its rendering still contains anything that may be a secret, all but the scheme is hidden.
    A journal file path is returned as it is.
    """
    if url.startswith("journal:"):  # a path; `journal:postgresql://u:pw@h/db` is refused, redacted
        rest = url.removeprefix("journal:")
        return "journal:" + redact(rest) if "://" in rest else url
    secrets = _secrets(url)
    if not secrets:
        return url
    parsed = _parse(url)
    if parsed is None:
        return _hidden(url)
    masked = {k: (_MASK if _SECRET_KEY.search(k) else v) for k, v in parsed.query.items()}
    text = parsed.set(query=masked).render_as_string(hide_password=True).replace(quote(_MASK, safe=""), _MASK)
    return _hidden(url) if any(s in text for s in secrets) else text


# A URL inside a message: a scheme, then one or more '/' (a path made of one has lost a '/').
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/[^\s'\"]+")


def scrub_urls(text: str) -> str:
    """``text`` with every URL in it that may hold a secret redacted: for messages that echo what
    the user typed, where a storage URL may have gone by mistake (``--storagee URL``, the URL as
    ``--path`` or ``--study``, or as a positional argument)."""
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)) if has_secret(m.group(0)) else m.group(0), text)


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with every possible secret of ``url`` replaced."""
    text = text.replace(url, redact(url))
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def check_url(url: str, what: str) -> None:
    """Refuse a database URL with a password that SQLAlchemy would misread (and a driver then put
    into its messages): an unencoded ``@`` after the password, or a password it cannot find.

    Raises:
        ConfigError: the URL has a password and ``_parse`` cannot trust its reading.
    """
    if "://" in url and has_secret(url) and _parse(url) is None:
        raise ConfigError(
            f"`{what}` must be a URL such as postgresql://USER:PASSWORD@HOST/DB with '@', ':' and '/' in the "
            f"user or password percent-encoded (%40, %3A, %2F) and no other '@' after the password, "
            f"but got {redact(url)!r}."
        )


def default_storage(study: str) -> str:
    # optuna-dashboard opens a journal file by path when its name ends in .log
    return f"journal:{DEFAULT_DIR / (study + '.log')}"


def journal_path(url: str, what: str = "--storage") -> Path | None:
    """The journal file of ``journal:PATH`` or of a bare path; None for a database URL.

    Raises:
        ConfigError: a scheme without ``//`` (``postgresql:/db``), which is neither.
    """
    if url.startswith("journal:"):
        if "://" in url:  # `journal:postgresql://...`: a URL by mistake, not a file to create
            raise ConfigError(
                f"`{what}` must be journal:PATH with a file path, or a database URL without journal:, "
                f"but got {redact(url)!r}."
            )
        return Path(url.removeprefix("journal:"))
    if "://" in url:
        return None
    if _SCHEME.match(url):
        raise ConfigError(
            f"`{what}` must be a file path, journal:PATH or a URL such as postgresql://USER@HOST/DB, "
            f"but got {redact(url)!r} (a scheme without //)."
        )
    return Path(url)


def describe(url: str) -> str:
    """A short name of the storage kind, for the environment record."""
    if journal_path(url) is not None:
        return "journal-file"
    return url.split(":", 1)[0].split("+", 1)[0]


@dataclass(frozen=True)
class ResolvedStorage:
    """The storage a subcommand uses and where that choice came from.

    Attributes:
        url: ``journal:PATH`` or a database URL, as ``open_storage`` takes it.
        source: ``--storage``, ``$OPTUNA_STORAGE`` or ``default``.
    """

    url: str
    source: str

    def __post_init__(self) -> None:
        journal_path(self.url, self.source)  # refuses a scheme without //
        check_url(self.url, self.source)

    @property
    def journal(self) -> Path | None:
        return journal_path(self.url)

    @property
    def file(self) -> Path | None:
        """The file the storage lives in (a journal, an SQLite database); None for a server."""
        if self.journal is not None:
            return self.journal
        parsed = _parse(self.url) if self.url.startswith("sqlite") else None
        database = parsed.database if parsed is not None else None
        return Path(database) if database and database != ":memory:" else None

    def display(self) -> str:
        """The bare path of a journal file (what optuna-dashboard opens), else the redacted URL."""
        return str(self.journal) if self.journal is not None else redact(self.url)

    def line(self) -> str:
        """The start-up line every subcommand prints."""
        return f"storage: {self.display()} ({describe(self.url)}, from {self.source})"


def resolve_storage(arg: str | None, study: str, environ: Mapping[str, str] | None = None) -> ResolvedStorage:
    """``--storage``, else ``$OPTUNA_STORAGE`` (unset or empty: skipped), else ``results/hpo/STUDY.log``.

    A bare path becomes ``journal:PATH``. Nothing is opened or created here.

    Raises:
        ConfigError: a scheme without ``//``.
    """
    environ = os.environ if environ is None else environ
    if arg:
        raw, source = arg, "--storage"
    elif environ.get(ENV_VAR):
        raw, source = environ[ENV_VAR], f"${ENV_VAR}"
    else:
        raw, source = default_storage(study), "default"
    path = journal_path(raw, source)
    return ResolvedStorage(f"journal:{path}" if path is not None else raw, source)


# Every line Optuna's JournalStorage writes; its replay reads op_code and worker_id first.
JOURNAL_LINE = Record({"op_code": int, "worker_id": str})


def check_journal(path: Path) -> None:
    """Refuse a journal file that is not one: a directory, text, random bytes.

    Optuna would raise a JSON or KeyError traceback from deep in its replay, or, for a file with
    no complete line, take it as empty and append to it. A last line without its newline is
    what a writer leaves mid-append (Optuna skips it too), so it must only open as every line does.

    Raises:
        ConfigError: the path is a directory or cannot be read, or a line is no journal entry.
    """
    where = f"journal file {str(path)!r}"
    if path.is_dir():
        raise ConfigError(f"{where} is a directory; --storage must name a journal file (or a database URL).")
    if not path.exists():
        return
    check_readable_file(path, "journal file")  # a FIFO would block, /dev/zero fill memory, /dev/null lose trials
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror}.") from None
    *complete, partial = lines
    for n, line in enumerate(complete, 1):
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise ConfigError(f"{where} line {n} must be a JSON journal entry, but got {_start(line)}.") from None
        check(entry, JOURNAL_LINE, f"{where} line {n}")
    if partial and not partial.startswith(b'{"'):
        raise ConfigError(f"{where} line {len(lines)} must be a JSON journal entry, but got {_start(partial)}.")


def _start(line: bytes) -> str:
    return repr(line[:40]) + ("..." if len(line) > 40 else "")


def _journal_storage(path: Path) -> Any:
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat  # public only as a base class; RDBStorage uses it too
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """A journal file storage with heartbeats: stamps are trial system attributes."""

        def __init__(self, backend: Any, interval: int, grace: int, callback: Any) -> None:
            super().__init__(backend)
            self._interval, self._grace, self._callback = interval, grace, callback

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
            except RuntimeError:  # the trial finished between two beats
                pass

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            stale = []
            for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                beat = trial.system_attrs.get(HEARTBEAT_ATTR)
                if beat is not None and now - beat > self._grace:
                    stale.append(trial._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self._interval

        def get_heartbeat_stale_trial_callback(self) -> Any:
            return self._callback

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"journal file {str(path)!r} cannot be created: {exc.strerror}.") from None
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    return HeartbeatJournalStorage(JournalFileBackend(str(path)), HEARTBEAT_S, GRACE_S, retry)


def open_storage(url: str, *, workers: int = 1, connect_timeout_s: int = 5) -> Any:
    """Open a storage: ``journal:PATH`` or a bare path (a journal file), ``sqlite:///PATH``,
    ``postgresql://...`` (psycopg 3), or any SQLAlchemy URL Optuna accepts.

    Raises:
        ConfigError: a scheme without ``//``, a journal file that is none (``check_journal``),
            or the database cannot be opened (missing driver, server unreachable within the
            timeout, bad credentials).
    """
    path = journal_path(url)
    if path is not None:
        check_journal(path)  # before Optuna loads (a second or two)
    import optuna

    # Heartbeats and their retry callback are marked experimental in Optuna; we pin a range
    # (pyproject) and test the behaviour, so the warning on every trial is noise.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Optuna logs every trial at INFO; our progress display and summaries say what matters.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if path is not None:
        return _journal_storage(path)
    scheme = url.split(":", 1)[0]
    if scheme.startswith("sqlite") and workers > 1:
        warnings.warn(
            "SQLite is not recommended for parallel workers (Optuna's advice: lock contention); "
            "use the default journal file or PostgreSQL.",
            stacklevel=2,
        )
    engine_kwargs: dict[str, Any] = {}
    if scheme.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": connect_timeout_s}, "pool_pre_ping": True}
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    attempt = 0
    while True:
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=retry,
            )
        except Exception as exc:  # SQLAlchemy's errors vary by driver; all mean "cannot use this storage"
            attempt += 1
            if _lost_schema_race(exc) and attempt < SCHEMA_RACE_TRIES:
                time.sleep(0.5 * attempt)
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"storage {redact(url)!r} cannot be opened: {scrub(first, url)}") from None


def _lost_schema_race(exc: Exception) -> bool:
    """Whether opening failed because another process created Optuna's tables at the same moment.

    On an empty database every process creates the tables (and PostgreSQL their row types); two
    at once collide on a unique index (seen with SLURM array tasks starting together). The
    winner's tables are there on the next try.
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    return isinstance(exc, (IntegrityError, ProgrammingError)) and (
        "duplicate key" in str(exc) or "already exists" in str(exc)
    )
