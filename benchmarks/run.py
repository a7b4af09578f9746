"""Benchmarks: the cost of OT over KD, batched Sinkhorn vs a POT loop, evaluation throughput, memory.

Run: python benchmarks/run.py [--quick]. Prints markdown tables; every ratio is measured in this run,
on this machine. On a GPU it also reports tokens/s and model FLOPs utilisation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from optical_core.data.bitext import training_bitext
from optical_core.distil.losses import KDLoss, OTLoss
from optical_core.distil.ot import (
    choose_solver,
    cost_matrix,
    log_sinkhorn,
    marginal_error,
    marginals,
    transport_plan,
)
from optical_core.distil.train import resolve_device, teacher_targets
from optical_core.models.encoders import load_teacher
from optical_core.models.students import build_student
from optical_core.settings import DOC_MAX_LENGTH, QUERY_MAX_LENGTH, LossConfig, StudentSpec

ROOT = Path(__file__).resolve().parent.parent

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def timed(fn, repeat: int, device: str) -> float:
    """Median seconds of `fn()` over `repeat` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def step_breakdown(layers: int, batch: int, max_length: int, device: str, repeat: int) -> dict:
    teacher = load_teacher().to(device)
    bitext, _ = training_bitext("swa", 512)
    student = build_student(StudentSpec("me5", layers), 384, bitext.source + bitext.target).encoder.to(device).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    index = list(range(batch))
    src = [bitext.source[i] for i in index]
    s_batch = student.tokenize(src, max_length).to(device)
    t_batch = teacher.tokenize([bitext.target[i] for i in index], max_length).to(device)
    targets = teacher_targets(teacher, bitext.target[:batch], max_length, device)
    t_tok, t_mask, _, t_emb = targets.collate(index, device)
    ot_config = LossConfig(method="ot", sinkhorn_iters=50)
    kd, ot = KDLoss(), OTLoss(ot_config)

    def teacher_forward():
        with torch.no_grad():
            teacher.token_vectors(t_batch)

    def step(method):
        def run():
            s_tok = student.token_vectors(s_batch)
            loss = kd(s_tok, s_batch.attention_mask, t_emb) if method == "kd" else \
                ot(s_tok, s_batch.content_mask, t_tok, t_mask).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return run

    s_tok = student.token_vectors(s_batch).detach()
    C = cost_matrix(s_tok, t_tok, "cosine")
    a, b = marginals(s_batch.content_mask), marginals(t_mask)
    def student_forward_backward():
        student.token_vectors(s_batch).sum().backward()
        optimizer.zero_grad()

    kd_s, ot_s = timed(step("kd"), repeat, device), timed(step("ot"), repeat, device)
    return dict(student=f"me5-L{layers}", batch=batch, max_length=max_length, device=device,
                teacher_forward_ms=1e3 * timed(teacher_forward, repeat, device),
                student_fwd_bwd_ms=1e3 * timed(student_forward_backward, repeat, device),
                kd_step_ms=1e3 * kd_s, ot_step_ms=1e3 * ot_s,
                sinkhorn_ms=1e3 * timed(lambda: transport_plan(C, a, b, ot_config.reg, ot_config.sinkhorn_iters,
                                                                   ot_config.sinkhorn_tol), repeat, device),
                sinkhorn_solver=choose_solver(C, ot_config.reg),
                ot_over_kd=ot_s / kd_s,
                tokens_per_s=float(s_batch.attention_mask.sum()) / ot_s,
                params=sum(p.numel() for p in student.parameters()))


