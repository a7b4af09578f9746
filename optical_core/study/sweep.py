"""The scaling study: a declarative grid of cells, a resumable sweep, and one tidy results table.

A cell is (language, student family, size, method, seed). Methods: `kd`, `ot` (trained), `untrained`
(the initialisation, the floor) and, once per language, the baselines of `evaluation.BASELINES`.
Every finished cell leaves `cells/<id>/result.json` (written last, atomically): a rerun skips it. A
failed cell leaves `failed.json` with its error; the sweep goes on and a rerun retries it.
"""

from __future__ import annotations

import json
import time
import tomllib
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from optical_core.data.bitext import training_bitext
from optical_core.distil.alignment import run_objective
from optical_core.distil.run import save_run
from optical_core.distil.train import initial_student, resolve_device, train
from optical_core.errors import SettingsError
from optical_core.evaluate.curves import CurveEvaluator, StepEvaluation
from optical_core.evaluate.scoring import score_baselines
from optical_core.models.encoders import Encoder, load_teacher
from optical_core.settings import (
    COLLAPSE_COSINE,
    LossConfig,
    StudentSpec,
    SweepConfig,
    TrainConfig,
    default_of,
    flat_settings,
    from_mapping,
    setting_field,
)
from optical_core.store.atomic import atomic_write_text
from optical_core.store.checkpoints import MANIFEST, MANIFEST_FORMAT, upgrade_format_1
from optical_core.store.locks import LockHeld, file_lock
from optical_core.study.grid import Cell, cell_status, grid_cells
from optical_core.study.results import write_results
from optical_core.store.provenance import (
    device_description,
    git_commit,
    library_versions,
    utc_now,
)


LOCKS = ".locks"  # one lock file per cell while a process runs it


def load_sweep_config(path: Path | str) -> SweepConfig:
    """A sweep config from TOML: every key is checked against the settings (unknown keys, types, ranges);
    the `[[grid]]` tables become `SweepConfig.grids`."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SettingsError(f"{path}: cannot read sweep config ({err})") from None
    raw.setdefault("name", path.stem)
    if "grids" in raw:
        raise SettingsError(f"{path}: write the grid blocks as [[grid]] tables")
    if "grid" not in raw:
        raise SettingsError(f"{path}: no [[grid]] table")
    raw["grids"] = raw.pop("grid")
    if "variant" in raw:
        raw["variants"] = raw.pop("variant")
    try:
        return from_mapping(SweepConfig, raw, "config")
    except SettingsError as err:
        raise SettingsError(f"{path}: {err}") from None


def train_config_for(cell: Cell, config: SweepConfig) -> TrainConfig:
    loss = config.loss_for(cell.method) if cell.method != "untrained" else LossConfig(method="kd")
    return TrainConfig(lang=cell.lang, student=StudentSpec(cell.family, cell.layers, cell.init_path), loss=loss,
                       budget=config.budget, seed=cell.seed, device=config.device, precision=config.precision)


def cell_settings(cell: Cell, config: SweepConfig) -> dict:
    """What a cell's numbers depend on, flat (`budget.lr`, `loss.reg`, ...): its TrainConfig without the
    device (a cell may run on a GPU and its neighbour on a CPU) and the tasks it was scored on. Recorded in
    result.json; a resumed sweep whose settings differ refuses to mix the two."""
    tasks = {"tasks.task": config.task, "tasks.eval": list(config.eval_tasks), "tasks.final": list(config.final_tasks),
             "tasks.eval_precision": config.eval_precision}
    if cell.family == "baseline":
        return tasks
    train = asdict(train_config_for(cell, config))
    train.pop("device")
    return json.loads(json.dumps(dict(flat_settings(train), **tasks)))  # tuples as lists, as they read back


def _recorded_settings(cell_dir: Path, record: dict) -> tuple[dict, bool] | None:
    """A finished cell's settings and whether they are complete (written by cell_settings, so a key it lacks did
    not exist yet); records older than that field fall back to the raw keys of the cell's manifest."""
    if "settings" in record:
        return record["settings"], True
    if not (cell_dir / MANIFEST).is_file():
        return None
    raw = json.loads((cell_dir / MANIFEST).read_text(encoding="utf-8"))
    if raw.get("format", 1) < MANIFEST_FORMAT:
        raw = upgrade_format_1(raw)
    config = dict(raw.get("config") or {})
    config.pop("device", None)
    if "precision" in raw:  # what the encoder actually ran in (format 1: bf16 on CUDA)
        config["precision"] = raw["precision"]
    if isinstance(config.get("student"), dict):
        config["student"] = {"head_init": "random", **config["student"]}  # as read_manifest fills it
    return json.loads(json.dumps(flat_settings(config))), False


