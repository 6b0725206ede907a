"""A real, throw-away PostgreSQL server (initdb into a temp dir, loopback port, trust auth): the tests'
storage, and the one the search simulation (bench.swarm) runs its workers against."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def runuser() -> str | None:
    """Path of `runuser` (util-linux); it lives in /usr/sbin, which a user's PATH may lack."""
    return shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")


def missing() -> str | None:
    """What this machine lacks to start a server, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL binaries missing at {PG_BIN} (set PG_BIN)"
    if os.geteuid() == 0 and runuser() is None:
        return "`runuser` (util-linux) not found on PATH, /usr/sbin or /sbin; as root it runs the server as `postgres`"
    return None


def available() -> bool:
    return missing() is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: run it as `postgres` there, as ourselves otherwise.
    if os.geteuid() != 0:
        return cmd
    path = runuser()
    if path is None:
        raise FileNotFoundError(missing())
    return [path, "-u", "postgres", "--", *cmd]


def create_database(host: str, port: int, name: str) -> None:
    """An empty database on a running server (no Optuna tables yet)."""
    cmd = [str(PG_BIN / "createdb"), "-h", host, "-p", str(port), "-U", "postgres", name]
    subprocess.run(_as_server_user(cmd), check=True, capture_output=True, text=True, timeout=60)


@contextmanager
def postgres_server(database: str = "optuna", max_connections: int = 200) -> Iterator[tuple[str, int]]:
    """Start a server; yields (host, port) with `database` created. Stops it and removes its files on exit.

    ``max_connections``: a worker process of a search may hold two (its trial's and its heartbeat's).
    """
    # Its own directory under /tmp: pytest's temp dirs are private to root, and the server
    # runs as `postgres` when we are root.
    directory = Path(tempfile.mkdtemp(prefix="pmt-pg-"))
    data, log = directory / "data", directory / "server.log"
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    port = _free_port()
    run = lambda cmd: subprocess.run(_as_server_user(cmd), check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    run([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
    run(
        [
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "start",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {directory} -c fsync=off -c max_connections={max_connections}",
        ]
    )
    # A watchdog outside this process's session stops the server once this process is gone, a
    # SIGKILL included: a killed run leaves no server behind.
    stop = _as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
    watchdog = subprocess.Popen(
        [
            "sh",
            "-c",
            f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; {shlex.join(stop)}; rm -rf {shlex.quote(str(directory))}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database])
        yield "127.0.0.1", port
    finally:
        subprocess.run(stop, capture_output=True, timeout=60)
        watchdog.kill()
        watchdog.wait()
        shutil.rmtree(directory, ignore_errors=True)