def precision_step(layers: int, batch: int, max_length: int, device: str, repeat: int) -> dict:
    """A KD training step (student forward + backward + AdamW) with the encoder in float32 vs bf16 autocast,
    on the same batch (the losses and the optimiser stay float32, as in training)."""
    teacher = load_teacher().to(device)
    bitext, _ = training_bitext("swa", 512)
    student = build_student(StudentSpec("me5", layers), 384, bitext.source + bitext.target).encoder.to(device).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    s_batch = student.tokenize(bitext.source[:batch], max_length).to(device)
    t_emb = teacher_targets(teacher, bitext.target[:batch], max_length, device).embeddings.to(device)
    kd = KDLoss()
    device_type = "cuda" if device.startswith("cuda") else "cpu"

    def step(bf16: bool):
        def run():
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
                tokens = student.token_vectors(s_batch)
            loss = kd(tokens.float(), s_batch.attention_mask, t_emb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return run

    fp32, bf16 = timed(step(False), repeat, device), timed(step(True), repeat, device)
    queries = bitext.source[:256]
    student.eval()

    def encode(bf16: bool):
        def run():
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
                student.encode(queries, max_length=64, device=device)
        return run

    enc32, enc16 = timed(encode(False), repeat, device), timed(encode(True), repeat, device)
    return dict(student=f"me5-L{layers}", batch=batch, max_length=max_length, device=device,
                step_fp32_ms=1e3 * fp32, step_bf16_ms=1e3 * bf16, step_speedup=fp32 / bf16,
                encode_fp32_q_per_s=len(queries) / enc32, encode_bf16_q_per_s=len(queries) / enc16,
                encode_speedup=enc32 / enc16)


# Self-time op groups of a training step: what bf16 speeds up (matmuls) and what it does not.
OP_GROUPS = {"linear matmuls (mm, addmm)": ("aten::mm", "aten::addmm"), "attention bmm": ("aten::bmm",),
             "dropout masks (bernoulli_)": ("aten::bernoulli_",), "dtype casts (copy_)": ("aten::copy_",)}


def precision_profile(layers: int, batch: int, max_length: int, steps: int = 3) -> list[dict]:
    """Where a CPU KD step's time goes in float32 and in bf16 autocast (torch.profiler self time, ms per step).
    The matmul row's ratio is the ceiling of the whole step's speed-up: every other group costs about the same
    in both precisions."""
    from torch.profiler import ProfilerActivity, profile

    teacher = load_teacher()
    bitext, _ = training_bitext("swa", 512)
    student = build_student(StudentSpec("me5", layers), 384, bitext.source + bitext.target).encoder.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    s_batch = student.tokenize(bitext.source[:batch], max_length)
    t_emb = teacher_targets(teacher, bitext.target[:batch], max_length, "cpu").embeddings
    kd = KDLoss()

    def per_step_ms(bf16: bool) -> dict[str, float]:
        def run():
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16):
                tokens = student.token_vectors(s_batch)
            loss = kd(tokens.float(), s_batch.attention_mask, t_emb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        run()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                run()
        self_ms = {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}
        groups = {name: sum(self_ms.get(op, 0.0) for op in ops) for name, ops in OP_GROUPS.items()}
        total = sum(self_ms.values())
        return {**groups, "everything else": total - sum(groups.values()), "whole step": total}

    fp32, bf16 = per_step_ms(False), per_step_ms(True)
    return [dict(student=f"me5-L{layers}", ops=name, fp32_ms=fp32[name], bf16_ms=bf16[name],
                 speedup=fp32[name] / bf16[name], share_of_bf16_step=bf16[name] / bf16["whole step"])
            for name in fp32]


def eval_precision(layers: int, task: str, device: str) -> dict:
    """Retrieval with query and document encoding in bf16 autocast vs float32: the me5 linear-map student
    (ridge head fitted on its swa training pairs) against the teacher's documents, on one NTREX task.
    Rank agreement is the Spearman correlation of each query's document scores, and the top-10 overlap."""
    from scipy.stats import spearmanr

    from optical_core.data.clir import build_collection
    from optical_core.distil.train import initial_student
    from optical_core.evaluate.retrieval import metrics_for, per_query_metrics, rank
    from optical_core.settings import TrainConfig

    teacher = load_teacher().to(device)
    student = initial_student(TrainConfig("swa", StudentSpec("me5", layers)), teacher).encoder.to(device).eval()
    collection = build_collection(task, "swa")
    qids, dids = list(collection.queries), list(collection.documents)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    out = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
            docs = teacher.encode([collection.documents[d] for d in dids], batch_size=16, max_length=DOC_MAX_LENGTH,
                                  device=device).float()
            queries = student.encode([collection.queries[q] for q in qids], max_length=QUERY_MAX_LENGTH,
                                     device=device).float()
        scores = queries @ docs.T
        metrics = per_query_metrics(collection.qrels, rank(queries, docs, qids, dids), metrics_for(task))
        out[name] = (scores, metrics)
    (s32, m32), (s16, m16) = out["fp32"], out["bf16"]
    rho = [spearmanr(a.numpy(), b.numpy()).statistic for a, b in zip(s32, s16)]
    top = [len(set(a.topk(10).indices.tolist()) & set(b.topk(10).indices.tolist())) / 10 for a, b in zip(s32, s16)]
    diff = (m16["mrr@10"] - m32["mrr@10"]).to_numpy()
    return dict(student=f"me5-L{layers}", task=task, queries=len(qids), docs=len(dids),
                mrr10_fp32=m32["mrr@10"].mean(), mrr10_bf16=m16["mrr@10"].mean(), mrr10_diff=diff.mean(),
                queries_changed=int((diff != 0).sum()), median_spearman=float(np.median(rho)),
                min_spearman=float(np.min(rho)), top10_overlap=float(np.mean(top)))


def kd_throughput_vs_sentence_transformers(layers: int, steps: int, device: str) -> list[dict]:
    """Training pairs/s of a KD step: sentence-transformers' trainer (MSELoss) vs ours, at equal settings (me5
    student, swa, batch 32, max length 48, float32, the same batches), then ours with length bucketing and in
    bf16. Rates are over steps 2..N of one run each (the first step's warm-up left out)."""
    from dataclasses import replace

    from optical_core.distil.train import train
    from optical_core.settings import Budget, TrainConfig
    from optical_core.study.parity import pairs_per_s, train_with_sentence_transformers

    teacher = load_teacher().to(device)
    base = TrainConfig("swa", StudentSpec("me5", layers), LossConfig(method="kd"),
                       Budget(n_pairs=2000, epochs=1, max_steps=steps, batch_size=32, max_length=48, lr=2e-4,
                              head_lr_multiplier=1.0), device=device, precision="float32")

    def rate(ends: list[float]) -> float:
        return pairs_per_s(ends, base.budget.batch_size)

    _, facts = train_with_sentence_transformers(base, teacher)
    rows = [dict(trainer="sentence-transformers 5.7 (MSELoss)", precision="float32", bucketing=False,
                 pairs_per_s=rate(facts["step_ends"]))]
    for label, config in (("optical", base),
                          ("optical", replace(base, budget=replace(base.budget, bucket_by_length=True))),
                          ("optical", replace(base, precision="bf16",
                                              budget=replace(base.budget, bucket_by_length=True)))):
        history = train(config, teacher=teacher).history
        rows.append(dict(trainer=label, precision=config.precision, bucketing=config.budget.bucket_by_length,
                         pairs_per_s=rate([h.elapsed_s for h in history])))
    for row in rows:
        row.update(student=f"me5-L{layers}", steps=steps, vs_peer=row["pairs_per_s"] / rows[0]["pairs_per_s"])
    return rows


def sinkhorn_vs_pot_loop(batch: int, n: int, reg: float, device: str, repeat: int) -> dict:
    """Our batched solver vs POT's batched solver vs POT's per-pair solver in a Python loop.

    Same problems (random 384-d token vectors, cosine cost, lengths n/2..n), same stopping rule (L2
    violation of one marginal < tol). The fixed-iteration column runs all three for exactly 20
    iterations (tol 0), separating the batching win from earlier stopping.
    """
    import ot as pot

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(batch, n, 384, generator=g), torch.randn(batch, n, 384, generator=g)
    lengths = torch.randint(n // 2, n + 1, (batch, 2), generator=g)
    sm = torch.arange(n)[None] < lengths[:, :1]
    tm = torch.arange(n)[None] < lengths[:, 1:]
    C = cost_matrix(s, t, "cosine").to(device)
    a, b = marginals(sm).to(device), marginals(tm).to(device)
    tol, max_iter = LossConfig().sinkhorn_tol, 1000

    def loop(tol=tol, iters=max_iter):
        plans = []
        for i in range(batch):
            ni, mi = int(sm[i].sum()), int(tm[i].sum())
            plans.append(pot.sinkhorn(a[i, :ni], b[i, :mi], C[i, :ni, :mi], reg, method="sinkhorn_log",
                                      stopThr=tol, numItermax=iters, warn=False))
        return plans

    ours = timed(lambda: transport_plan(C, a, b, reg, max_iter, tol), repeat, device)
    pot_batch = timed(lambda: log_sinkhorn(C, a, b, reg, max_iter, tol), repeat, device)
    looped = timed(loop, max(1, repeat // 2), device)
    ours_20 = timed(lambda: transport_plan(C, a, b, reg, 20, 0.0), repeat, device)
    looped_20 = timed(lambda: loop(0.0, 20), max(1, repeat // 2), device)
    plan = transport_plan(C, a, b, reg, max_iter, tol)
    reference = loop()
    plan_gap = max((plan[i, :r.shape[0], :r.shape[1]] - r).abs().max().item() for i, r in enumerate(reference))
    return dict(batch=batch, length=n, reg=reg, device=device, solver=choose_solver(C, reg),
                ours_ms=1e3 * ours, pot_batch_ms=1e3 * pot_batch, pot_loop_ms=1e3 * looped,
                speedup_vs_loop=looped / ours, speedup_vs_pot_batch=pot_batch / ours,
                speedup_vs_loop_20_iters=looped_20 / ours_20, marginal_error=marginal_error(plan, a, b),
                max_plan_diff_vs_loop=plan_gap)


def eval_throughput(device: str) -> dict:
    from optical_core.data.clir import build_collection

    teacher = load_teacher().to(device)
    c = build_collection("headline", "swa")
    docs = list(c.documents.values())
    queries = list(c.queries.values())
    t = time.perf_counter()
    teacher.encode(docs, batch_size=16, max_length=DOC_MAX_LENGTH, device=device)
    doc_s = time.perf_counter() - t
    t = time.perf_counter()
    teacher.encode(queries, max_length=QUERY_MAX_LENGTH, device=device)
    q_s = time.perf_counter() - t
    return dict(device=device, docs_per_s=len(docs) / doc_s, queries_per_s=len(queries) / q_s)


def peak_memory(layers: int, device: str) -> float:
    """Peak resident memory (MiB) of a fresh process doing 3 OT training steps (CPU), or CUDA peak.

    Includes loading the teacher, the bitext and the student (the steps themselves add little)."""
    code = f"""
import sys, resource, torch
from optical_core.distil.train import train
from optical_core.settings import Budget, LossConfig, StudentSpec, TrainConfig
train(TrainConfig('swa', StudentSpec('me5', {layers}), LossConfig(method='ot', sinkhorn_iters=50),
      Budget(n_pairs=96, batch_size=32, max_length=48), device={device!r}))
if {device!r}.startswith('cuda'):
    print(torch.cuda.max_memory_allocated() / 2**20)
else:  # VmHWM belongs to this exec'd image; ru_maxrss would inherit the (larger) parent's peak
    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')] if sys.platform == 'linux' else []
    print(int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def sweep_wall_times() -> pd.DataFrame:
    """Finished sweeps under runs/ and results/: cells, and the sum of their per-cell wall times."""
    rows = []
    for results in sorted((ROOT / "runs").glob("*/cells")) + sorted((ROOT / "results").glob("*/cells")):
        status_file = results.parent / "status.json"
        status = json.loads(status_file.read_text()) if status_file.is_file() else {}
        walls = [json.loads(p.read_text())["wall_time_s"] for p in results.glob("*/result.json")]
        if walls and status.get("done") == status.get("cells") == len(walls):
            rows.append(dict(sweep=str(results.parent.relative_to(ROOT)), cells=len(walls),
                             sum_of_cell_wall_time_min=sum(walls) / 60))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", choices=["precision", "precision-profile", "eval-precision", "peer"], default=None,
                        help="run one table only")
    args = parser.parse_args()
    device = resolve_device(args.device)
    repeat = 3 if args.quick else 7
    torch.manual_seed(0)
    print(f"# optical benchmarks\nmachine: {platform.machine()} {platform.processor()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else "") + "\n")

    if args.only in (None, "precision"):
        precision = pd.DataFrame([precision_step(L, 32, 48, device, repeat) for L in (2, 12)])
        print("## Training step and query encoding, float32 vs bf16 autocast (batch 32, max length 48)\n")
        print(precision.round(2).to_markdown(index=False), "\n")
    if args.only in (None, "precision-profile") and not device.startswith("cuda"):
        profile_rows = pd.DataFrame([r for L in (2, 12) for r in precision_profile(L, 32, 48)])
        print("## Where a KD training step's time goes on this CPU, float32 vs bf16 (torch.profiler self time, "
              "ms per step; batch 32, max length 48)\n")
        print(profile_rows.round(2).to_markdown(index=False), "\n")
    if args.only in (None, "eval-precision"):
        agreement = pd.DataFrame([eval_precision(L, task, device) for L in (2, 12)
                                  for task in ("headline", "siblings")])
        print("## Retrieval with query and document encoding in bf16 vs float32 (linear-map me5 students, swa)\n")
        print(agreement.round(4).to_markdown(index=False), "\n")
    if args.only in (None, "peer"):
        peer = pd.DataFrame([r for L in (2, 12) for r in kd_throughput_vs_sentence_transformers(L, 60, device)])
        print("## KD training throughput: ours vs sentence-transformers' trainer (swa, batch 32, max length 48, "
              "same batches)\n")
        print(peer.round(2).to_markdown(index=False), "\n")
    if args.only is not None:
        return

    steps = pd.DataFrame([step_breakdown(L, 32, 48, device, repeat) for L in ((2,) if args.quick else (2, 12))])
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        steps["mfu"] = [6 * r.params * r.tokens_per_s / (peak * 1e12) if peak else np.nan
                        for r in steps.itertuples()]
    print("## Training step, OT vs KD (batch 32, max length 48; teacher outputs are cached once per pair)\n")
    print(steps.drop(columns=["params"]).round(3).to_markdown(index=False), "\n")

    reg = LossConfig().reg  # the study's epsilon, and a tenth of it (the log-domain path)
    grid = [(8, 32, reg), (32, 16, reg), (32, 32, reg), (32, 64, reg), (128, 32, reg), (32, 32, reg / 10)]
    if args.quick:
        grid = [(32, 32, reg), (32, 32, reg / 10)]
    sk = pd.DataFrame([sinkhorn_vs_pot_loop(b, n, reg, device, repeat) for b, n, reg in grid])
    print("## Batched Sinkhorn (ours; POT ot.batch) vs ot.sinkhorn(method='sinkhorn_log') per pair in a loop\n\n"
          "Same problems, stop when the L2 marginal violation < 1e-5. `solver`: the path transport_plan took "
          "(scaling: ours; log: POT's batched log-domain solver, used when cost range / reg > 50). "
          "`speedup_vs_loop_20_iters`: all run exactly 20 iterations.\n")
    print(sk.to_markdown(index=False, floatfmt=".3g"), "\n")

    print("## Evaluation throughput (teacher: documents at 256 tokens, queries at 64)\n")
    print(pd.DataFrame([eval_throughput(device)]).round(1).to_markdown(index=False), "\n")

    sizes = (1, 12) if args.quick else (1, 2, 4, 8, 12)
    mem = pd.DataFrame([dict(student=f"me5-L{L}", device=device, peak_memory_mib=peak_memory(L, device))
                        for L in sizes])
    print("## Peak memory of OT training (fresh process, batch 32, max length 48)\n")
    print(mem.round(0).to_markdown(index=False), "\n")

    walls = sweep_wall_times()
    if len(walls):
        print("## Sweeps on disk (sum of per-cell wall time)\n")
        print(walls.round(1).to_markdown(index=False))


if __name__ == "__main__":
    main()
