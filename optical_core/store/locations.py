"""Where the app finds studies and checkpoints on disk."""

from __future__ import annotations

import os
from pathlib import Path

from optical_core.data.corpora import PROJECT_ROOT
from optical_core.store.checkpoints import CheckpointEntry, list_checkpoints

REFERENCE_RESULTS = PROJECT_ROOT / "results" / "default"


def checkpoint_root() -> Path:
    return Path(os.environ.get("OPTICAL_CHECKPOINTS", PROJECT_ROOT / "checkpoints"))


def runs_root() -> Path:
    return Path(os.environ.get("OPTICAL_RUNS", PROJECT_ROOT / "runs"))


def study_dirs() -> dict[str, Path]:
    """Label -> directory of every study with a results table: the committed reference first, then other
    committed studies (results/<name>), then sweeps under runs/."""
    found = {}
    if (REFERENCE_RESULTS / "results.csv").is_file():
        found["reference (results/default)"] = REFERENCE_RESULTS
    for d in sorted(REFERENCE_RESULTS.parent.iterdir()) if REFERENCE_RESULTS.parent.is_dir() else []:
        if d != REFERENCE_RESULTS and (d / "results.csv").is_file():
            found[f"committed results/{d.name}"] = d
    root = runs_root()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "results.csv").is_file():
                found[f"sweep runs/{d.name}"] = d
    return found


def all_checkpoints() -> list[CheckpointEntry]:
    """The app's checkpoints, then those kept by sweeps (runs/<sweep>/cells/<cell>/checkpoint)."""
    entries = list_checkpoints(checkpoint_root())
    root = runs_root()
    if root.is_dir():
        for sweep in sorted(p for p in root.iterdir() if (p / "cells").is_dir()):
            for cell in sorted((sweep / "cells").iterdir()):
                for e in list_checkpoints(cell):
                    entries.append(CheckpointEntry(f"{sweep.name}/{cell.name}", e.path, e.manifest, e.error))
    return entries
