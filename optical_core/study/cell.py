"""One cell of a study, run: its settings, its training and evaluation, and the records it leaves.

`run_cell` returns the cell's records as files in memory (relative path -> bytes) and writes nothing: a
worker process or a remote Dask worker hands them back, and only `write_cell` touches the study's folder
(result.json last, so a cell with a result.json is complete). Records per cell:
  result.json          what the cell is (settings, parameters, timings) and every evaluation's means
  per_query/stepS_T.csv  per-query metrics of task T at step S (the paired statistics read these)
  manifest.json, train_log.jsonl   the run's provenance and loss curve (trained cells)
  plans.npz            transport plans and cost matrices of a fixed panel of pairs at the plan steps
  top_documents.npz    each query's top-10 document ids on the main task at the selected step
  checkpoint/          the weights, when the sweep keeps them
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

from optical_core.distil.run import save_run
from optical_core.distil.train import initial_student, train
from optical_core.evaluate.evaluator import PlanRecord, RunEvaluator, StepEvaluation
from optical_core.evaluate.scoring import score_baselines
from optical_core.models.encoders import Encoder
from optical_core.settings import COLLAPSE_COSINE, LossConfig, SweepConfig, TrainConfig, flat_settings
from optical_core.store.atomic import atomic_write_bytes
from optical_core.store.provenance import utc_now
from optical_core.study.grid import Cell
from optical_core.study.records import PLANS, TOKEN_SEPARATOR, TOP_DOCUMENTS

RESULT = "result.json"


def train_config_for(cell: Cell, config: SweepConfig) -> TrainConfig:
    """The sweep's run template with what the grid sets: language, student family and size, seed, objective."""
    loss = config.loss_for(cell.method) if cell.method != "untrained" else LossConfig(method="kd")
    student = replace(config.run.student, family=cell.family, layers=cell.layers, init_path=cell.init_path)
    return replace(config.run, lang=cell.lang, student=student, loss=loss, seed=cell.seed)


def cell_settings(cell: Cell, config: SweepConfig) -> dict:
    """What a cell's numbers depend on, flat (`budget.lr`, `loss.reg`, `eval.tasks`, ...): its TrainConfig
    without the device (a cell may run on a GPU and its neighbour on a CPU) and its evaluation plan. Recorded
    in result.json; a resumed sweep whose settings differ refuses to mix the two."""
    plan = flat_settings({"eval": asdict(config.eval)})
    if cell.family == "baseline":
        return json.loads(json.dumps(plan))
    run = asdict(train_config_for(cell, config))
    run.pop("device")
    return json.loads(json.dumps(dict(flat_settings(run), **plan)))  # tuples as lists, as they read back


def _evaluation_files(cell: Cell, evaluation: StepEvaluation) -> tuple[dict, dict[str, bytes]]:
    name = f"per_query/step{evaluation.step}_{evaluation.task}.csv"
    row = dict(step=evaluation.step, task=evaluation.task, n_queries=len(evaluation.scores),
               means=evaluation.scores.drop(columns="qid").mean().to_dict(), query_cosine=evaluation.query_cosine,
               collapsed=bool(evaluation.query_cosine > COLLAPSE_COSINE), per_query_file=f"cells/{cell.id}/{name}",
               seconds=round(evaluation.seconds, 2), **evaluation.diagnostics)
    return row, {name: evaluation.scores.to_csv(index=False).encode()}


