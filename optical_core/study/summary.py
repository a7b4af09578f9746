"""The study's answer from a finished sweep directory: tables, slopes, verdict and figures."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from optical_core.plots import accuracy_figure, export_figure, gain_figure, size_effect_figure
from optical_core.settings import Budget, from_mapping
from optical_core.store.atomic import atomic_write_text
from optical_core.store.locations import superseded_reason
from optical_core.study.analysis import (
    accuracy_table,
    gain_table,
    relative_slopes,
    scaling_slopes,
    slopes_along_training,
    slopes_frame,
    verdict,
    where_kd_learned,
)
from optical_core.study.curves import collapse_counts, curve_table, method_difference_table, versus_start_table
from optical_core.study.report import regime_summary, write_curve_report
from optical_core.study.results import final_results


@dataclass
class StudySummary:
    metric: str
    results: pd.DataFrame
    accuracy: pd.DataFrame
    gains: pd.DataFrame
    slopes: pd.DataFrame  # at the last step: absolute OT - KD (every cell), relative gain (where KD learned)
    verdict: str
    families: dict[str, str]  # family -> its verdict
    sweep: dict  # sweep.json: config, versions, commit
    baselines: pd.DataFrame
    devices: list[str]  # as recorded in the trained cells' manifests
    cell_hours: float  # sum of the cells' wall times
    curves: pd.DataFrame | None = None  # learning curves on the sweep's task (studies with several steps)
    regime: str = ""  # did the students learn: the sentence that comes before any trend
    superseded: str | None = None  # why the study no longer answers the question, if it does not
    along: pd.DataFrame | None = None  # each objective minus KD: the slope on size at every evaluated step
    collapses: pd.DataFrame | None = None  # collapsed cells per family, size and objective

    @property
    def provenance(self) -> str:
        return (f"{self.results.cell_id.nunique()} cells, {self.cell_hours * 60:.0f} min of cell wall time on "
                f"{', '.join(self.devices) or 'unknown device'}; git {self.sweep.get('git_commit', '?')[:12]}")


def budget_note(sweep: dict) -> str:
    b = (sweep.get("config") or {}).get("budget") or {}
    if not b:
        return ""
    steps = from_mapping(Budget, b, "budget").steps
    return (f"Budget: {b['n_pairs']} bitext pairs x {b['epochs']} epochs ({steps} steps of batch {b['batch_size']}, "
            f"max length {b['max_length']}) per student.")


def completeness(sweep_dir: Path) -> str:
    """A sentence for a sweep that has not finished (its status.json counts fewer done cells than the grid)."""
    file = Path(sweep_dir) / "status.json"
    status = json.loads(file.read_text()) if file.is_file() else {}
    done, cells = status.get("done", 0), status.get("cells", 0)
    if done >= cells:
        return ""
    return f"In progress: {done} of {cells} cells have finished, and every number here covers only those."


def analyse_sweep(sweep_dir: Path, metric: str = "mrr@10", export_to: Path | None = None,
                  n_boot: int = 1000, figures: bool = True) -> StudySummary:
    sweep_dir = Path(sweep_dir)
    everything = pd.read_csv(sweep_dir / "results.csv")
    results = final_results(everything)
    sweep = _sweep_record(sweep_dir)
    accuracy = accuracy_table(results, sweep_dir, metric, n_boot)
    gains = gain_table(results, sweep_dir, metric, n_boot)
    task = _task(sweep)
    curves, regime_text, along, collapses = None, "", None, None
    if "step" in everything and everything.step.nunique() > 1:
        curves = curve_table(everything, sweep_dir, metric, task)
        regime_text = regime_summary(everything, versus_start_table(everything, sweep_dir, metric, task), metric, task)
        along = _along_training(everything, sweep_dir, metric, task)
        collapses = collapse_counts(everything)
    note = budget_note(sweep)
    families, slope_frames = {}, []
    for family, g in gains.groupby("family"):
        absolute, relative = scaling_slopes(g, "abs_diff"), relative_slopes(g)
        families[family] = verdict(absolute, g, metric, family, note, relative, _of_family(along, family),
                                   _of_family(collapses, family))
        slope_frames += [slopes_frame(absolute + relative).assign(family=family)]
    slopes = pd.concat(slope_frames, ignore_index=True) if slope_frames else pd.DataFrame()
    devices = sorted({json.loads(p.read_text()).get("device", "?") for p in sweep_dir.glob("cells/*/manifest.json")})
    summary = StudySummary(metric, results, accuracy, gains, slopes, _headline(sweep_dir, regime_text, families),
                           families, sweep, baselines_of(results, metric), devices, cell_hours_of(results), curves,
                           regime_text, superseded_reason(sweep_dir), along, collapses)
    if export_to is not None:
        export_summary(summary, Path(export_to), figures, results_file=sweep_dir / "results.csv")
    return summary


def _headline(sweep_dir: Path, regime_text: str, families: dict[str, str]) -> str:
    """Completeness, then the regime, then the main family's answer (me5, the student ladder of the study)."""
    main_family = "me5" if "me5" in families else next(iter(families), "")
    answer = families.get(main_family, "No finished OT/KD pairs yet.")
    return f"{completeness(sweep_dir)} {regime_text} {answer}".strip()


