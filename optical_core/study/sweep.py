"""Running a study: every cell of its grid not yet done, resumable, then the results table.

Cells are independent: each is one task on a Dask cluster (study/engine.py), which hands back its records; this
process writes them under `cells/<id>/` (study/cell.py), result.json last: a rerun skips it. A failed cell leaves
`failed.json` with its error; the sweep goes on and a rerun retries it.

Two sweeps on one folder share the cells through one lock file per cell: a sweep takes a cell's lock before it
submits the cell and lets it go once the records are written. It submits only as many cells as its cluster can run
at once, so it holds only their locks, and a second sweep on the folder (on the same cluster or another) takes the
cells the first has not reached.
"""

from __future__ import annotations

import json
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from optical_core.distil.train import resolve_device
from optical_core.settings import SweepConfig
from optical_core.store.atomic import atomic_write_text
from optical_core.store.locks import LockHeld, file_lock
from optical_core.store.provenance import device_description, git_commit, library_versions, utc_now
from optical_core.study.cell import write_cell
from optical_core.study.engine import Engine, cell_records, open_engine
from optical_core.study.grid import Cell, cell_status, grid_cells
from optical_core.study.results import write_results
from optical_core.study.resume import check_resumable

LOCKS = ".locks"  # one lock file per cell while a process runs it


def run_sweep(config: SweepConfig, out_dir: Path | str, on_cell: Callable[[int, int, Cell, str], None] | None = None,
              retry_failed: bool = True, scheduler: str | None = None) -> pd.DataFrame:
    """Run every cell not yet done (failed ones too when `retry_failed`), then write the results table. The cells
    run on the Dask cluster at `scheduler`, else on `config.workers` local worker processes (engine.py).
    `on_cell(i, n, cell, status)` hears each cell's "start" and its outcome ("done", "failed: ...", "skipped: ...")."""
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
    if todo:  # a finished sweep starts no cluster
        with open_engine(config.workers, scheduler) as engine:
            run_cells(engine, todo, config, out_dir, on_cell or (lambda *_: None))
    return write_results(out_dir, cells)


def run_cells(engine: Engine, todo: list[Cell], config: SweepConfig, out_dir: Path,
              on_cell: Callable[[int, int, Cell, str], None]) -> None:
    """Submit the cells as slots free up, each under its lock, and write each one's records as they come back."""
    queue = list(enumerate(todo, start=1))
    running: dict[Future, tuple[int, Cell, ExitStack]] = {}
    while queue or running:
        while queue and len(running) < engine.slots():
            i, cell = queue.pop(0)
            on_cell(i, len(todo), cell, "start")
            lock = ExitStack()
            try:
                lock.enter_context(file_lock(out_dir / LOCKS / f"{cell.id}.lock", wait=False))
            except LockHeld as held:  # two sweeps on one folder share the cells instead of both running them
                on_cell(i, len(todo), cell, f"skipped: being run by process {held.holder}")
                continue
            if cell_status(out_dir, cell) == "done":  # finished by another sweep meanwhile
                lock.close()
                on_cell(i, len(todo), cell, "skipped: finished by another process")
                continue
            running[engine.executor.submit(cell_records, cell, config)] = (i, cell, lock)
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            i, cell, lock = running.pop(future)
            with lock:
                try:
                    write_cell(out_dir, cell, future.result())
                    status = "done"
                except Exception as err:  # one bad cell must not stop the study
                    write_failure(out_dir, cell, err)
                    status = f"failed: {type(err).__name__}: {err}"
            on_cell(i, len(todo), cell, status)


def write_failure(out_dir: Path, cell: Cell, err: BaseException) -> None:
    atomic_write_text(out_dir / "cells" / cell.id / "failed.json", json.dumps(
        {"cell": asdict(cell), "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
         "when": utc_now()}, indent=2))


def with_budget(config: SweepConfig, **changes) -> SweepConfig:
    """The sweep with its run template's budget changed (e.g. fewer pairs for a smoke run)."""
    return replace(config, run=replace(config.run, budget=replace(config.run.budget, **changes)))
