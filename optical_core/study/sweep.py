"""Running a study: every cell of its grid not yet done, resumable, then the results table.

Cells are independent. Each finished cell leaves its records under `cells/<id>/` (study/cell.py), result.json
last: a rerun skips it. A failed cell leaves `failed.json` with its error; the sweep goes on and a rerun
retries it. Two processes on one folder share the cells through one lock file per cell.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from optical_core.distil.train import resolve_device
from optical_core.models.encoders import load_teacher
from optical_core.settings import SweepConfig
from optical_core.store.atomic import atomic_write_text
from optical_core.store.locks import LockHeld, file_lock
from optical_core.store.provenance import device_description, git_commit, library_versions, utc_now
from optical_core.study.cell import run_cell, write_cell
from optical_core.study.grid import Cell, cell_status, grid_cells
from optical_core.study.results import write_results
from optical_core.study.resume import check_resumable

LOCKS = ".locks"  # one lock file per cell while a process runs it


def run_sweep(config: SweepConfig, out_dir: Path | str, on_cell: Callable[[int, int, Cell, str], None] | None = None,
              retry_failed: bool = True) -> pd.DataFrame:
    """Run every cell not yet done (failed ones too when `retry_failed`), then write the results table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_resumable(config, out_dir)
    atomic_write_text(out_dir / "sweep.json", json.dumps(
        {"config": asdict(config), "versions": library_versions(), "git_commit": git_commit(),
         "device": device_description(resolve_device(config.run.device)), "started": utc_now()}, indent=2,
        default=str))
    cells = grid_cells(config)
    todo = [c for c in cells if cell_status(out_dir, c) == "missing"
            or (retry_failed and cell_status(out_dir, c) == "failed")]
    teacher = load_teacher()
    for i, cell in enumerate(todo, start=1):
        if on_cell:
            on_cell(i, len(todo), cell, "start")
        try:
            with file_lock(out_dir / LOCKS / f"{cell.id}.lock", wait=False):
                if cell_status(out_dir, cell) == "done":  # finished by another process meanwhile
                    status = "skipped: finished by another process"
                else:
                    write_cell(out_dir, cell, run_cell(cell, config, teacher))
                    status = "done"
        except LockHeld as held:  # two sweeps on one folder share the cells instead of both running them
            status = f"skipped: being run by process {held.holder}"
        except Exception as err:  # one bad cell must not stop the study
            write_failure(out_dir, cell, err)
            status = f"failed: {type(err).__name__}: {err}"
        if on_cell:
            on_cell(i, len(todo), cell, status)
    return write_results(out_dir, cells)


def write_failure(out_dir: Path, cell: Cell, err: BaseException) -> None:
    atomic_write_text(out_dir / "cells" / cell.id / "failed.json", json.dumps(
        {"cell": asdict(cell), "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
         "when": utc_now()}, indent=2))


def with_budget(config: SweepConfig, **changes) -> SweepConfig:
    """The sweep with its run template's budget changed (e.g. fewer pairs for a smoke run)."""
    return replace(config, run=replace(config.run, budget=replace(config.run.budget, **changes)))
