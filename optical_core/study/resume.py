"""Resuming a study into a folder that already holds finished cells: only with the settings they ran with."""

from __future__ import annotations

import json
from pathlib import Path

from optical_core.errors import SettingsError
from optical_core.settings import EvalPlan, SweepConfig, TrainConfig, default_of, setting_field
from optical_core.study.cell import RESULT, cell_settings
from optical_core.study.grid import cell_status, grid_cells


def setting_default(key: str):
    """The default of a flat settings key (`budget.lr`, `eval.precision`): the value a record written before
    the setting existed ran with."""
    cls, parts = (EvalPlan, key.split(".")[1:]) if key.startswith("eval.") else (TrainConfig, key.split("."))
    value = None
    for part in parts:
        value = default_of(setting_field(cls, part))
        cls = type(value)
    return json.loads(json.dumps(value))  # tuples as lists, as records read back


def check_resumable(config: SweepConfig, out_dir: Path) -> None:
    """Refuse to resume into `out_dir` when a finished cell was run with other settings than `config` gives it
    (a changed learning rate, budget, precision or task list would silently mix two studies in one table)."""
    for cell in grid_cells(config):
        if cell_status(out_dir, cell) != "done":
            continue
        record = json.loads((out_dir / "cells" / cell.id / RESULT).read_text())
        if "settings" not in record:  # written before cells recorded their settings (the pilot's records)
            raise SettingsError(f"{out_dir}: cell {cell.id} records no settings, so a resumed sweep cannot check it "
                                "ran with the config's; use another --out")
        recorded = record["settings"]
        wanted = cell_settings(cell, config)
        # a key the record lacks was added later: the cell ran with that setting's default
        differ = [k for k in wanted if recorded.get(k, setting_default(k)) != wanted[k]]
        if differ:
            k = differ[0]
            raise SettingsError(
                f"{out_dir}: cell {cell.id} was run with {k} = {recorded.get(k, setting_default(k))!r}, the config "
                f"now gives {wanted[k]!r}{f' (and {len(differ) - 1} more)' if len(differ) > 1 else ''}; "
                "use another --out, or the settings it was run with")
