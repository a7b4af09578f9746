"""A study's cells opened one by one from their records, without weights and without torch: which cells there
are, a cell's per-query scores at a step, two cells compared over the same queries (paired test, wins, ties
and losses), the queries on which they differ most with each side's top retrieved documents, and the colour
range two plans share. The Alignment and Compare pages read a study through this module.

Records (study/cell.py writes them): result.json, per_query/stepS_T.csv, plans.npz and top_documents.npz.
Cells run before plan records existed have no plans.npz and no top_documents.npz: `has_plans` and
`has_top_documents` say so, and study/records.py's readers raise a one-line `UnreadableRecord`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optical_core.evaluate.significance import PairedComparison, paired_comparison
from optical_core.study.records import PLANS, TOP_DOCUMENTS, UnreadableRecord

RESULT = "result.json"  # study/cell.py's name (importing it would import torch)
UNTRAINED = "untrained"
BASELINE = "baseline"


@dataclass(frozen=True)
class StudyCell:
    """One finished cell of a study, as its result.json describes it."""

    id: str
    lang: str
    family: str  # me5, minilm, ... or baseline
    method: str  # kd, ot, a variant (ot-kd), untrained, or a baseline's name
    layers: int
    seed: int
    path: Path  # the cell's folder
    task: str  # the sweep's main task (headline)
    selected_step: int  # the step the run kept (its final row)
    evaluations: tuple[dict, ...]  # result.json's: step, task, means, query_cosine, collapsed, per_query_file

    @property
    def trained(self) -> bool:
        return self.family != BASELINE and self.method != UNTRAINED

    @property
    def student(self) -> str:
        return self.method if self.family == BASELINE else f"{self.family}-L{self.layers}"

    @property
    def label(self) -> str:
        if self.family == BASELINE:
            return f"{self.lang} · baseline {self.method}"
        seed = "" if self.method == UNTRAINED else f" · seed {self.seed}"
        return f"{self.lang} · {self.student} · {self.method}{seed}"

    @property
    def has_plans(self) -> bool:  # looked up each time: a rebuilt cell gains its records while the app runs
        return (self.path / PLANS).is_file()

    @property
    def has_top_documents(self) -> bool:
        return (self.path / TOP_DOCUMENTS).is_file()

    def steps(self, task: str | None = None) -> list[int]:
        task = task or self.task
        return sorted({e["step"] for e in self.evaluations if e["task"] == task})

    def evaluation(self, step: int, task: str | None = None) -> dict:
        task = task or self.task
        for e in self.evaluations:
            if e["step"] == step and e["task"] == task:
                return e
        raise UnreadableRecord(f"{self.id}: no {task} evaluation at step {step} (evaluated at "
                               f"{', '.join(map(str, self.steps(task))) or 'no step'})")


def read_study_cells(study_dir: Path | str) -> tuple[list[StudyCell], list[str]]:
    """The study's finished cells (sorted by language, family, size, method, seed) and one line per cell
    folder whose result.json cannot be read."""
    study_dir = Path(study_dir)
    cells, unreadable = [], []
    for path in sorted((study_dir / "cells").glob(f"*/{RESULT}")):
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
            evaluations = tuple(r["evaluations"])
            steps = [e["step"] for e in evaluations if e["task"] == r["task"]]
            cells.append(StudyCell(r["cell_id"], r["lang"], r["family"], r["method"], int(r["layers"]),
                                   int(r["seed"]), path.parent, r["task"],
                                   int(r.get("selected_step", max(steps))), evaluations))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
            unreadable.append(f"{path.parent.name}: result.json unreadable ({type(err).__name__}: {err})"[:300])
    cells.sort(key=lambda c: (c.lang, c.family == BASELINE, c.family, c.layers, c.method, c.seed))
    return cells, unreadable


def partner(cell: StudyCell, cells: list[StudyCell], **change) -> StudyCell | None:
    """The cell like `cell` except for the fields in `change` (e.g. method="kd", or layers=12), if the study
    has it."""
    want = {k: getattr(cell, k) for k in ("lang", "family", "method", "layers", "seed")} | change
    return next((c for c in cells if all(getattr(c, k) == v for k, v in want.items())), None)


def cell_scores(cell: StudyCell, step: int | None = None, task: str | None = None) -> pd.DataFrame:
    """Per-query metrics of `cell` at `step` (its selected step by default) on `task` (its main task)."""
    step = cell.selected_step if step is None else step
    evaluation = cell.evaluation(step, task)
    name = Path(evaluation.get("per_query_file") or f"per_query/step{step}_{task or cell.task}.csv").name
    file = cell.path / "per_query" / name
    try:
        scores = pd.read_csv(file, dtype={"qid": str})
    except (OSError, ValueError) as err:
        raise UnreadableRecord(f"{cell.id}: per-query scores at step {step} unreadable ({err})"[:300]) from None
    if "qid" not in scores:
        raise UnreadableRecord(f"{cell.id}: {file.name} has no qid column")
    return scores


@dataclass(frozen=True)
class CellComparison:
    """Two cells on their common queries: A minus B."""

    metric: str
    test: PairedComparison  # bootstrap CI of mean(A - B) and the sign-flip p-value
    wins: int  # queries where A scores higher
    ties: int
    losses: int
    per_query: pd.DataFrame  # qid, a, b, diff (A - B)


def compare_cells(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> CellComparison:
    """Paired comparison of two cells' per-query scores (cell_scores) in `metric`, over their common queries."""
    for side, scores in (("A", a), ("B", b)):
        if metric not in scores:
            raise UnreadableRecord(f"cell {side} has no {metric} scores (it has {', '.join(scores.columns[1:])})")
    joined = a[["qid", metric]].merge(b[["qid", metric]], on="qid", suffixes=("_a", "_b"))
    if joined.empty:
        raise UnreadableRecord("the two cells share no query: compare cells of one language")
    joined = joined.rename(columns={f"{metric}_a": "a", f"{metric}_b": "b"})
    joined["diff"] = joined["a"] - joined["b"]
    test = paired_comparison(joined["a"].to_numpy(), joined["b"].to_numpy())
    diff = joined["diff"]
    return CellComparison(metric, test, int((diff > 0).sum()), int((diff == 0).sum()), int((diff < 0).sum()), joined)


