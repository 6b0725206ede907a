"""A real, throw-away single-node SLURM cluster for tests: munged, slurmctld and slurmd on this machine.

Everything lives in one temp directory (config, key, munge socket, state, spool, logs) on free
loopback ports, so it neither needs nor touches /etc/slurm, /run/munge or another cluster on
the same machine. Client commands find it through ``SLURM_CONF`` (see ``SlurmCluster.env``).
Runs as root only: slurmd starts jobs as their owner, and the plugins below avoid cgroups
(``proctrack/linuxproc``, ``task/none``), which containers rarely delegate.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo")
START_TIMEOUT_S = 90  # slurmd registers within seconds; a slow, shared machine gets slack


def _which(name: str) -> str | None:
    # The daemons live in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def missing() -> str | None:
    """What this machine lacks to start a cluster, or None."""
    absent = [name for name in DAEMONS if _which(name) is None]
    if absent:
        return f"SLURM/munge missing ({', '.join(absent)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the test SLURM cluster runs slurmd as root (it starts jobs as their owner); run as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class SlurmCluster:
    """A running cluster: its config file and directory, and the environment its clients need."""

    conf: Path
    directory: Path
    node: str

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, SLURM_CONF=str(self.conf))
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
        env.update(extra)
        return env

    def logs(self) -> str:
        """The daemons' logs, for a failing test's message."""
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- {name} (tail)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)


def slurm_conf(directory: Path, node: str, cpus: int, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
ClusterName=pmt-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={directory}/munge.socket
# No cgroups: a container seldom delegates them, and one test job needs no isolation.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation={directory}/state
SlurmdSpoolDir={directory}/spool
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmctldLogFile={directory}/slurmctld.log
SlurmdLogFile={directory}/slurmd.log
ReturnToService=2
# Fast timers: a test waits for registration, scheduling and job end.
SchedulerParameters=sched_interval=1
MessageTimeout=10
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1024 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_idle(cluster: SlurmCluster, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited with {p.returncode} while starting\n{cluster.logs()}")
        result = subprocess.run(
            [_which("sinfo") or "sinfo", "-h", "-N", "-o", "%t"],
            capture_output=True,
            text=True,
            env=cluster.env(),
            timeout=30,
        )
        state = result.stdout.strip()
        if result.returncode == 0 and state == "idle":
            return
        time.sleep(1)
    raise RuntimeError(f"node not idle after {START_TIMEOUT_S} s (sinfo: {state!r})\n{cluster.logs()}")


@contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd; yields the cluster once its node is idle. Stops them
    and removes the directory on exit."""
    directory = Path(tempfile.mkdtemp(prefix="pmt-slurm-"))
    node = socket.gethostname().split(".")[0]
    conf = directory / "slurm.conf"
    conf.write_text(slurm_conf(directory, node, os.cpu_count() or 1, _free_port(), _free_port()))
    for sub in ("state", "spool"):
        (directory / sub).mkdir()
    cluster = SlurmCluster(conf, directory, node)
    key = directory / "munge.key"
    subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True, timeout=30)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    _which("munged"),
                    "--foreground",
                    "--force",  # the socket sits in a 0700 temp dir (only root uses it), which munged refuses
                    f"--socket={directory}/munge.socket",
                    f"--key-file={key}",
                    f"--pid-file={directory}/munged.pid",
                    f"--log-file={directory}/munged.log",
                    f"--seed-file={directory}/munged.seed",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 30
        while not (directory / "munge.socket").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for daemon in ("slurmctld", "slurmd"):
            procs.append(
                subprocess.Popen(
                    [_which(daemon), "-D", "-f", str(conf)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=cluster.env(),
                )
            )
        _wait_idle(cluster, procs)
        yield cluster
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(directory, ignore_errors=True)
