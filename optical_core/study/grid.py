"""A study's grid: its cells, each (language, student family, size, method, seed), and whether one has run.

Shared by the runner (which cells to run) and the reader (which cells a table covers); no torch here.
A finished cell leaves `cells/<id>/result.json` (written last, atomically); a failed one `failed.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optical_core.settings import SweepConfig


@dataclass(frozen=True)
class Cell:
    lang: str
    family: str  # a student family, or "baseline"
    method: str  # kd, ot, untrained, or a baseline system
    layers: int = 0
    seed: int = 0
    init_path: str | None = None

    @property
    def id(self) -> str:
        if self.family == "baseline":
            return f"{self.lang}-baseline-{self.method}"
        if self.method == "untrained":
            return f"{self.lang}-{self.family}-L{self.layers}-untrained"
        return f"{self.lang}-{self.family}-L{self.layers}-{self.method}-s{self.seed}"


def grid_cells(config: SweepConfig) -> list[Cell]:
    """All cells, grouped by language so that each language's teacher outputs are computed once."""
    cells: list[Cell] = []
    langs = list(dict.fromkeys(lang for g in config.grids for lang in g.langs))
    for lang in langs:
        cells += [Cell(lang, "baseline", system) for system in config.baselines]
        for g in config.grids:
            if lang not in g.langs:
                continue
            for layers in g.sizes:
                if "untrained" in g.methods:
                    cells.append(Cell(lang, g.family, "untrained", layers, init_path=g.init_path))
                for seed in g.seeds:
                    cells += [Cell(lang, g.family, m, layers, seed, g.init_path) for m in g.methods if m != "untrained"]
    return list(dict.fromkeys(cells))


def cell_status(out_dir: Path, cell: Cell) -> str:
    d = out_dir / "cells" / cell.id
    if (d / "result.json").is_file():
        return "done"
    if (d / "failed.json").is_file():
        return "failed"
    return "missing"


