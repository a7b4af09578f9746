"""What a run records about where it came from: library versions, git commit, device, time."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata

from optical_core.data.corpora import PROJECT_ROOT

LIBRARIES = ("torch", "transformers", "tokenizers", "pot", "numpy", "ranx", "bm25s", "safetensors",
             "sentence-transformers")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    return versions


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) or "unknown"


def cpu_supports_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPU has native bfloat16 dot products (otherwise bf16 is emulated, slower)."""
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def device_description(device: str) -> str:
    """The device kind a run's numbers depend on. On a CPU that includes native bf16 or not: bf16 kernels differ
    (and are several times slower) without it, so a bf16 cell rebuilt there is not the same run."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(device)}"
    bf16 = "native bf16" if cpu_supports_bf16() else "no native bf16"
    return f"{device}: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {bf16}"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