def baselines_of(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    return results[(results.family == "baseline") & (results.metric == metric)][["lang", "method", "value"]]


def cell_hours_of(results: pd.DataFrame) -> float:
    return float(results.drop_duplicates("cell_id").wall_time_s.sum() / 3600) if "wall_time_s" in results else 0.0


def _of_family(table: pd.DataFrame | None, family: str) -> pd.DataFrame | None:
    return table[table.family == family] if table is not None and len(table) else None


def _along_training(everything: pd.DataFrame, sweep_dir: Path, metric: str, task: str) -> pd.DataFrame:
    """Each trained objective minus KD: its slope on size at every evaluated step, per family."""
    trained = sorted(set(everything[everything.family != "baseline"].method) - {"untrained", "kd"})
    frames = []
    for method in trained:
        differences = method_difference_table(everything, sweep_dir, method, "kd", metric, task)
        for family, g in differences.groupby("family") if len(differences) else []:
            frames.append(slopes_along_training(g).assign(family=family, a=method, b="kd"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


SUMMARY_FILE = "summary.json"  # the verdict's parts and a hash of the results table they were computed from
OPTIONAL_TABLES = {"along": "slopes_along_training.csv", "collapses": "collapse_counts.csv"}


def export_summary(summary: StudySummary, out: Path, figures: bool = True, results_file: Path | None = None) -> None:
    """Tables, verdict and figures; with `results_file` (the study's results.csv) also summary.json, from which
    `published_summary` rebuilds this summary without recomputing a bootstrap."""
    out.mkdir(parents=True, exist_ok=True)
    summary.accuracy.to_csv(out / "accuracy.csv", index=False)
    summary.gains.to_csv(out / "gains.csv", index=False)
    summary.slopes.to_csv(out / "slopes.csv", index=False)
    for field, name in OPTIONAL_TABLES.items():
        if getattr(summary, field) is not None:
            getattr(summary, field).to_csv(out / name, index=False)
    if summary.curves is not None:
        summary.curves.to_csv(out / f"curves_{_task(summary.sweep)}.csv", index=False)
    if results_file is not None:
        atomic_write_text(out / SUMMARY_FILE, json.dumps({
            "metric": summary.metric, "results_sha256": _sha256(results_file), "regime": summary.regime,
            "families": summary.families, "devices": summary.devices}, indent=1) + "\n")
    # The regime (did the students learn?) comes before any trend, as in the app.
    paragraphs = ([summary.superseded] if summary.superseded else []) + ([summary.regime] if summary.regime else [])
    paragraphs += [f"**{f}**: {v}" for f, v in summary.families.items()]
    atomic_write_text(out / "verdict.md", "\n\n".join(paragraphs) + "\n")
    if figures:
        export_figures(summary, out)


def published_summary(study_dir: Path, metric: str = "mrr@10") -> StudySummary | None:
    """The summary that `write_analysis` exported under <study>/analysis for this metric, read back from its
    tables; None when there is none, or when the study's results table changed since (analyse it afresh)."""
    study_dir = Path(study_dir)
    if metric not in ANALYSED_METRICS:
        return None
    out = study_dir / "analysis" / ANALYSED_METRICS[metric]
    file = out / SUMMARY_FILE
    if not file.is_file() or not (study_dir / "results.csv").is_file():
        return None
    try:
        saved = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError):
        return None  # a damaged file: the fresh analysis is the safe answer
    if not _well_formed(saved, metric) or saved["results_sha256"] != _sha256(study_dir / "results.csv"):
        return None
    try:
        everything = pd.read_csv(study_dir / "results.csv")
        sweep = _sweep_record(study_dir)
        multi_step = "step" in everything and everything.step.nunique() > 1
        tables = {name: _read_table(out / f"{name}.csv") for name in ("accuracy", "gains", "slopes")}
        # along training, collapses and curves exist only for a study with several evaluated steps
        optional = {field: _read_table(out / name) if multi_step else None for field, name in OPTIONAL_TABLES.items()}
        curves = _read_table(out / f"curves_{_task(sweep)}.csv") if multi_step else None
    except (ValueError, OSError):  # a damaged table (pandas' parser errors are ValueErrors)
        return None
    if any(t is None for t in tables.values()) or (multi_step and curves is None):
        return None  # a table went missing since the publish
    results = final_results(everything)
    families, regime_text = saved["families"], saved["regime"]
    return StudySummary(metric, results, tables["accuracy"], tables["gains"], tables["slopes"],
                        _headline(study_dir, regime_text, families), families, sweep, baselines_of(results, metric),
                        saved["devices"], cell_hours_of(results), curves, regime_text, superseded_reason(study_dir),
                        optional["along"], optional["collapses"])


def _well_formed(saved, metric: str) -> bool:
    def strings(values) -> bool:
        return all(isinstance(v, str) for v in values)

    return (isinstance(saved, dict) and saved.get("metric") == metric and isinstance(saved.get("results_sha256"), str)
            and isinstance(saved.get("regime"), str) and isinstance(saved.get("families"), dict)
            and strings(saved["families"]) and strings(saved["families"].values())
            and isinstance(saved.get("devices"), list) and strings(saved["devices"]))


def load_summary(study_dir: Path, metric: str = "mrr@10") -> StudySummary:
    """The published summary when it is current, else a fresh analysis (minutes for a large study)."""
    return published_summary(study_dir, metric) or analyse_sweep(study_dir, metric)


def _read_table(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:  # an empty table (no columns) is written as a bare newline
        return pd.DataFrame()


def _sweep_record(sweep_dir: Path) -> dict:
    """sweep.json (config, versions, commit); {} for a sweep that has none."""
    file = Path(sweep_dir) / "sweep.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def _task(sweep: dict) -> str:
    return (sweep.get("config") or {}).get("task", "headline")


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_figures(summary: StudySummary, out: Path) -> None:
    metric = summary.metric
    for family in summary.gains.family.unique():
        gains = summary.gains[summary.gains.family == family]
        export_figure(gain_figure(gains, y="abs_diff", title=f"{family}: OT - KD in {metric} vs student size"),
                      out / f"difference_vs_size_{family}")
        learned, _ = where_kd_learned(gains)  # a relative gain only where KD moved off its start
        export_figure(gain_figure(learned, title=f"{family}: OT-vs-KD gain in {metric} vs student size, where KD "
                                                 f"beats its start ({len(learned)} of {len(gains)} cells)"),
                      out / f"gain_vs_size_{family}")
        export_figure(accuracy_figure(summary.accuracy[summary.accuracy.family == family],
                                      title=f"{family}: {metric} vs student size"),
                      out / f"accuracy_vs_size_{family}")
        if summary.along is not None and len(summary.along):
            export_figure(size_effect_figure(summary.along[summary.along.family == family],
                                             f"{family}: slope of (objective - KD) in {metric} on log10(size), "
                                             "by step"),
                          out / f"size_effect_{family}")


# Every published study is analysed in its headline metric (analysis/) and in nDCG@10 (analysis/ndcg10/).
ANALYSED_METRICS = {"mrr@10": ".", "ndcg@10": "ndcg10"}


def write_analysis(study_dir: Path, out: Path) -> StudySummary:
    """Tables, verdict and (for a study with learning curves) the curve report per analysed metric, figures for
    the headline metric (the app draws any metric's); returns the headline metric's summary."""
    summaries = {}
    for metric, folder in ANALYSED_METRICS.items():
        figures = metric == "mrr@10"
        summaries[metric] = analyse_sweep(study_dir, metric, export_to=out / folder, figures=figures)
        if summaries[metric].curves is not None:
            write_curve_report(study_dir, out / folder, metric=metric, figures=figures)
    return summaries["mrr@10"]


PUBLISHED_FILES = ("result.json", "per_query.csv", "manifest.json", "train_log.jsonl", "failed.json")


def publish_sweep(sweep_dir: Path, dest: Path) -> None:
    """Copy a sweep's tables and per-cell records (never its checkpoints) so that they can be committed."""
    import shutil

    sweep_dir, dest = Path(sweep_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("results.csv", "results.parquet", "sweep.json", "status.json"):
        if (sweep_dir / name).is_file():
            shutil.copy2(sweep_dir / name, dest / name)
    for cell in sorted((sweep_dir / "cells").iterdir()):
        if not ((cell / "result.json").is_file() or (cell / "failed.json").is_file()):
            continue  # still running (a sweep published in chunks): its partial files stay behind
        files = [cell / name for name in PUBLISHED_FILES] + sorted((cell / "per_query").glob("*.csv"))
        for file in files:
            if file.is_file():
                target = dest / "cells" / cell.name / file.relative_to(cell)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
