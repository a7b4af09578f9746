"""Command line: `python -m optical_core <command>`.

students   print the size ladders of both families (layers, hidden, vocabulary, parameter counts)
tokenizers pieces per word and [UNK] rate of each family's tokenizer on each language's text
data       pairs per language after held-out de-duplication, and CLIR collection sizes
train      distil one student and save it as a checkpoint
evaluate   score a checkpoint and every baseline on a language's NTREX collection
sweep      run a grid from a TOML config (resumable), then write the results table
analyse    gains, slopes and the verdict from a finished sweep
publish    copy a sweep's results, manifests and analysis (no weights) into the repo's results/
ablation   OT variants (one sweep each) beside a reference sweep's KD, OT and untrained cells
download-data  fetch the corpora (needs internet)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm


def _print_table(frame) -> None:
    print(frame.to_string(index=False))


def cmd_students(args) -> None:
    from optical_core.study.ingredients import ladder_table

    _print_table(ladder_table(tuple(args.families)))


def cmd_tokenizers(args) -> None:
    from optical_core.study.ingredients import tokenizer_table

    _print_table(tokenizer_table(args.langs).round(3))


def cmd_data(args) -> None:
    from optical_core.study.ingredients import data_table

    _print_table(data_table(args.langs))


def cmd_train(args) -> None:
    from optical_core.distil.losses import LossConfig
    from optical_core.distil.run import default_run_name, evaluate_checkpoint, train_and_save
    from optical_core.models.students import StudentSpec, parse_size
    from optical_core.distil.train import TrainConfig

    loss = LossConfig(method=args.method, reg=args.reg, cost=args.cost, marginals=args.marginals,
                      plan_gradient=args.plan_gradient, sinkhorn_iters=args.sinkhorn_iters, kd_weight=args.kd_weight)
    config = TrainConfig(lang=args.lang, student=StudentSpec(args.family, parse_size(args.size), args.init_path),
                         loss=loss, n_pairs=args.pairs, epochs=args.epochs, max_steps=args.max_steps,
                         batch_size=args.batch_size, max_length=args.max_length, lr=args.lr, seed=args.seed,
                         device=args.device)
    name = args.name or default_run_name(config)
    bar = tqdm(desc=name, unit="step")

    def on_step(log):
        bar.total = log.total_steps
        bar.set_postfix(loss=f"{log.loss:.4f}")
        bar.update(1)

    path = train_and_save(config, args.out, name, on_step=on_step)
    bar.close()
    print(f"checkpoint: {path}")
    if not args.no_eval:
        scores = evaluate_checkpoint(path)
        print(scores.drop(columns="qid").mean().round(4).to_string())


def cmd_evaluate(args) -> None:
    from optical_core.store.checkpoints import load_checkpoint
    from optical_core.data.clir import build_collection
    from optical_core.models.encoders import load_teacher
    from optical_core.evaluate.scoring import BASELINES, score_baselines, score_student, summary_table, write_per_query
    from optical_core.distil.train import TrainConfig, untrained_student

    encoder, manifest = load_checkpoint(args.checkpoint)
    lang = args.lang or manifest.lang
    collection = build_collection(args.task, lang)
    teacher = load_teacher()
    print(f"{args.checkpoint}: {manifest.method} student {manifest.student['family']}-L{manifest.student['layers']}"
          f" ({manifest.lang}); {args.task} collection {lang}: {len(collection.queries)} queries, "
          f"{len(collection.documents)} documents", file=sys.stderr)
    scores = {"checkpoint": score_student(encoder, teacher, collection)}
    untrained = untrained_student(TrainConfig.from_dict(manifest.train_config), teacher.hidden_size).encoder
    scores.update(score_baselines(teacher, collection, untrained, which=tuple(args.baselines or BASELINES)))
    table = summary_table(scores, reference="checkpoint")
    out = Path(args.out or Path(args.checkpoint) / f"eval_{args.task}_{lang}")
    write_per_query(scores, out)
    table.to_csv(out / "summary.csv", index=False)
    _print_table(table.round(4))
    print(f"per-query scores: {out}")


def cmd_sweep(args) -> None:
    from optical_core.study.sweep import load_sweep_config, run_sweep, with_budget

    config = load_sweep_config(args.config)
    if args.pairs:
        config = with_budget(config, n_pairs=args.pairs)
    out = Path(args.out or Path("runs") / config.name)
    bar = tqdm(desc=config.name, unit="cell")

    def on_cell(i, n, cell, status):
        bar.total = n
        if status == "start":
            bar.set_postfix_str(cell.id)
        else:
            bar.update(1)
            if status != "done":
                tqdm.write(f"{cell.id}: {status}")

    run_sweep(config, out, on_cell=on_cell, executor=args.executor)
    bar.close()
    status = json.loads((out / "status.json").read_text())
    print(f"{status['done']} of {status['cells']} cells done, {len(status['failed'])} failed; results in {out}")


def cmd_analyse(args) -> None:
    from optical_core.study.summary import analyse_sweep

    summary = analyse_sweep(Path(args.sweep), metric=args.metric, export_to=Path(args.export) if args.export else None)
    print(summary.verdict)
    _print_table(summary.slopes.round(4))


def cmd_publish(args) -> None:
    from optical_core.study.sweep import grid_cells, load_sweep_config, write_results
    from optical_core.study.summary import analyse_sweep, publish_sweep

    sweep, dest = Path(args.sweep), Path(args.dest)
    if args.config:
        write_results(sweep, grid_cells(load_sweep_config(args.config)))  # refresh the table from the cells
    publish_sweep(sweep, dest)
    summary = analyse_sweep(dest, export_to=dest / "analysis")
    print(summary.verdict)
    print(f"published to {dest} ({summary.provenance})")


def cmd_ablation(args) -> None:
    from optical_core.study.ablation import ablation_table
    from optical_core.store.atomic import atomic_write_text

    layers = int(args.size.lstrip("L"))
    table = ablation_table(args.reference, args.variants, args.family, layers, args.lang, args.metric)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), table.to_csv(index=False))
    _print_table(table.drop(columns=["sweep"]).round(4))


def cmd_download(args) -> None:
    from optical_core.data.corpora import download_corpora

    print(download_corpora(args.dest, args.langs))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m optical_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("students", help="print the student ladders")
    p.add_argument("--families", nargs="+", default=["me5", "minilm"])
    p.set_defaults(func=cmd_students)

    p = sub.add_parser("tokenizers", help="tokenizer statistics per language")
    p.add_argument("--langs", nargs="+", default=None)
    p.set_defaults(func=cmd_tokenizers)

    p = sub.add_parser("data", help="bitext and CLIR collection sizes per language")
    p.add_argument("--langs", nargs="+", default=None)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="distil one student")
    p.add_argument("--lang", required=True)
    p.add_argument("--method", choices=["kd", "ot"], required=True)
    p.add_argument("--family", default="me5", choices=["me5", "minilm", "hf"])
    p.add_argument("--size", default="L2", help="first L layers, e.g. L2")
    p.add_argument("--init-path", default=None, help="local HF checkpoint directory (family hf)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--reg", type=float, default=0.05)
    p.add_argument("--cost", default="cosine", choices=["cosine", "sqeuclidean"])
    p.add_argument("--marginals", default="uniform", choices=["uniform", "idf"])
    p.add_argument("--plan-gradient", default="detach", choices=["detach", "autodiff"])
    p.add_argument("--sinkhorn-iters", type=int, default=100)
    p.add_argument("--kd-weight", type=float, default=0.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default="checkpoints")
    p.add_argument("--no-eval", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a checkpoint and the baselines")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--lang", default=None)
    p.add_argument("--task", default="headline", choices=["headline", "siblings"])
    p.add_argument("--baselines", nargs="*", default=None)
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sweep", help="run a grid")
    p.add_argument("--config", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("--pairs", type=int, default=None, help="override the budget's pair count")
    p.add_argument("--executor", default="local", choices=["local", "submitit"])
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("analyse", help="gains, slopes and verdict of a sweep")
    p.add_argument("--sweep", required=True)
    p.add_argument("--metric", default="mrr@10")
    p.add_argument("--export", default=None, help="directory for tables and figures")
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser("publish", help="copy a sweep's results (not its checkpoints) and its analysis to a folder")
    p.add_argument("--sweep", required=True)
    p.add_argument("--dest", required=True)
    p.add_argument("--config", default=None, help="the sweep's config: rewrite its results table first")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("ablation", help="OT variants (one sweep each) beside a reference sweep's KD/OT cells")
    p.add_argument("--reference", required=True, help="sweep with the KD, default-OT and untrained cells")
    p.add_argument("--variants", nargs="+", required=True, help="one sweep directory per OT variant")
    p.add_argument("--family", default="me5")
    p.add_argument("--size", default="L2")
    p.add_argument("--lang", default="swa")
    p.add_argument("--metric", default="mrr@10")
    p.add_argument("--out", default=None, help="write the table as CSV here")
    p.set_defaults(func=cmd_ablation)

    p = sub.add_parser("download-data", help="fetch NTREX-128 and MAFAND-MT (online only)")
    p.add_argument("--dest", default="data")
    p.add_argument("--langs", nargs="+", default=["swa", "yor", "ibo", "hau", "zul"])
    p.set_defaults(func=cmd_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from optical_core.data.corpora import DataError
    from optical_core.models.encoders import CheckpointError

    try:
        args.func(args)
    except (DataError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