def _setting_default(key: str):
    """The default of a flat settings key (`budget.lr`, `tasks.eval_precision`): the value a record written
    before the setting existed ran with."""
    if key.startswith("tasks."):
        return {"tasks.eval_precision": default_of(setting_field(SweepConfig, "eval_precision"))}.get(key)
    cls, value = TrainConfig, None
    for part in key.split("."):
        f = setting_field(cls, part)
        value = default_of(f)
        cls = type(value)
    return value


def check_resumable(config: SweepConfig, out_dir: Path) -> None:
    """Refuse to resume into `out_dir` when a finished cell was run with other settings than `config` gives it
    (a changed learning rate, budget, precision or task list would silently mix two studies in one table)."""
    for cell in grid_cells(config):
        cell_dir = out_dir / "cells" / cell.id
        if cell_status(out_dir, cell) != "done":
            continue
        found = _recorded_settings(cell_dir, json.loads((cell_dir / "result.json").read_text()))
        if found is None:
            continue
        recorded, complete = found
        if complete:  # a key the record lacks was added later: the cell ran with that setting's default
            recorded = {k: recorded.get(k, json.loads(json.dumps(_setting_default(k)))) for k in recorded.keys()
                        | cell_settings(cell, config).keys()}
        wanted = cell_settings(cell, config)
        differ = [k for k in wanted if k in recorded and recorded[k] != wanted[k]]
        if differ:
            k = differ[0]
            raise SettingsError(
                f"{out_dir}: cell {cell.id} was run with {k} = {recorded[k]!r}, the config now gives {wanted[k]!r}"
                f"{f' (and {len(differ) - 1} more)' if len(differ) > 1 else ''}; "
                "use another --out, or the settings it was run with")


def _write_evaluation(cell_dir: Path, cell: Cell, evaluation: StepEvaluation, diagnostics: dict) -> dict:
    name = f"per_query/step{evaluation.step}_{evaluation.task}.csv"
    (cell_dir / "per_query").mkdir(exist_ok=True)
    evaluation.scores.to_csv(cell_dir / name, index=False)
    return dict(step=evaluation.step, task=evaluation.task, n_queries=len(evaluation.scores),
                means=evaluation.scores.drop(columns="qid").mean().to_dict(),
                query_cosine=evaluation.query_cosine, collapsed=bool(evaluation.query_cosine > COLLAPSE_COSINE),
                per_query_file=f"cells/{cell.id}/{name}", seconds=round(evaluation.seconds, 2), **diagnostics)


def run_cell(cell: Cell, config: SweepConfig, out_dir: Path, teacher: Encoder,
             evaluator: CurveEvaluator | None = None) -> dict:
    """Run one cell: train it (trained methods), scoring it at every learning-curve step on the sweep's
    eval tasks and at its last step on `config.task` too; write per-query scores and result.json (last)."""
    started = time.perf_counter()
    cell_dir = out_dir / "cells" / cell.id
    cell_dir.mkdir(parents=True, exist_ok=True)
    tasks = tuple(dict.fromkeys((config.task,) + config.eval_tasks + config.final_tasks))
    evaluator = evaluator or CurveEvaluator(teacher, cell.lang, tasks, config.eval_precision)
    record = dict(asdict(cell), cell_id=cell.id, task=config.task, settings=cell_settings(cell, config))
    evaluations = []
    if cell.family == "baseline":
        for task in tasks:
            scores = score_baselines(teacher, evaluator.collections[task], which=(cell.method,))[cell.method]
            evaluations.append(_write_evaluation(cell_dir, cell, StepEvaluation(0, task, scores, float("nan"), 0.0),
                                                 {}))
    else:
        tc = train_config_for(cell, config)
        if cell.method == "untrained":
            student = initial_student(tc, teacher)
            encoder, params = student.encoder, student.params
            for task in tasks:
                evaluations.append(_write_evaluation(cell_dir, cell, evaluator.score(0, encoder, task), {}))
        else:
            last_step = tc.budget.steps_for(len(training_bitext(cell.lang, tc.budget.n_pairs)[0]))

            def on_eval(step, model):
                diagnostics = evaluator.diagnose(model, run_objective(tc, model, teacher), tc.budget.max_length)
                for task in tasks if step == last_step else config.eval_tasks:
                    evaluations.append(_write_evaluation(cell_dir, cell, evaluator.score(step, model, task),
                                                         diagnostics))

            result = train(tc, teacher=teacher, on_eval=on_eval)
            params = result.student.params
            save_run(result, "checkpoint", checkpoint_root=cell_dir if config.keep_checkpoints else None,
                     records_dir=cell_dir)
            record.update(train_steps=len(result.history), final_loss=result.history[-1].loss,
                          train_wall_time_s=round(result.wall_time_s, 2), eval_time_s=round(result.eval_time_s, 2),
                          precision=result.precision, n_pairs=len(result.bitext))
        record.update(params_total=params.total, params_non_embedding=params.non_embedding,
                      vocab_size=params.vocab_size)
    final = max(e["step"] for e in evaluations)
    headline = next(e for e in evaluations if e["step"] == final and e["task"] == config.task)
    record.update(evaluations=evaluations, n_queries=headline["n_queries"], means=headline["means"],
                  per_query_file=headline["per_query_file"], wall_time_s=round(time.perf_counter() - started, 2),
                  finished=utc_now())
    (cell_dir / "failed.json").unlink(missing_ok=True)
    atomic_write_text(cell_dir / "result.json", json.dumps(record, indent=2))
    return record


