"""A study with learning curves, written up from its numbers: the regime first, then the curves, each
method against its own start, the methods against KD, collapse, and what it cost.

Everything here is generated from a sweep directory's results.csv and per-query files; nothing is
typed in by hand, so the text cannot drift from the tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from optical_core.evaluate.significance import PerQueryStore, per_query_store
from optical_core.plots import export_figure, image_server, learning_curve_figure
from optical_core.settings import FULL_PRECISION, PRIMARY_METRIC
from optical_core.store.atomic import atomic_write_text
from optical_core.study.analysis import regime
from optical_core.study.curves import CurveTables, curve_tables
from optical_core.study.results import collect_results
from optical_core.study.summary import LEARNING_CURVES_FIGURE, sweep_budget, sweep_eval_steps, sweep_precision


def _markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}f") if len(frame) else "(none)"


def curve_pivot(curves: pd.DataFrame) -> pd.DataFrame:
    """Rows: student x method; columns: steps; cells: mean (and 'x' where collapsed)."""
    frame = curves.assign(student=curves.family + "-L" + curves.layers.astype(str),
                          cell=[f"{m:.3f}" + (" x" if c else "") for m, c in zip(curves["mean"], curves.collapsed)])
    return frame.pivot_table(index=["lang", "student", "method"], columns="step", values="cell",
                             aggfunc="first").reset_index()


def step_seconds(sweep_dir: Path) -> pd.DataFrame:
    """Measured training seconds per step (evaluation excluded) per cell, from the records."""
    rows = []
    for path in sorted((sweep_dir / "cells").glob("*/result.json")):
        r = json.loads(path.read_text())
        if r.get("train_steps"):
            train_s = r["train_wall_time_s"] - (r.get("eval_time_s") or 0.0)
            rows.append(dict(cell_id=r["cell_id"], student=f"{r['family']}-L{r['layers']}", method=r["method"],
                             precision=r.get("precision", FULL_PRECISION), steps=r["train_steps"],
                             train_s=train_s, eval_s=r.get("eval_time_s") or 0.0,
                             s_per_step=train_s / r["train_steps"],
                             eval_share=(r.get("eval_time_s") or 0.0) / r["train_wall_time_s"]))
    return pd.DataFrame(rows)


@image_server()
def write_curve_report(sweep_dir: Path | str, out: Path | str | None = None, metric: str = PRIMARY_METRIC,
                       compare_with: str = "kd", figures: bool = True, computed: dict[str, CurveTables] | None = None,
                       scores: PerQueryStore | None = None) -> str:
    """Tables, figures and a generated README section for a sweep with learning curves. `computed`: a task's
    tables already made from the same results table (the analysis makes its own task's), used as they are;
    `scores`: the sweep's per-query files, already read."""
    sweep_dir = Path(sweep_dir)
    scores = per_query_store(scores or sweep_dir)
    out = Path(out or sweep_dir / "analysis")
    # The sweep's table when it has one: the same rows the gains and verdict are computed from (cells/ can hold
    # records published after the table was written).
    table = sweep_dir / "results.csv"
    results = pd.read_csv(table) if table.is_file() else collect_results(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    config = sweep["config"]
    tasks = sorted(results.task.unique())
    sections = [f"## {config['name']}: learning curves ({metric})\n", config.get("description", ""), ""]
    budget = sweep_budget(sweep)
    sections.append(f"Budget: {budget['n_pairs']} pairs, batch {budget['batch_size']}, max length "
                    f"{budget['max_length']}, lr {budget['lr']:g} (head x{budget['head_lr_multiplier']:g}), "
                    f"up to {budget.get('max_steps') or 'all'} steps, evaluated at {sweep_eval_steps(sweep)}; "
                    f"precision {sweep_precision(sweep)}; git {sweep.get('git_commit', '?')[:12]}; "
                    f"{sweep.get('device', '')}.\n")
    for task in tasks:
        tables = (computed or {}).get(task)
        if tables is None or tables.compare_with != compare_with:
            tables = curve_tables(results, scores, metric, task, compare_with)
        curves, starts, diffs = tables.curves, tables.starts, tables.differences
        if curves.empty:
            continue
        sections += [f"### Task: {task}\n", regime(results, starts, metric, task), ""]
        start_table = (_markdown(starts[["lang", "family", "layers", "method", "final_step", "mean_start",
                                         "mean_final", "diff", "ci_low", "ci_high", "p_value", "n_seeds"]])
                       if len(starts) else "(no start to compare with)")
        curves.to_csv(out / f"curves_{task}.csv", index=False)
        starts.to_csv(out / f"versus_start_{task}.csv", index=False)
        baselines = results[(results.family == "baseline") & (results.metric == metric) & (results.task == task)]
        if figures:
            figure = learning_curve_figure(curves, dict(zip(baselines.method, baselines.value)),
                                           title=f"{config['name']}: {metric} on {task} along training")
            export_figure(figure, out / LEARNING_CURVES_FIGURE.format(task=task))
        sections += ["Mean over seeds x queries per step (x: collapsed, mean pairwise query cosine > 0.9):\n",
                     _markdown(curve_pivot(curves)), "",
                     "Each method at its last step minus its own step 0 (paired over queries, seeds averaged):\n",
                     start_table, ""]
        if len(diffs):
            diffs.to_csv(out / f"differences_{task}.csv", index=False)
            sections += [f"Each objective minus {compare_with} at each step (same seeds, batches and queries):\n",
                         _markdown(diffs[["lang", "family", "layers", "step", "a", "b", "mean_a", "mean_b", "diff",
                                          "ci_low", "ci_high", "p_value"]]), ""]
        diag = curves[curves.method != "untrained"][["lang", "family", "layers", "method", "step", "query_cosine",
                                                    "plan_sharpness", "identical_share", "collapsed"]]
        sections += ["Collapse and alignment along training (query cosine; plan sharpness = KL(P||ab^T)/log min(n,m); "
                     "identical-token share of the plan on 64 fixed dev pairs):\n", _markdown(diag), ""]
    times = step_seconds(sweep_dir)
    if len(times):
        times.to_csv(out / "step_seconds.csv", index=False)
        summary = times.groupby(["student", "precision"], as_index=False).agg(
            s_per_step=("s_per_step", "median"), eval_share=("eval_share", "median"), cells=("cell_id", "count"))
        sections += ["Measured cost (median over cells; training seconds per step without evaluation, and the "
                     "share of a cell's wall time spent evaluating):\n", _markdown(summary), ""]
    text = "\n".join(sections)
    atomic_write_text(out / "report.md", text)
    return text
