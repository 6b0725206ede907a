"""Study storages: a journal file by default (no server), any RDB URL, PostgreSQL for many nodes.

Every subcommand resolves its storage with ``resolve_storage``: ``--storage``, else
``$OPTUNA_STORAGE``, else the journal file ``results/hpo/STUDY.log``. A bare file path is a
journal file (as optuna-dashboard takes it); ``journal:PATH`` is the same file.

Both kinds get heartbeats, so a worker killed mid-trial has its trial failed and retried by
Optuna's own ``RetryHeartbeatStaleTrialCallback``. RDBStorage has heartbeats built in; for the journal
file this module implements Optuna's ``BaseHeartbeat`` interface on ``JournalStorage``.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusion.errors import ConfigError

HEARTBEAT_S = 2  # how often a running trial says it is alive
GRACE_S = 10  # silence after which a running trial counts as dead (its worker was killed)
MAX_RETRY = 3
SCHEMA_RACE_TRIES = 5  # opening an empty database from many processes at once: see _lost_schema_race
DEFAULT_DIR = Path("results") / "hpo"
HEARTBEAT_ATTR = "heartbeat_unix_s"
ENV_VAR = "OPTUNA_STORAGE"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # "postgresql:", "sqlite:", "journal:"


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def default_storage(study: str) -> str:
    # optuna-dashboard opens a journal file by path when its name ends in .log
    return f"journal:{DEFAULT_DIR / (study + '.log')}"


def journal_path(url: str, what: str = "--storage") -> Path | None:
    """The journal file of ``journal:PATH`` or of a bare path; None for a database URL.

    Raises:
        ConfigError: a scheme without ``//`` (``postgresql:/db``), which is neither.
    """
    if url.startswith("journal:"):
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
        journal_path(self.url)  # refuses a scheme without //

    @property
    def journal(self) -> Path | None:
        return journal_path(self.url)

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

    path.parent.mkdir(parents=True, exist_ok=True)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    return HeartbeatJournalStorage(JournalFileBackend(str(path)), HEARTBEAT_S, GRACE_S, retry)


def open_storage(url: str, *, workers: int = 1, connect_timeout_s: int = 5) -> Any:
    """Open a storage: ``journal:PATH`` or a bare path (a journal file), ``sqlite:///PATH``,
    ``postgresql://...`` (psycopg 3), or any SQLAlchemy URL Optuna accepts.

    Raises:
        ConfigError: a scheme without ``//``, or the database cannot be opened (missing driver,
            server unreachable within the timeout, bad credentials).
    """
    import optuna

    # Heartbeats and their retry callback are marked experimental in Optuna; we pin a range
    # (pyproject) and test the behaviour, so the warning on every trial is noise.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Optuna logs every trial at INFO; our progress display and summaries say what matters.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = journal_path(url)
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
            raise ConfigError(f"storage {redact(url)!r} cannot be opened: {redact(first)}") from None


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