def plans_file(plans: list[PlanRecord], panel) -> bytes:
    """The panel's plans and cost matrices as one compressed npz: a pair's matrices at every recorded step,
    flattened in (step, pair) order into one float16 array each; shapes, steps, texts and tokens beside them
    (unicode arrays: the file loads without pickle). study/records.py reads it."""
    steps = sorted({p.step for p in plans})
    first = {p.pair: p for p in plans if p.step == steps[0]}
    ordered = sorted(plans, key=lambda p: (p.step, p.pair))
    arrays = {"steps": np.array(steps, dtype=np.int64),
              "pair_collection": np.array([p.collection for p in panel]), "pair_qid": np.array([p.qid for p in panel]),
              "pair_lr_text": np.array([p.lr_text for p in panel]), "pair_en_text": np.array([p.en_text for p in panel]),
              "lr_tokens": np.array([TOKEN_SEPARATOR.join(first[i].lr_tokens) for i in range(len(panel))]),
              "en_tokens": np.array([TOKEN_SEPARATOR.join(first[i].en_tokens) for i in range(len(panel))]),
              "shapes": np.array([first[i].plan.shape for i in range(len(panel))], dtype=np.int64),
              "plans": np.concatenate([p.plan.ravel() for p in ordered]).astype(np.float16),
              "costs": np.concatenate([p.cost.ravel() for p in ordered]).astype(np.float16)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def top_documents_file(evaluations: list[StepEvaluation], step: int, tasks: tuple[str, ...]) -> bytes:
    """The top document ids of each query (sorted by qid) of `tasks` at `step`, as one compressed npz."""
    arrays = {}
    for e in evaluations:
        if e.step == step and e.task in tasks and e.top_documents:
            qids = sorted(e.top_documents)
            depth = max(len(v) for v in e.top_documents.values())
            arrays[f"{e.task}_qids"] = np.array(qids)
            arrays[f"{e.task}_top"] = np.array([e.top_documents[q] + [""] * (depth - len(e.top_documents[q]))
                                                for q in qids])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def run_cell(cell: Cell, config: SweepConfig, teacher: Encoder, on_step: Callable | None = None) -> dict[str, bytes]:
    """Run one cell: a baseline, the untrained start, or a trained student scored along training as the sweep's
    EvalPlan says. Returns its records (path relative to the cell's folder -> content); writes nothing.
    `on_step(StepLog)` follows the training (progress)."""
    started = time.perf_counter()
    files: dict[str, bytes] = {}
    record = dict(asdict(cell), cell_id=cell.id, task=config.eval.task, settings=cell_settings(cell, config))
    if cell.family == "baseline":
        evaluator = RunEvaluator(teacher, cell.lang, config.eval, record_plans=False)
        evaluations = [StepEvaluation(0, task, score_baselines(teacher, collection, which=(cell.method,))[cell.method],
                                      float("nan"), 0.0) for task, collection in evaluator.collections.items()]
        selected = 0
    else:
        tc = train_config_for(cell, config)
        evaluator = RunEvaluator(teacher, cell.lang, config.eval, tc.budget.max_length,
                                 record_plans=cell.method != "untrained")  # a trained run's step 0 has its plans
        if cell.method == "untrained":
            student = initial_student(tc, teacher)
            params = student.params
            evaluator.records = [evaluator.score(0, student.encoder, task) for task in config.eval.all_tasks]
            selected = 0
        else:
            result = train(tc, teacher=teacher, evaluator=evaluator, on_step=on_step)
            params = result.student.params
            selected = result.selected_step
            with tempfile.TemporaryDirectory() as tmp:  # the run's records (and weights) as save_run writes them
                save_run(result, "checkpoint", checkpoint_root=tmp if config.keep_checkpoints else None,
                         records_dir=tmp)
                files.update({str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()})
            record.update(train_steps=len(result.history), final_loss=result.history[-1].loss,
                          selected_step=selected, stopped_early=result.stopped_early,
                          train_wall_time_s=round(result.wall_time_s, 2), eval_time_s=round(result.eval_time_s, 2),
                          precision=result.precision, n_pairs=len(result.bitext))
        record.update(params_total=params.total, params_non_embedding=params.non_embedding,
                      vocab_size=params.vocab_size)
        evaluations = evaluator.records
        if evaluator.plans:
            files[PLANS] = plans_file(evaluator.plans, evaluator.panel)
    if cell.family != "baseline":  # the main task's only: a 275-cell study's records stay a few MB
        files[TOP_DOCUMENTS] = top_documents_file(evaluations, selected, (config.eval.task,))
    rows = []
    for evaluation in evaluations:
        row, written = _evaluation_files(cell, evaluation)
        rows.append(row)
        files.update(written)
    main = next(r for r in rows if r["step"] == selected and r["task"] == config.eval.task)
    record.update(evaluations=rows, n_queries=main["n_queries"], means=main["means"],
                  per_query_file=main["per_query_file"], wall_time_s=round(time.perf_counter() - started, 2),
                  finished=utc_now())
    files[RESULT] = json.dumps(record, indent=2).encode()
    return files


def write_cell(out_dir: Path, cell: Cell, files: dict[str, bytes]) -> None:
    """Write a cell's records atomically, result.json last (a cell with one is complete)."""
    cell_dir = Path(out_dir) / "cells" / cell.id
    for name, content in sorted(files.items(), key=lambda item: item[0] == RESULT):
        (cell_dir / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cell_dir / name, content)
    (cell_dir / "failed.json").unlink(missing_ok=True)
