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


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device}: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
