"""The environment record that every result carries: machine, backend, versions, threads, commit."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Settings that change speed without changing code; recorded whether set or not.
SPEED_ENV_VARS = (
    "KERAS_BACKEND",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "XLA_FLAGS",
    "TF_XLA_FLAGS",
    "JAX_PLATFORMS",
    "CUDA_VISIBLE_DEVICES",
)
PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "numpy", "optuna")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory_gib() -> float:
    import psutil

    return round(psutil.virtual_memory().total / 2**30, 1)


def gpus() -> list[str]:
    """GPU names from nvidia-smi, or an empty list; never imports a framework."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def framework_threads() -> dict[str, Any]:
    """Thread pools as the loaded framework reports them (only if it is already imported)."""
    threads: dict[str, Any] = {}
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        threads["tf_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads()
        threads["tf_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads()
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        threads["jax_devices"] = [str(d) for d in jax.devices()]
    return threads


def environment(**extra: Any) -> dict[str, Any]:
    """Describe this machine and software; ``extra`` adds run-specific fields (preset, loader...)."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if "keras" in sys.modules:
        backend = sys.modules["keras"].backend.backend()
    from diffusion.paths import compile_semantics

    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_gib": memory_gib(),
        "gpus": gpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "backend": backend,
        "compile_semantics": compile_semantics(backend),
        "versions": versions(),
        "env": {name: os.environ.get(name) for name in SPEED_ENV_VARS},
        "threads": framework_threads(),
        "git_commit": git_commit(),
        **extra,
    }