def differing_queries(comparison: CellComparison, queries: dict[str, str], translations: dict[str, str],
                      qrels: dict[str, dict[str, int]], top_a: dict[str, list[str]] | None = None,
                      top_b: dict[str, list[str]] | None = None, k: int = 10, depth: int = 3) -> pd.DataFrame:
    """The `k` queries on which A and B differ most (largest |A - B|, ties by qid), with the query's text and
    English translation, its relevant documents and each side's top-`depth` documents (None where a side
    recorded none)."""
    joined = comparison.per_query.assign(size=comparison.per_query["diff"].abs())
    top = joined.sort_values(["size", "qid"], ascending=[False, True]).head(k)
    rows = []
    for r in top.itertuples():
        relevant = sorted(d for d, grade in qrels.get(r.qid, {}).items() if grade > 0)
        rows.append(dict(qid=r.qid, query=queries.get(r.qid, ""), english=translations.get(r.qid, ""), a=r.a, b=r.b,
                         diff=r.diff, relevant=relevant,
                         a_top=None if top_a is None else top_a.get(r.qid, [])[:depth],
                         b_top=None if top_b is None else top_b.get(r.qid, [])[:depth]))
    return pd.DataFrame(rows, columns=["qid", "query", "english", "a", "b", "diff", "relevant", "a_top", "b_top"])


def shared_range(matrices) -> tuple[float, float]:
    """One colour range for several heatmaps (plans or costs) shown side by side: min and max over all."""
    values = [np.asarray(m, dtype=float) for m in matrices if np.asarray(m).size]
    if not values:
        return 0.0, 1.0
    low, high = min(float(v.min()) for v in values), max(float(v.max()) for v in values)
    return (low, high) if high > low else (low, low + 1e-9)


def transport_cost(plan: np.ndarray, cost: np.ndarray) -> float:
    """<P, C>: what the OT objective minimises (Huang et al., 2023), for a recorded plan."""
    return float((np.asarray(plan, dtype=float) * np.asarray(cost, dtype=float)).sum())
