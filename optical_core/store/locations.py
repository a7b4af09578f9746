"""Where the app finds studies and checkpoints on disk. Listing studies imports no torch (reading a published
study never needs it); listing checkpoints reads their manifests through store/checkpoints, imported then."""

from __future__ import annotations

import os
import typing
from pathlib import Path

from optical_core.data.corpora import PROJECT_ROOT

if typing.TYPE_CHECKING:
    from optical_core.store.checkpoints import CheckpointEntry

COMMITTED_STUDIES = PROJECT_ROOT / "results"  # one folder per published study (archive/ holds no table)
HEADLINE_STUDY = "study"  # results/study: the study that answers the question, listed (and opened) first


def checkpoint_root() -> Path:
    return Path(os.environ.get("OPTICAL_CHECKPOINTS", PROJECT_ROOT / "checkpoints"))


def runs_root() -> Path:
    return Path(os.environ.get("OPTICAL_RUNS", PROJECT_ROOT / "runs"))


def exports_root() -> Path:
    """Where the app writes sentence-transformers exports (one folder per checkpoint name)."""
    return Path(os.environ.get("OPTICAL_EXPORTS", PROJECT_ROOT / "exports"))


SUPERSEDED = "SUPERSEDED"  # a file in a study directory whose first line says why it no longer answers


def superseded_reason(study: Path) -> str | None:
    """Why a committed study is superseded (its SUPERSEDED file), or None for a current one."""
    file = Path(study) / SUPERSEDED
    if not file.is_file():
        return None
    lines = file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[0][:1000] if lines else "Superseded (no reason given)."


def study_dirs() -> dict[str, Path]:
    """Label -> directory of every study with a results table: current committed studies first (the headline
    study before the others), then superseded ones (labelled so), then sweeps under runs/."""
    found, old = {}, {}
    committed = (sorted(COMMITTED_STUDIES.iterdir(), key=lambda d: (d.name != HEADLINE_STUDY, d.name))
                 if COMMITTED_STUDIES.is_dir() else [])
    for d in committed:
        if (d / "results.csv").is_file():
            if superseded_reason(d):
                old[f"results/{d.name} (superseded)"] = d
            else:
                found[f"results/{d.name}"] = d
    found.update(old)
    root = runs_root()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "results.csv").is_file():
                found[f"sweep runs/{d.name}"] = d
    return found


def all_checkpoints() -> list[CheckpointEntry]:
    """The app's checkpoints, then those kept by sweeps (runs/<sweep>/cells/<cell>/checkpoint)."""
    from optical_core.store.checkpoints import CheckpointEntry, list_checkpoints

    entries = list_checkpoints(checkpoint_root())
    root = runs_root()
    if root.is_dir():
        for sweep in sorted(p for p in root.iterdir() if (p / "cells").is_dir()):
            for cell in sorted((sweep / "cells").iterdir()):
                # only a cell's checkpoint/ folder is a checkpoint (per_query/ and the records are not)
                for e in list_checkpoints(cell):
                    if e.path.name == "checkpoint":
                        entries.append(CheckpointEntry(f"{sweep.name}/{cell.name}", e.path, e.manifest, e.error))
    return entries
