"""A study's results table: one tidy row per finished cell, evaluation step, task and metric, read from the
cells' result.json records (results.csv and results.parquet). No torch here: reading a study never trains."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from optical_core.errors import CheckpointError
from optical_core.store.atomic import atomic_write_bytes, atomic_write_text
from optical_core.store.provenance import utc_now
from optical_core.study.grid import Cell, cell_status


CELL_COLUMNS = ("cell_id", "lang", "family", "method", "layers", "seed", "params_total", "params_non_embedding",
                "vocab_size", "wall_time_s", "train_wall_time_s", "eval_time_s", "precision", "final_loss")
STEP_COLUMNS = ("step", "task", "n_queries", "per_query_file", "query_cosine", "collapsed", "plan_sharpness",
                "identical_share", "identical_chance")


def collect_results(out_dir: Path | str, cells: list[Cell] | None = None) -> pd.DataFrame:
    """Tidy table: one row per finished cell, evaluation step, task and metric. `final` marks each cell's
    selected step on its sweep's task (the rows the gain analysis reads)."""
    out_dir = Path(out_dir)
    records = [(p, json.loads(p.read_text())) for p in sorted((out_dir / "cells").glob("*/result.json"))]
    if cells is not None:
        wanted = {c.id for c in cells}
        records = [(p, r) for p, r in records if r["cell_id"] in wanted]
    rows = []
    for path, r in records:
        if "evaluations" not in r or "task" not in r:  # the superseded first study's format (results/archive/)
            raise CheckpointError(f"{path}: a record from before learning curves (no evaluations or task) is no "
                                  "longer read: run the cell again")
        base = {k: r.get(k) for k in CELL_COLUMNS}
        # the step the run kept: the best on its stopping task, or (no stopping rule, older records) its last
        selected = r.get("selected_step", max(e["step"] for e in r["evaluations"]))
        for e in r["evaluations"]:
            step = {k: e.get(k) for k in STEP_COLUMNS}
            final = e["step"] == selected and e["task"] == r["task"]
            rows += [dict(base, **step, final=final, metric=m, value=v) for m, v in e["means"].items()]
    return pd.DataFrame(rows)


def final_results(results: pd.DataFrame) -> pd.DataFrame:
    """Each cell's last step on its sweep's task: one value per cell and metric."""
    return results[results["final"].astype(bool)] if "final" in results else results


def write_results(out_dir: Path | str, cells: list[Cell] | None = None) -> pd.DataFrame:
    out_dir = Path(out_dir)
    table = collect_results(out_dir, cells)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)  # serialise both before writing either: the pair stays consistent
    atomic_write_text(out_dir / "results.csv", table.to_csv(index=False))
    atomic_write_bytes(out_dir / "results.parquet", buffer.getvalue())
    failed = [c.id for c in (cells or []) if cell_status(out_dir, c) == "failed"]
    atomic_write_text(out_dir / "status.json", json.dumps(
        {"cells": len(cells or []), "done": int(table["cell_id"].nunique()) if len(table) else 0,
         "failed": failed, "written": utc_now()}, indent=2))
    return table


