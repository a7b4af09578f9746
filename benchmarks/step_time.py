"""Step time of the training loop against the bare step, in one process and in N Dask workers; cells per minute.

Run: python benchmarks/step_time.py [--device cuda] [--precision bf16|float32] [--workers 1 8]
[--only steps|workers|cells]. Prints markdown tables; each row names its device, torch version, date and the
machine's load (1-minute load average at its start and end: the CPU may be shared).

- steps: me5-L1 and me5-L12, KD and OT (the study's settings: bf16 autocast, batch 32, max length 48, OT at
  reg 0.05 with 50 Sinkhorn iterations; --precision float32 where the CPU has no bf16 units). `loop`: a step
  of `train()` as a cell runs it (batch cut from the device tensors, loss, backward, gradient clipping, AdamW,
  schedule, logging), timed between two loss reads. `bare`: the same batches through forward, loss, backward and
  AdamW only, prepared beforehand. Both run twice, interleaved; medians over the timed stretches, in wall time
  and (CPU) in this process's CPU time, which on a shared CPU counts the step's own work and not its waits for
  other processes. loop / bare is the loop's overhead (target <= 1.2 on the CPU).
- workers: the loop's step time when N Dask workers (the sweep's engine) each train at once on this machine
  (several share one GPU); steps_per_s is all workers together.
- cells: a small grid (minilm-L1 swa, KD and OT, 2 seeds, 64 pairs) swept from scratch by each engine: in this
  process (workers 0) and by the local cluster of N workers; cells per minute include the cluster's start.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd
import torch

from optical_core.data.bitext import training_bitext
from optical_core.distil import train as training
from optical_core.distil.batches import RunBatches
from optical_core.distil.objective import build_objective
from optical_core.settings import Budget, EvalPlan, GridSpec, LossConfig, StudentSpec, SweepConfig, TrainConfig
from optical_core.study.engine import open_engine, worker_teacher
from optical_core.study.sweep import run_sweep

WARM = 1  # steps before timing starts on the CPU (on an accelerator: LOG_EVERY steps, one loss read)
TIMED = 3  # timed steps on the CPU (on an accelerator: 2 x LOG_EVERY)


def study_run(layers: int, method: str, device: str, steps: int, precision: str) -> TrainConfig:
    loss = LossConfig(method="ot", reg=0.05, sinkhorn_iters=50) if method == "ot" else LossConfig(method="kd")
    budget = Budget(n_pairs=32 * steps, epochs=1, batch_size=32, max_length=48, lr=2e-4, head_lr_multiplier=1.0)
    return TrainConfig(lang="swa", student=StudentSpec("me5", layers), loss=loss, budget=budget, device=device,
                       precision=precision)


def schedule(device: str) -> tuple[int, int, int]:
    """(first timed step, last step, steps between two loss reads): on an accelerator the loss is read every
    LOG_EVERY steps, so the loop is timed between reads (the host waits for the device there)."""
    every = 1 if device == "cpu" else training.LOG_EVERY
    return (WARM, WARM + TIMED, 1) if every == 1 else (every, 3 * every, every)


def clocks() -> tuple[float, float]:
    """Wall time and this process's CPU time (all threads): on a CPU shared with other work, CPU time counts the
    step's own work and not its waiting."""
    return time.perf_counter(), time.process_time()


def per_step(marks: dict[int, tuple[float, float]]) -> list[tuple[float, float]]:
    """(wall ms, CPU ms) per step, one pair per stretch between consecutive marked steps."""
    steps = sorted(marks)
    return [tuple(1e3 * (marks[b][k] - marks[a][k]) / (b - a) for k in (0, 1)) for a, b in zip(steps, steps[1:])]


def loop_ms(layers: int, method: str, device: str, precision: str) -> list[tuple[float, float]]:
    """(wall, CPU) milliseconds per step of train(), one pair per stretch between two loss reads."""
    first, last, every = schedule(device)
    marks: dict[int, tuple[float, float]] = {}

    def mark(log):
        if log.step >= first and (log.step - first) % every == 0:
            marks.setdefault(log.step, clocks())

    training.train(study_run(layers, method, device, last, precision), teacher=worker_teacher(), on_step=mark)
    return per_step(marks)