def run_sweep(config: SweepConfig, out_dir: Path | str, on_cell: Callable[[int, int, Cell, str], None] | None = None,
              executor: str = "local", retry_failed: bool = True) -> pd.DataFrame:
    """Run every cell not yet done (failed ones too when `retry_failed`), then write the results table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_resumable(config, out_dir)
    atomic_write_text(out_dir / "sweep.json", json.dumps(
        {"config": asdict(config), "versions": library_versions(), "git_commit": git_commit(),
         "device": device_description(resolve_device(config.device)), "started": utc_now()}, indent=2, default=str))
    cells = grid_cells(config)
    todo = [c for c in cells if cell_status(out_dir, c) == "missing"
            or (retry_failed and cell_status(out_dir, c) == "failed")]
    if executor == "submitit":
        _dispatch_submitit(todo, config, out_dir)
    else:
        teacher = load_teacher()
        for i, cell in enumerate(todo, start=1):
            if on_cell:
                on_cell(i, len(todo), cell, "start")
            try:
                with file_lock(out_dir / LOCKS / f"{cell.id}.lock", wait=False):
                    if cell_status(out_dir, cell) == "done":  # finished by another process meanwhile
                        status = "skipped: finished by another process"
                    else:
                        run_cell(cell, config, out_dir, teacher)
                        status = "done"
            except LockHeld as held:  # two sweeps on one folder share the cells instead of both running them
                status = f"skipped: being run by process {held.holder}"
            except Exception as err:  # one bad cell must not stop the study
                atomic_write_text(out_dir / "cells" / cell.id / "failed.json", json.dumps(
                    {"cell": asdict(cell), "error": f"{type(err).__name__}: {err}",
                     "traceback": traceback.format_exc(), "when": utc_now()}, indent=2))
                status = f"failed: {type(err).__name__}: {err}"
            if on_cell:
                on_cell(i, len(todo), cell, status)
    return write_results(out_dir, cells)


def _run_cell_job(cell: Cell, config: SweepConfig, out_dir: Path) -> str:
    with file_lock(out_dir / LOCKS / f"{cell.id}.lock", wait=False):
        if cell_status(out_dir, cell) != "done":
            run_cell(cell, config, out_dir, load_teacher())
    return cell.id


def _dispatch_submitit(cells: list[Cell], config: SweepConfig, out_dir: Path) -> None:
    """Cells are independent: hand them to submitit (Slurm, or local processes off-cluster)."""
    try:
        import submitit
    except ImportError:
        raise RuntimeError("executor 'submitit' needs `pip install submitit`") from None
    executor = submitit.AutoExecutor(folder=out_dir / "submitit")
    executor.update_parameters(timeout_min=120)
    jobs = executor.map_array(_run_cell_job, cells, [config] * len(cells), [out_dir] * len(cells))
    for job in jobs:
        try:
            job.result()
        except Exception:
            pass  # the cell's own failed.json (or its absence) tells; results are collected from disk


def with_budget(config: SweepConfig, **changes) -> SweepConfig:
    return replace(config, budget=replace(config.budget, **changes))
