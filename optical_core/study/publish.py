"""Publishing a study: copy a sweep's records (never its checkpoints) into the repository, then write its
analysis (tables, verdict, summary.json, figures, the curve report) for `study/summary.py` to read back.

One pass per analysed metric: every per-query file is read once (one `PerQueryStore` for the whole publish)
and every table is computed once (the report takes the analysis' tables of the sweep's own task).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from optical_core.evaluate.significance import PerQueryStore
from optical_core.plots import accuracy_figure, export_figure, gain_figure, image_server, size_effect_figure
from optical_core.settings import PRIMARY_METRIC
from optical_core.store.atomic import atomic_write_text
from optical_core.study.analysis import where_kd_learned
from optical_core.study.records import PLANS, TOP_DOCUMENTS
from optical_core.study.report import write_curve_report
from optical_core.study.summary import (
    ANALYSED_METRICS,
    DIFFERENCE_FIGURE,
    LANGUAGE_SLOPES,
    OPTIONAL_TABLES,
    SUMMARY_FILE,
    StudySummary,
    analyse_sweep,
    sha256_of,
    sweep_task,
)

# A cell's records that are committed: never its checkpoint. The plan and top-document records are what the
# Alignment and Compare pages open without weights.
PUBLISHED_FILES = ("result.json", "per_query.csv", "manifest.json", "train_log.jsonl", "failed.json", PLANS,
                   TOP_DOCUMENTS)


def publish_sweep(sweep_dir: Path, dest: Path) -> None:
    """Copy a sweep's tables and per-cell records (never its checkpoints) so that they can be committed."""
    sweep_dir, dest = Path(sweep_dir), Path(dest)
    if dest.resolve() == sweep_dir.resolve():
        return  # publishing a study where it lies (its analysis anew): nothing to copy
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


@image_server()
def write_analysis(study_dir: Path, out: Path) -> StudySummary:
    """Tables, verdict and (for a study with learning curves) the curve report per analysed metric, figures for
    the headline metric (the app draws any metric's); returns the headline metric's summary."""
    study_dir, out = Path(study_dir), Path(out)
    scores = PerQueryStore(study_dir, tuple(ANALYSED_METRICS))  # only the columns the analysis reads
    summaries = {}
    for metric, folder in ANALYSED_METRICS.items():
        figures = metric == PRIMARY_METRIC
        summary = export_analysis(study_dir, out / folder, metric, figures=figures, scores=scores)
        if summary.curve_tables is not None:
            write_curve_report(study_dir, out / folder, metric=metric, figures=figures, scores=scores,
                               computed={summary.curve_tables.task: summary.curve_tables})
        summaries[metric] = summary
    return summaries[PRIMARY_METRIC]


@image_server()
def export_analysis(sweep_dir: Path, out: Path, metric: str = PRIMARY_METRIC, n_boot: int = 1000,
                    figures: bool = True, scores: PerQueryStore | None = None) -> StudySummary:
    """Analyse a sweep and export its summary (with summary.json, so that the app reads it back)."""
    summary = analyse_sweep(sweep_dir, metric, n_boot, scores)
    export_summary(summary, Path(out), figures, results_file=Path(sweep_dir) / "results.csv")
    return summary


def export_summary(summary: StudySummary, out: Path, figures: bool = True, results_file: Path | None = None) -> None:
    """Tables, verdict and figures; with `results_file` (the study's results.csv) also summary.json, from which
    `published_summary` rebuilds this summary without recomputing a bootstrap."""
    out.mkdir(parents=True, exist_ok=True)
    summary.accuracy.to_csv(out / "accuracy.csv", index=False)
    summary.gains.to_csv(out / "gains.csv", index=False)
    summary.slopes.to_csv(out / "slopes.csv", index=False)
    if summary.language_slopes is not None:
        summary.language_slopes.to_csv(out / LANGUAGE_SLOPES, index=False)
    for field, name in OPTIONAL_TABLES.items():
        if getattr(summary, field) is not None:
            getattr(summary, field).to_csv(out / name, index=False)
    if summary.curves is not None:
        summary.curves.to_csv(out / f"curves_{sweep_task(summary.sweep)}.csv", index=False)
    if results_file is not None:
        atomic_write_text(out / SUMMARY_FILE, json.dumps({
            "metric": summary.metric, "results_sha256": sha256_of(results_file), "regime": summary.regime,
            "families": summary.families, "devices": summary.devices}, indent=1) + "\n")
    # The regime (did the students learn?) comes before any trend, as in the app.
    paragraphs = ([summary.superseded] if summary.superseded else []) + ([summary.regime] if summary.regime else [])
    paragraphs += [f"**{f}**: {v}" for f, v in summary.families.items()]
    atomic_write_text(out / "verdict.md", "\n\n".join(paragraphs) + "\n")
    if figures:
        export_figures(summary, out)


def export_figures(summary: StudySummary, out: Path) -> None:
    metric = summary.metric
    for family in summary.gains.family.unique():
        gains = summary.gains[summary.gains.family == family]
        export_figure(gain_figure(gains, y="abs_diff", title=f"{family}: OT - KD in {metric} vs student size"),
                      out / DIFFERENCE_FIGURE.format(family=family))
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
