"""A study with learning curves, written up from its numbers: the regime first, then the curves, each
method against its own start, the methods against KD, collapse, and what it cost.

Everything here is generated from a sweep directory's results.csv and per-query files; nothing is
typed in by hand, so the text cannot drift from the tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from optical_core.plots import export_figure, learning_curve_figure
from optical_core.store.atomic import atomic_write_text
from optical_core.study.curves import curve_table, method_difference_table, versus_start_table
from optical_core.study.results import collect_results


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


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
                             precision=r.get("precision", "float32"), steps=r["train_steps"],
                             train_s=train_s, eval_s=r.get("eval_time_s") or 0.0,
                             s_per_step=train_s / r["train_steps"],
                             eval_share=(r.get("eval_time_s") or 0.0) / r["train_wall_time_s"]))
    return pd.DataFrame(rows)


def regime(results: pd.DataFrame, starts: pd.DataFrame, metric: str, task: str) -> str:
    """The first sentence of any verdict: did the students learn, and how far from the baselines are they."""
    if starts.empty:
        return "No trained cell has finished yet."
    final = results[results.final & (results.metric == metric) & (results.task == task)]
    baselines = final[final.family == "baseline"].groupby("method").value.mean()
    parts = []
    languages = starts.lang.nunique()
    for (lang, family, layers), g in starts.groupby(["lang", "family", "layers"]):
        kd = g[g.method == "kd"]
        learned = [f"{r.method} {r.diff:+.3f} (p={r.p_value:.2g})" for r in g.itertuples()]
        start = g.mean_start.iloc[0]
        kd_text = ""
        if len(kd):
            k = kd.iloc[0]
            verdict = ("improves on" if k["diff"] > 0 and k.p_value < 0.05 else
                       "falls below" if k["diff"] < 0 and k.p_value < 0.05 else "does not move off")
            kd_text = f"KD {verdict} its start"
        name = f"{lang} {family}-L{layers}" if languages > 1 else f"{family}-L{layers}"
        parts.append(f"{name} starts at {start:.3f}; {kd_text}; change from start at the last step: "
                     + ", ".join(learned))
    base = ", ".join(f"{name} {value:.3f}" for name, value in baselines.items())
    return (f"Regime ({task}, {metric}): " + "; ".join(parts) + "." + (f" Baselines on the same queries: {base}."
                                                                        if base else ""))


def regime_summary(results: pd.DataFrame, starts: pd.DataFrame, metric: str, task: str) -> str:
    """The regime in a few lines for a grid of any size: in how many size-language cells each objective moved
    off its start, each size's start and last step (means over languages and seeds), and the baselines on the
    same queries. `regime` gives the same per cell, with p-values."""
    if starts.empty:
        return "No trained cell has finished yet."
    final = results[results.final & (results.metric == metric) & (results.task == task)]
    # baselines on the trained students' languages only (a partial grid may have scored more)
    final = final[(final.family == "baseline") & final.lang.isin(set(starts.lang))]
    baselines = final.groupby("method").value.mean()
    languages = starts.lang.nunique()
    counts = []
    for family, f in starts.groupby("family", sort=True):
        parts = []
        for method, g in f.groupby("method", sort=True):
            up = int(((g["diff"] > 0) & (g.p_value < 0.05)).sum())
            down = int(((g["diff"] < 0) & (g.p_value < 0.05)).sum())
            parts.append(f"{method} in {up} of {len(g)}" + (f" (and falls below it in {down})" if down else ""))
        counts.append(f"{family} " + ", ".join(parts))
    sizes = []
    for (family, layers), g in starts.groupby(["family", "layers"], sort=True):
        start = g.groupby("lang").mean_start.first().mean()
        finals = g.groupby("method").mean_final.mean()
        sizes.append(f"{family}-L{layers} {start:.3f} -> " + ", ".join(f"{m} {v:.3f}" for m, v in finals.items()))
    where = f"{languages} language{'s' if languages > 1 else ''}"
    text = (f"Regime ({task}, {metric}): each objective beats its start (paired over queries, p < 0.05) in "
            "this many size-language cells: " + "; ".join(counts) + f". Start -> last step, mean over {where}: "
            + "; ".join(sizes) + ".")
    if len(baselines):
        text += " Baselines on the same queries: " + ", ".join(f"{n} {v:.3f}" for n, v in baselines.items()) + "."
    return text


def write_curve_report(sweep_dir: Path | str, out: Path | str | None = None, metric: str = "mrr@10",
                       compare_with: str = "kd", figures: bool = True) -> str:
    """Tables, figures and a generated README section for a sweep with learning curves."""
    sweep_dir = Path(sweep_dir)
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
    budget = config["budget"]
    sections.append(f"Budget: {budget['n_pairs']} pairs, batch {budget['batch_size']}, max length "
                    f"{budget['max_length']}, lr {budget['lr']:g} (head x{budget['head_lr_multiplier']:g}), "
                    f"up to {budget.get('max_steps') or 'all'} steps, evaluated at {budget.get('eval_steps')}; "
                    f"precision {config.get('precision', 'float32')}; git {sweep.get('git_commit', '?')[:12]}; "
                    f"{sweep.get('device', '')}.\n")
    trained_methods = sorted(set(results.method) - {"untrained"} - set(results[results.family == "baseline"].method))
    for task in tasks:
        curves = curve_table(results, sweep_dir, metric, task)
        if curves.empty:
            continue
        starts = versus_start_table(results, sweep_dir, metric, task)
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
            export_figure(figure, out / f"learning_curves_{task}")
        sections += ["Mean over seeds x queries per step (x: collapsed, mean pairwise query cosine > 0.9):\n",
                     _markdown(curve_pivot(curves)), "",
                     "Each method at its last step minus its own step 0 (paired over queries, seeds averaged):\n",
                     start_table, ""]
        diffs = [method_difference_table(results, sweep_dir, m, compare_with, metric, task)
                 for m in trained_methods if m != compare_with]
        diffs = pd.concat([d for d in diffs if len(d)] or [pd.DataFrame()], ignore_index=True)
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


def dev_choice_table(sweep_dirs: list[Path | str], metric: str = "mrr@10") -> pd.DataFrame:
    """Every trained dev cell's curve on the dev collection, with the settings that differ between dev sweeps
    (learning rate, head multiplier, precision): the numbers a choice is made from."""
    rows = []
    for sweep_dir in map(Path, sweep_dirs):
        config = json.loads((sweep_dir / "sweep.json").read_text())["config"]
        results = collect_results(sweep_dir)
        dev = results[(results.task == "dev") & (results.metric == metric) & (results.family != "baseline")]
        for r in dev.itertuples():
            rows.append(dict(sweep=sweep_dir.name, student=f"{r.family}-L{r.layers}", method=r.method, seed=r.seed,
                             lr=config["budget"]["lr"], head_lr_multiplier=config["budget"]["head_lr_multiplier"],
                             precision=config.get("precision", "float32"), step=r.step, dev=r.value,
                             query_cosine=r.query_cosine))
    return pd.DataFrame(rows)