def bare_ms(layers: int, method: str, device: str, precision: str) -> list[tuple[float, float]]:
    """(wall, CPU) milliseconds per step of forward, loss, backward and AdamW alone, on the loop's own batches (one
    pair per stretch of as many steps as the loop's)."""
    first, last, every = schedule(device)
    config = study_run(layers, method, device, last, precision)
    teacher = worker_teacher().to(device)
    bitext, _ = training_bitext("swa", config.budget.n_pairs)
    student, targets = training._start(config, teacher, bitext, device, None)
    model = student.encoder.train()
    objective = build_objective(config.loss, model, teacher, bitext)
    runs = RunBatches.build(model.tokenize(bitext.source, 48).to(device),
                            targets.collate(list(range(len(bitext))), device), model.tokenizer.padding_side)
    plan = [index for _, index in training.training_plan(model.tokenizer, bitext, config.budget, config.seed)]
    batches = [runs.batch(index, torch.tensor(index, device=device)) for index in plan]
    head = list(model.projection.parameters()) if model.projection is not None else []
    optimizer, _ = training.make_optimizer(list(model.backbone.parameters()), head, config.budget, last)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    marks = {}
    for step, (batch, teacher_batch) in enumerate(batches, start=1):
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            tokens = model.token_vectors(batch)
        loss = objective(tokens.float(), batch, teacher_batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= first and (step - first) % every == 0:
            synchronise(device)
            marks[step] = clocks()
    return per_step(marks)


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def machine(device: str) -> dict:
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu: {platform.machine()}, " \
        f"{os.cpu_count()} cores"
    return dict(device=name, torch=torch.__version__, date=date.today().isoformat())


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def step_rows(device: str, precision: str, sizes: list[int]) -> list[dict]:
    """Each size and objective: the loop's and the bare step's time, min and median over the timed stretches (on a
    shared CPU the min is the least disturbed), loop and bare run twice, interleaved."""
    rows = []
    for layers in sizes:
        for method in ("kd", "ot"):
            before, loop, bare = load(), [], []
            for _ in range(2):
                loop += loop_ms(layers, method, device, precision)
                bare += bare_ms(layers, method, device, precision)
            (loop_wall, loop_cpu), (bare_wall, bare_cpu) = zip(*loop), zip(*bare)
            row = dict(machine(device), student=f"me5-L{layers}", method=method, precision=precision,
                       threads=torch.get_num_threads(), loop_ms=statistics.median(loop_wall),
                       bare_ms=statistics.median(bare_wall), loop_over_bare=statistics.median(loop_wall)
                       / statistics.median(bare_wall))
            if device == "cpu":  # on a shared CPU the wall times wait for other work; CPU time does not
                row.update(loop_cpu_ms=statistics.median(loop_cpu), bare_cpu_ms=statistics.median(bare_cpu),
                           loop_over_bare_cpu=statistics.median(loop_cpu) / statistics.median(bare_cpu))
            rows.append(dict(row, load=f"{before} -> {load()}"))
            print(rows[-1], file=sys.stderr, flush=True)  # progress: a row can take minutes on a CPU
    return rows


def worker_rows(device: str, precision: str, sizes: list[int], counts: list[int]) -> list[dict]:
    rows = []
    for n in counts:
        with open_engine(workers=n) as engine:
            for layers in sizes:
                for method in ("kd", "ot"):
                    before = load()
                    futures = [engine.executor.submit(loop_ms, layers, method, device, precision) for _ in range(n)]
                    mean = statistics.mean(statistics.median(wall for wall, _ in f.result()) for f in futures)
                    rows.append(dict(machine(device), student=f"me5-L{layers}", method=method, precision=precision,
                                     workers=n, step_ms_per_worker=mean, steps_per_s=1e3 * n / mean,
                                     load=f"{before} -> {load()}"))
                    print(rows[-1], file=sys.stderr, flush=True)
    return rows


def cell_rows(device: str, counts: list[int]) -> list[dict]:
    grid = GridSpec(family="minilm", sizes=(1,), langs=("swa",), seeds=(0, 1), methods=("kd", "ot"))
    run = TrainConfig(device=device, budget=Budget(n_pairs=64, batch_size=16, max_length=32, lr=1e-4))
    config = SweepConfig(name="bench", grids=(grid,), run=run, eval=EvalPlan(steps=(0,)), baselines=(),
                         keep_checkpoints=False)
    rows = []
    for n in [0] + counts:
        with tempfile.TemporaryDirectory() as out:
            before, started = load(), time.perf_counter()
            table = run_sweep(replace(config, workers=n), Path(out))
            minutes = (time.perf_counter() - started) / 60
        cells = table["cell_id"].nunique()
        engine = "this process" if n == 0 else f"{n} local worker" + ("s" if n > 1 else "")
        rows.append(dict(machine(device), engine=engine, cells=cells, wall_min=minutes, cells_per_min=cells / minutes,
                         load=f"{before} -> {load()}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "float32"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 12], help="me5 student sizes (layers)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts to compare (default: 1 and one per 2 cores, at least 2)")
    parser.add_argument("--only", choices=["steps", "workers", "cells"], default=None)
    args = parser.parse_args()
    counts = args.workers or sorted({1, max(2, (os.cpu_count() or 2) // 2)})
    print(f"# Step time and cells per minute ({platform.node() or 'this machine'}, load {load()})\n")
    if args.only in (None, "steps"):
        print(f"## Training step: the loop vs the bare forward + backward + AdamW (batch 32 x 48, {args.precision})\n")
        print(pd.DataFrame(step_rows(args.device, args.precision, args.sizes)).round(2).to_markdown(index=False), "\n")
    if args.only in (None, "workers"):
        print("## The loop's step in N Dask workers training at once (one machine)\n")
        rows = worker_rows(args.device, args.precision, args.sizes, counts)
        print(pd.DataFrame(rows).round(2).to_markdown(index=False), "\n")
    if args.only in (None, "cells"):
        print("## Cells per minute, small grid (minilm-L1 swa, KD and OT, 2 seeds, 64 pairs, eval at 0 and the end)\n")
        print(pd.DataFrame(cell_rows(args.device, counts)).round(2).to_markdown(index=False), "\n")


if __name__ == "__main__":
    main()
