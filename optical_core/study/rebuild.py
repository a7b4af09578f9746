"""A study cell retrained from its record: its settings, seed and data hashes, into a checkpoint that every
page can use, with its metrics checked against the record.

On the device and precision the cell ran with, a rebuild must reproduce the record exactly (same seed, same
batches, deterministic kernels); where it does, the cell's folder gains the plan and top-document records it
was written without (the record describes the same run). Elsewhere the difference is reported beside the
seed-to-seed difference of the same configuration, and nothing is added to the study.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from optical_core.data.bitext import training_bitext
from optical_core.distil.train import resolve_device
from optical_core.errors import DataError, SettingsError
from optical_core.evaluate.significance import paired_comparison
from optical_core.models.encoders import Encoder, load_teacher
from optical_core.settings import (
    PRIMARY_METRIC,
    EvalPlan,
    SweepConfig,
    TrainConfig,
    Variant,
    from_mapping,
)
from optical_core.store.atomic import atomic_write_bytes
from optical_core.store.provenance import device_description, utc_now
from optical_core.study.cell import RESULT, run_cell
from optical_core.study.grid import Cell
from optical_core.study.records import PLANS, TOP_DOCUMENTS


REBUILD_CHECK = "rebuild.json"  # in the rebuilt checkpoint: how it compares to its record


@dataclass
class Rebuilt:
    cell_id: str
    checkpoint: Path
    same_setup: bool  # the record ran on this device kind with this precision
    identical: bool  # every recorded per-query file reproduced exactly
    comparison: pd.DataFrame  # per recorded (step, task): recorded and rebuilt means, their paired difference
    seed_difference: float | None  # |seed a - seed b| of the same configuration's main score, when the study has both
    added_records: list[str]  # files added to the study's cell folder (only when identical)
    setup: str  # where and how it was rebuilt, beside where and how it ran

    def summary(self) -> str:
        main = self.comparison.iloc[-1]
        where = ("on the device and precision it ran with" if self.same_setup else
                 f"on another device or precision ({self.setup})")
        verdict = ("reproduced exactly: every per-query score is equal" if self.identical else
                   f"differs: {PRIMARY_METRIC} {main.recorded:.4f} recorded vs {main.rebuilt:.4f} rebuilt "
                   f"(difference {main['diff']:+.4f}, paired p = {main.p_value:.3g} over {int(main.n_queries)} queries)")
        noise = (f"; the two seeds of this configuration differ by {self.seed_difference:.4f}"
                 if self.seed_difference is not None and not self.identical else "")
        added = f"; added {', '.join(self.added_records)} to the study's cell" if self.added_records else ""
        return f"{self.cell_id} rebuilt {where}: {verdict}{noise}{added}. Checkpoint: {self.checkpoint}"


def _unflatten(flat: dict) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        *tables, name = key.split(".")
        target = nested
        for t in tables:
            target = target.setdefault(t, {})
        target[name] = value
    return nested


def cell_record(study_dir: Path | str, cell_id: str) -> dict:
    file = Path(study_dir) / "cells" / cell_id / RESULT
    if not file.is_file():
        raise DataError(f"{study_dir}: no finished cell {cell_id!r} (no {RESULT})")
    record = json.loads(file.read_text())
    if record.get("family") == "baseline" or record.get("method") == "untrained":
        raise SettingsError(f"{cell_id}: only trained cells are rebuilt (a baseline or a start has no weights to keep)")
    if "settings" not in record:
        raise SettingsError(f"{cell_id}: its record predates recorded settings; it cannot be rebuilt from it")
    return record


def sweep_of(record: dict) -> tuple[Cell, SweepConfig]:
    """The one-cell sweep whose run is the recorded one (settings, seed; the device is this machine's)."""
    nested = _unflatten(record["settings"])
    plan = from_mapping(EvalPlan, nested.pop("eval", {}), "eval")
    run = from_mapping(TrainConfig, nested, "settings")
    cell = Cell(record["lang"], record["family"], record["method"], record["layers"], record["seed"],
                record.get("init_path"))
    variants = () if cell.method in ("kd", "ot") else (Variant(cell.method, run.loss),)
    ot = run.loss if cell.method == "ot" else SweepConfig().ot
    config = SweepConfig(name="rebuild", run=run, eval=plan, ot=ot, variants=variants, baselines=(),
                         keep_checkpoints=True)
    return cell, config


def _check_data(study_dir: Path, cell: Cell, run: TrainConfig) -> None:
    manifest = Path(study_dir) / "cells" / cell.id / "manifest.json"
    if not manifest.is_file():
        return
    recorded = json.loads(manifest.read_text()).get("data", {}).get("bitext_sha256")
    current = training_bitext(run.lang, run.budget.n_pairs)[0].sha256()
    if recorded and recorded != current:
        raise DataError(f"{cell.id}: the training bitext differs from the one it ran on (sha256 {current[:12]} here, "
                        f"{recorded[:12]} recorded): a rebuild would not be the same run")


def _compare(study_dir: Path, record: dict, files: dict[str, bytes]) -> tuple[pd.DataFrame, bool]:
    rows, identical = [], True
    for e in record["evaluations"]:
        name = e["per_query_file"].split("/", 2)[2]  # cells/<id>/per_query/... -> per_query/...
        recorded_file = Path(study_dir) / e["per_query_file"]
        if name not in files or not recorded_file.is_file():
            continue
        identical &= recorded_file.read_bytes() == files[name]
        a = pd.read_csv(recorded_file).sort_values("qid")[PRIMARY_METRIC].to_numpy()
        b = pd.read_csv(io.BytesIO(files[name])).sort_values("qid")[PRIMARY_METRIC].to_numpy()
        test = paired_comparison(b, a)
        rows.append(dict(step=e["step"], task=e["task"], recorded=a.mean(), rebuilt=b.mean(), diff=b.mean() - a.mean(),
                         p_value=test.p_value, n_queries=len(a)))
    if not rows:
        raise DataError(f"{record['cell_id']}: no recorded per-query file to check the rebuild against")
    main = [r for r in rows if r["task"] == record["task"]]
    table = pd.DataFrame([r for r in rows if r not in main] + main)  # the main task's last row closes the table
    return table, identical


def _seed_difference(study_dir: Path, record: dict) -> float | None:
    """|main score of this cell - that of its sibling seed| in the study, the scale of seed noise here."""
    seeds = sorted(Path(study_dir, "cells").glob(record["cell_id"].rsplit("-s", 1)[0] + "-s*/" + RESULT))
    means = [json.loads(p.read_text())["means"][PRIMARY_METRIC] for p in seeds]
    return abs(means[0] - means[1]) if len(means) >= 2 else None


def _recorded_device(study_dir: Path, cell_id: str) -> str:
    """The device the cell's manifest says it ran on ("" without a manifest)."""
    manifest = Path(study_dir) / "cells" / cell_id / "manifest.json"
    return json.loads(manifest.read_text()).get("device", "") if manifest.is_file() else ""


def rebuild_cell(study_dir: Path | str, cell_id: str, checkpoints_root: Path | str,
                 on_step: Callable | None = None, teacher: Encoder | None = None,
                 precision: str | None = None) -> Rebuilt:
    """Retrain `cell_id` of `study_dir` from its record into `<checkpoints_root>/<cell_id>` and check it.
    `precision` replaces the recorded one for training and evaluation (e.g. float32 on a CPU without native bf16,
    where bf16 is emulated and several times slower): the rebuild is then compared as another setup."""
    study_dir, root = Path(study_dir), Path(checkpoints_root)
    record = cell_record(study_dir, cell_id)
    cell, config = sweep_of(record)
    if precision is not None:
        config = replace(config, run=replace(config.run, precision=precision),
                         eval=replace(config.eval, precision=precision))
    _check_data(study_dir, cell, config.run)
    files = run_cell(cell, config, teacher or load_teacher(), on_step=on_step)
    comparison, identical = _compare(study_dir, record, files)
    here, there = device_description(resolve_device(config.run.device)), _recorded_device(study_dir, cell_id)
    recorded_precision = config.run.precision == record["settings"]["precision"]
    same = here == there and recorded_precision
    setup = (f"rebuilt on {here} at {config.run.precision}; ran on {there or '?'} at "
             f"{record['settings']['precision']}")
    checkpoint = _write_checkpoint(root, cell_id, files)
    added = []
    if identical and recorded_precision:  # the same run: its missing records belong to the study's cell
        for name in (PLANS, TOP_DOCUMENTS):
            target = study_dir / "cells" / cell_id / name
            if name in files and not target.exists():
                atomic_write_bytes(target, files[name])
                added.append(name)
    rebuilt = Rebuilt(cell_id, checkpoint, same, identical, comparison, _seed_difference(study_dir, record), added,
                      setup)
    write_check(rebuilt, checkpoint / REBUILD_CHECK)
    return rebuilt


def write_check(rebuilt: Rebuilt, path: Path) -> None:
    """The check against the record, kept beside the rebuilt weights (and citable: a generated file)."""
    atomic_write_bytes(path, (json.dumps({
        "cell_id": rebuilt.cell_id, "summary": rebuilt.summary(), "setup": rebuilt.setup,
        "same_setup": rebuilt.same_setup, "identical": rebuilt.identical, "seed_difference": rebuilt.seed_difference,
        "added_records": rebuilt.added_records, "comparison": rebuilt.comparison.to_dict(orient="records"),
        "written": utc_now()}, indent=1) + "\n").encode())


def _write_checkpoint(root: Path, name: str, files: dict[str, bytes]) -> Path:
    """The run's checkpoint folder under `root/name` (replacing an older rebuild), its records beside it."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    for path, content in files.items():
        relative = path.removeprefix("checkpoint/") if path.startswith("checkpoint/") else f"records/{path}"
        (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp / relative).write_bytes(content)
    manifest = json.loads((tmp / "manifest.json").read_text())
    (tmp / "manifest.json").write_text(json.dumps(dict(manifest, name=name), indent=2))
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target
