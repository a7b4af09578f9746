"""A study cell's plan and top-document records, read back without torch (study/cell.py writes them).

A damaged, oversized or missing file is an `UnreadableRecord` with one line saying why, never a traceback.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PLANS = "plans.npz"
TOP_DOCUMENTS = "top_documents.npz"
TOKEN_SEPARATOR = "\x1f"
MAX_RECORD_BYTES = 16 * 2**20  # a record larger than this is not one this code wrote


class UnreadableRecord(Exception):
    """A cell's record that is missing, damaged or too large (the message says which)."""


@dataclass(frozen=True)
class PanelPlan:
    """One panel pair's transport plan and cost matrix at one recorded step."""

    step: int
    collection: str  # dev or headline
    qid: str
    lr_text: str
    en_text: str
    lr_tokens: list[str]
    en_tokens: list[str]
    plan: np.ndarray  # [n_lr, n_en], float32
    cost: np.ndarray


@dataclass(frozen=True)
class CellPlans:
    steps: list[int]
    pairs: list[tuple[str, str, str, str]]  # (collection, qid, lr_text, en_text)
    _arrays: dict

    def plan(self, step: int, pair: int) -> PanelPlan:
        if step not in self.steps:
            raise KeyError(f"no plans recorded at step {step} (recorded: {', '.join(map(str, self.steps))})")
        shapes = self._arrays["shapes"]
        sizes = shapes[:, 0] * shapes[:, 1]
        start = self.steps.index(step) * int(sizes.sum()) + int(sizes[:pair].sum())
        n, m = (int(x) for x in shapes[pair])
        plan = self._arrays["plans"][start : start + n * m].astype(np.float32).reshape(n, m)
        cost = self._arrays["costs"][start : start + n * m].astype(np.float32).reshape(n, m)
        collection, qid, lr_text, en_text = self.pairs[pair]
        return PanelPlan(step, collection, qid, lr_text, en_text,
                         str(self._arrays["lr_tokens"][pair]).split(TOKEN_SEPARATOR),
                         str(self._arrays["en_tokens"][pair]).split(TOKEN_SEPARATOR), plan, cost)


def _load(path: Path) -> dict:
    if not path.is_file():
        raise UnreadableRecord(f"{path.parent.name}: no {path.name} (cells run before plan records existed; "
                               "rebuild the cell to see them)")
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise UnreadableRecord(f"{path}: {path.stat().st_size / 2**20:.0f} MB, larger than any record this app writes")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UnreadableRecord(f"{path}: damaged ({type(err).__name__}: {err})") from None


def read_plans(cell_dir: Path | str) -> CellPlans:
    arrays = _load(Path(cell_dir) / PLANS)
    try:
        pairs = list(zip(*(arrays[k].tolist() for k in ("pair_collection", "pair_qid", "pair_lr_text", "pair_en_text"))))
        plans = CellPlans([int(s) for s in arrays["steps"]], pairs, arrays)
        expected = int((arrays["shapes"][:, 0] * arrays["shapes"][:, 1]).sum()) * len(plans.steps)
    except KeyError as err:
        raise UnreadableRecord(f"{cell_dir}/{PLANS}: damaged (no {err})") from None
    if arrays["plans"].size != expected or arrays["costs"].size != expected:
        raise UnreadableRecord(f"{cell_dir}/{PLANS}: damaged ({arrays['plans'].size} plan entries, {expected} expected)")
    return plans


def read_top_documents(cell_dir: Path | str, task: str = "headline") -> dict[str, list[str]]:
    """qid -> its top document ids (best first) at the cell's selected step."""
    arrays = _load(Path(cell_dir) / TOP_DOCUMENTS)
    if f"{task}_qids" not in arrays:
        raise UnreadableRecord(f"{Path(cell_dir).name}: no top documents recorded for task {task}")
    return {q: [d for d in row if d] for q, row in zip(arrays[f"{task}_qids"].tolist(), arrays[f"{task}_top"].tolist())}
