"""Reading a study: its answer (tables, slopes, verdict) as a `StudySummary`, from the analysis its publish
wrote (seconds) or, for a sweep without a current one, analysed afresh from its records (minutes). Nothing
here writes a file or imports torch; `study/publish.py` writes what this reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from optical_core.evaluate.significance import PerQueryStore, per_query_store
from optical_core.settings import FULL_PRECISION, PRIMARY_METRIC, Budget, EvalPlan, default_of, from_mapping, setting_field
from optical_core.store.locations import superseded_reason
from optical_core.study.analysis import (
    accuracy_table,
    gain_table,
    language_level_slopes,
    regime_summary,
    relative_slopes,
    scaling_slopes,
    slopes_along_training,
    slopes_frame,
    verdict,
)
from optical_core.study.curves import CurveTables, collapse_counts, curve_tables
from optical_core.study.results import final_results

# Every published study is analysed in its headline metric (analysis/) and in nDCG@10 (analysis/ndcg10/).
ANALYSED_METRICS = {PRIMARY_METRIC: ".", "ndcg@10": "ndcg10"}
SUMMARY_FILE = "summary.json"  # the verdict's parts and a hash of the results table they were computed from
OPTIONAL_TABLES = {"along": "slopes_along_training.csv", "collapses": "collapse_counts.csv"}
DIFFERENCE_FIGURE = "difference_vs_size_{family}"  # OT - KD vs size, one line per language: the answer's figure
LEARNING_CURVES_FIGURE = "learning_curves_{task}"  # each objective along training, per size, with the baselines
LANGUAGE_SLOPES = "language_slopes.csv"  # written by every publish since 2026-12-06; computed when absent


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
    curve_tables: CurveTables | None = None  # a fresh analysis' tables of its task, for the report (not published)
    language_slopes: pd.DataFrame | None = None  # the slope with languages as the unit, per family and quantity
    analysis_dir: Path | None = None  # where the published tables and figures were read from (None: analysed afresh)

    def published_figure(self, name: str) -> Path | None:
        """The PNG that the summary's publish drew beside its tables (e.g. DIFFERENCE_FIGURE), or None: the app
        shows it at once where the interactive figure needs seconds of plotly in the browser."""
        if self.analysis_dir is None:
            return None
        png = self.analysis_dir / f"{name}.png"
        return png if png.is_file() else None

    @property
    def provenance(self) -> str:
        return (f"{self.results.cell_id.nunique()} cells, {self.cell_hours * 60:.0f} min of cell wall time on "
                f"{', '.join(self.devices) or 'unknown device'}; git {self.sweep.get('git_commit', '?')[:12]}")


def budget_note(sweep: dict) -> str:
    b = sweep_budget(sweep)
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


def analyse_sweep(sweep_dir: Path, metric: str = PRIMARY_METRIC, n_boot: int = 1000,
                  scores: PerQueryStore | None = None) -> StudySummary:
    """The study's answer computed from its results table and per-query files (`scores`: those files, when
    another table has read them already)."""
    sweep_dir = Path(sweep_dir)
    scores = per_query_store(scores or sweep_dir)
    everything = pd.read_csv(sweep_dir / "results.csv")
    results = final_results(everything)
    sweep = _sweep_record(sweep_dir)
    accuracy = accuracy_table(results, scores, metric, n_boot)
    gains = gain_table(results, scores, metric, n_boot)
    tables, regime_text, along, collapses = None, "", None, None
    if "step" in everything and everything.step.nunique() > 1:
        tables = curve_tables(everything, scores, metric, sweep_task(sweep))
        regime_text = regime_summary(everything, tables.starts, metric, tables.task)
        along = _along_training(tables.differences)
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
    return StudySummary(metric, results, accuracy, gains, slopes, _headline(sweep_dir, regime_text, families),
                        families, sweep, baselines_of(results, metric), devices, cell_hours_of(results),
                        None if tables is None else tables.curves, regime_text, superseded_reason(sweep_dir), along,
                        collapses, tables, language_level_slopes(slopes))


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


def _along_training(differences: pd.DataFrame) -> pd.DataFrame:
    """Each trained objective minus KD (`CurveTables.differences`): its slope on size at every evaluated step,
    per objective, then per family."""
    frames = []
    for method in sorted(set(differences.a)) if len(differences) else []:
        for family, g in differences[differences.a == method].groupby("family"):
            frames.append(slopes_along_training(g).assign(family=family, a=method, b="kd"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def published_summary(study_dir: Path, metric: str = PRIMARY_METRIC) -> StudySummary | None:
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
    if not _well_formed(saved, metric) or saved["results_sha256"] != sha256_of(study_dir / "results.csv"):
        return None
    try:
        everything = pd.read_csv(study_dir / "results.csv")
        sweep = _sweep_record(study_dir)
        multi_step = "step" in everything and everything.step.nunique() > 1
        tables = {name: _read_table(out / f"{name}.csv") for name in ("accuracy", "gains", "slopes")}
        # along training, collapses and curves exist only for a study with several evaluated steps
        optional = {field: _read_table(out / name) if multi_step else None for field, name in OPTIONAL_TABLES.items()}
        curves = _read_table(out / f"curves_{sweep_task(sweep)}.csv") if multi_step else None
        language_slopes = _read_table(out / LANGUAGE_SLOPES)
    except (ValueError, OSError):  # a damaged table (pandas' parser errors are ValueErrors)
        return None
    if any(t is None for t in tables.values()) or (multi_step and curves is None):
        return None  # a table went missing since the publish
    results = final_results(everything)
    families, regime_text = saved["families"], saved["regime"]
    return StudySummary(metric, results, tables["accuracy"], tables["gains"], tables["slopes"],
                        _headline(study_dir, regime_text, families), families, sweep, baselines_of(results, metric),
                        saved["devices"], cell_hours_of(results), curves, regime_text, superseded_reason(study_dir),
                        optional["along"], optional["collapses"], language_slopes=language_slopes, analysis_dir=out)


def _well_formed(saved, metric: str) -> bool:
    def strings(values) -> bool:
        return all(isinstance(v, str) for v in values)

    return (isinstance(saved, dict) and saved.get("metric") == metric and isinstance(saved.get("results_sha256"), str)
            and isinstance(saved.get("regime"), str) and isinstance(saved.get("families"), dict)
            and strings(saved["families"]) and strings(saved["families"].values())
            and isinstance(saved.get("devices"), list) and strings(saved["devices"]))


def load_summary(study_dir: Path, metric: str = PRIMARY_METRIC) -> StudySummary:
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


# What the analysis reads of a sweep's sweep.json: its config's run template and evaluation plan.

def sweep_budget(sweep: dict) -> dict:
    return ((sweep.get("config") or {}).get("run") or {}).get("budget") or {}


def sweep_task(sweep: dict) -> str:
    plan = (sweep.get("config") or {}).get("eval") or {}
    return plan.get("task", default_of(setting_field(EvalPlan, "task")))


def sweep_precision(sweep: dict) -> str:
    return ((sweep.get("config") or {}).get("run") or {}).get("precision", FULL_PRECISION)


def sweep_eval_steps(sweep: dict) -> list[int] | None:
    return ((sweep.get("config") or {}).get("eval") or {}).get("steps")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
