"""One OT option changed at a time: each variant's accuracy next to the reference sweep's cells.

A variant is a sweep directory (configs/ablation/*.toml) holding OT cells only; the reference sweep
supplies the KD, default-OT and untrained cells of the same student and language. Every row reports the
settings it was trained with and how far its transport plans were from their marginals at the last
step: an OT variant whose plans did not converge is not an OT result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optical_core.store.checkpoints import MANIFEST, read_manifest, read_train_log
from optical_core.study.analysis import accuracy_table
from optical_core.study.results import collect_results, final_results

OT_SETTINGS = ("cost", "reg", "reg_scale", "ot_form", "marginals", "plan_gradient", "kd_weight", "sinkhorn_iters")


def _final_marginal_errors(sweep_dir: Path, cell_ids: list[str]) -> list[float]:
    errors = []
    for cell in cell_ids:
        log = read_train_log(sweep_dir / "cells" / cell)
        if log and log[-1].get("marginal_error") is not None:
            errors.append(float(log[-1]["marginal_error"]))
    return errors


def _ot_settings(sweep_dir: Path, cell_ids: list[str]) -> str:
    for cell in cell_ids:
        cell_dir = sweep_dir / "cells" / cell
        if (cell_dir / MANIFEST).is_file():
            loss = read_manifest(cell_dir).loss
            return ", ".join(f"{k}={getattr(loss, k)}" for k in OT_SETTINGS)
    return ""


def _rows(sweep_dir: Path, label: str, family: str, layers: int, lang: str, methods: tuple[str, ...],
          metric: str) -> list[dict]:
    results = final_results(collect_results(sweep_dir))
    if results.empty:
        raise ValueError(f"{sweep_dir} has no finished cells")
    chosen = results[(results.family == family) & (results.layers == layers) & (results.lang == lang)
                     & results.method.isin(methods)]
    if chosen.empty:
        raise ValueError(f"{sweep_dir} has no {'/'.join(methods)} cell for {family}-L{layers} {lang}")
    table = accuracy_table(chosen, sweep_dir, metric)
    rows = []
    for record in table.itertuples():
        cells = chosen[(chosen.method == record.method) & (chosen.metric == metric)]
        per_seed = cells.sort_values("seed")["value"].tolist()
        errors = _final_marginal_errors(sweep_dir, cells["cell_id"].tolist())
        rows.append(dict(variant=label if record.method != "untrained" else "untrained", method=record.method,
                         settings=_ot_settings(sweep_dir, cells["cell_id"].tolist()) if record.method == "ot" else "",
                         seeds=record.n_seeds, mean=record.mean, ci_low=record.ci_low, ci_high=record.ci_high,
                         per_seed=" ".join(f"{v:.3f}" for v in per_seed),
                         final_marginal_error=float(np.median(errors)) if errors else np.nan,
                         sweep=str(sweep_dir)))
    return rows


def ablation_table(reference: Path | str, variants: list[Path | str], family: str = "me5", layers: int = 2,
                   lang: str = "swa", metric: str = "mrr@10") -> pd.DataFrame:
    """KD, default OT and untrained rows from `reference`, then one OT row per variant sweep.

    `final_marginal_error`: median over seeds of max |P1 - a|, |P^T 1 - b| at the last training step
    (a row of the plan carries ~1/length of mass, ~0.04 here: errors near that mean no transport plan).
    """
    reference = Path(reference)
    rows = _rows(reference, "reference", family, layers, lang, ("kd", "ot", "untrained"), metric)
    for variant in map(Path, variants):
        rows += _rows(variant, variant.name, family, layers, lang, ("ot",), metric)
    table = pd.DataFrame(rows)
    table.insert(0, "metric", metric)
    return table
