"""Command line: `python -m optical_core <command>`.

students   print the size ladders of both families (layers, hidden, vocabulary, parameter counts)
tokenizers pieces per word and [UNK] rate of each family's tokenizer on each language's text
data       pairs per language after held-out de-duplication, and CLIR collection sizes
train      distil one student and save it as a checkpoint
evaluate   score a checkpoint and every baseline on a language's NTREX collection
sweep      run a grid from a TOML config (resumable), then write the results table
analyse    gains, slopes and the verdict from a finished sweep
publish    copy a sweep's results, manifests and analysis (no weights) into the repo's results/
answer     a published study's answer in at most three generated sentences; --readme writes it into README.md
rebuild    retrain a study cell from its record (settings, seed, data hashes) into a checkpoint, checked against it
report     learning curves of a sweep: each method vs its start and vs KD, collapse flags, measured cost
export     a checkpoint as a sentence-transformers model directory
parity     KD trained by our trainer and by sentence-transformers' (same start, batches, optimiser), both scored
compare    the same cells of two sweeps (e.g. bf16 vs float32): both values per step, paired difference, p
download-data  fetch the corpora (needs internet)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

from tqdm import tqdm

from optical_core.errors import OpticalError
from optical_core.settings import (
    EVAL_PRECISIONS,
    TASKS,
    Budget,
    EvalPlan,
    SweepConfig,
    TrainConfig,
    parse_text,
    setting_field,
)


def _print_table(frame) -> None:
    print(frame.to_string(index=False))


# --- options built from the settings dataclasses -------------------------------------------------------


def add_settings(parser: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    """One option per field of a settings dataclass (nested ones flattened), with its help, default and
    allowed values taken from the field. Values are parsed and validated by the dataclass itself."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__) if not prefix else parser
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            add_settings(parser, hints[f.name], f"{prefix}{f.name}.")
            continue
        meta = f.metadata
        flag = "--" + (meta.get("flag") or f.name).replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()
        help_text = meta["help"] + f" (default: {default}"
        if meta.get("choices"):
            help_text += "; one of " + ", ".join(map(str, meta["choices"]))
        elif meta.get("low") is not None:
            help_text += f"; {meta['low']:g} to {meta['high']:g}"
        help_text += ")"
        dest = prefix + f.name
        if hints[f.name] is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text)
        else:
            nargs = "+" if typing.get_origin(hints[f.name]) is tuple else None
            group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, nargs=nargs, help=help_text,
                               metavar=f.name.upper())


def given_settings(cls, args: argparse.Namespace, prefix: str = "") -> dict:
    """Only the fields of `cls` given on the command line (to change a config's values, not replace them)."""
    hints = typing.get_type_hints(cls)
    values = {f.name: getattr(settings_from_args(cls, args, prefix), f.name) for f in fields(cls)
              if not is_dataclass(hints[f.name]) and prefix + f.name in vars(args)}
    return values


def settings_from_args(cls, args: argparse.Namespace, prefix: str = ""):
    """The dataclass `cls` from the options `add_settings` declared (absent ones keep their defaults)."""
    hints = typing.get_type_hints(cls)
    given = vars(args)
    values = {}
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            values[f.name] = settings_from_args(hints[f.name], args, f"{prefix}{f.name}.")
        elif prefix + f.name in given:
            raw = given[prefix + f.name]
            where = f"{cls.__name__}.{f.name} (--{(f.metadata.get('flag') or f.name).replace('_', '-')})"
            if isinstance(raw, list):
                values[f.name] = tuple(parse_text(v, setting_field(cls, f.name), typing.get_args(hints[f.name])[0],
                                                  where) for v in raw)
            elif isinstance(raw, bool):
                values[f.name] = raw
            else:
                values[f.name] = parse_text(raw, f, hints[f.name], where)
    return cls(**values)


@contextlib.contextmanager
def progress_bar(**kwargs):
    """A tqdm bar that leaves no line behind when the command fails (the error is the last word)."""
    bar = tqdm(leave=False, **kwargs)
    try:
        yield bar
    finally:
        bar.close()


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
    from optical_core.distil.run import default_run_name, train_and_save
    from optical_core.evaluate.evaluator import RunEvaluator
    from optical_core.evaluate.scoring import record_evaluation
    from optical_core.models.encoders import load_teacher
    from optical_core.store.checkpoints import checkpoint_path

    config, plan = settings_from_args(TrainConfig, args), settings_from_args(EvalPlan, args)
    name = args.name or default_run_name(config)
    checkpoint_path(args.out, name)  # refuse a bad name before the progress bar opens
    teacher = load_teacher()
    evaluator = None if args.no_eval else RunEvaluator(teacher, config.lang, plan, config.budget.max_length)
    with progress_bar(desc=name, unit="step") as bar:

        def on_step(log):
            bar.total = log.total_steps
            bar.set_postfix(loss=f"{log.loss:.4f}")
            bar.update(1)

        path = train_and_save(config, args.out, name, teacher=teacher, on_step=on_step, evaluator=evaluator)
    print(f"checkpoint: {path}")
    if evaluator:
        import pandas as pd

        curve = pd.DataFrame([dict(step=r.step, task=r.task, **r.scores.drop(columns="qid").mean().round(4))
                              for r in evaluator.records])
        curve.to_csv(path / "curve.csv", index=False)
        record_evaluation(path, plan.task, config.lang, evaluator.selected(plan.task).scores)
        print(f"scored at steps {', '.join(map(str, sorted(set(curve.step))))} (step 0: the start; curve.csv):")
        _print_table(curve)


def cmd_evaluate(args) -> None:
    from optical_core.data.clir import build_collection
    from optical_core.distil.train import initial_student
    from optical_core.evaluate.scoring import (
        BASELINES,
        score_baselines,
        score_student,
        summary_table,
        write_per_query,
    )
    from optical_core.models.encoders import load_teacher
    from optical_core.store.checkpoints import load_checkpoint

    encoder, manifest = load_checkpoint(args.checkpoint)
    lang = args.lang or manifest.lang
    collection = build_collection(args.task, lang)
    teacher = load_teacher()
    print(f"{args.checkpoint}: {manifest.method} student {manifest.student.name}"
          f" ({manifest.lang}); {args.task} collection {lang}: {len(collection.queries)} queries, "
          f"{len(collection.documents)} documents", file=sys.stderr)
    scores = {"checkpoint": score_student(encoder, teacher, collection)}
    untrained = initial_student(manifest.config, teacher).encoder
    which = BASELINES if args.baselines is None else args.baselines  # `--baselines` alone: none
    scores.update(score_baselines(teacher, collection, untrained, which=tuple(which)))
    table = summary_table(scores, reference="checkpoint")
    out = Path(args.out or Path(args.checkpoint) / f"eval_{args.task}_{lang}")
    write_per_query(scores, out)
    table.to_csv(out / "summary.csv", index=False)
    _print_table(table.round(4))
    print("diff_vs_ref, diff_ci_*, p_vs_ref: each system minus the checkpoint (the reference row), paired over "
          "queries (bootstrap 95% CI, randomisation test)")
    print(f"per-query scores: {out}")


def cmd_sweep(args) -> None:
    from dataclasses import replace

    from optical_core.settings import load_sweep_config
    from optical_core.study.sweep import run_sweep

    config = load_sweep_config(args.config)
    run = replace(config.run, budget=replace(config.run.budget, **given_settings(Budget, args, "budget.")))
    config = replace(config, run=run, eval=replace(config.eval, **given_settings(EvalPlan, args)))
    if "workers" in vars(args):
        hint = typing.get_type_hints(SweepConfig)["workers"]
        where = "SweepConfig.workers (--workers)"
        config = replace(config, workers=parse_text(args.workers, setting_field(SweepConfig, "workers"), hint, where))
    out = Path(args.out or Path("runs") / config.name)
    with progress_bar(desc=config.name, unit="cell") as bar:

        def on_cell(i, n, cell, status):
            bar.total = n
            if status == "start":
                bar.set_postfix_str(cell.id)
            else:
                bar.update(1)
                if status != "done":
                    tqdm.write(f"{cell.id}: {status}")

        run_sweep(config, out, on_cell=on_cell, scheduler=args.scheduler)
    status = json.loads((out / "status.json").read_text())
    print(f"{status['done']} of {status['cells']} cells done, {len(status['failed'])} failed; results in {out}")


def cmd_rebuild(args) -> None:
    from optical_core.study.rebuild import rebuild_cell

    study = existing_sweep(args.study, "study")
    with progress_bar(desc=args.cell, unit="step") as bar:

        def on_step(log):
            bar.total = log.total_steps
            bar.update(1)

        rebuilt = rebuild_cell(study, args.cell, args.out, on_step=on_step, precision=args.precision)
    _print_table(rebuilt.comparison.round(4))
    print(rebuilt.summary())


def existing_sweep(path, what: str = "sweep") -> Path:
    """A sweep folder that exists (it holds cells/ or a results table), else a one-line DataError."""
    from optical_core.errors import DataError

    folder = Path(path)
    if not (folder / "cells").is_dir() and not (folder / "results.csv").is_file():
        raise DataError(f"{folder}: no {what} there (expected a folder with cells/ or results.csv)")
    return folder


def known_metric(metric: str) -> str:
    from optical_core.errors import DataError
    from optical_core.settings import TASK_METRICS

    known = sorted({m for metrics in TASK_METRICS.values() for m in metrics})
    if metric not in known:
        raise DataError(f"unknown metric '{metric}'; choose one of {', '.join(known)}")
    return metric


def cmd_analyse(args) -> None:
    from optical_core.study.publish import export_analysis
    from optical_core.study.summary import analyse_sweep

    sweep, metric = existing_sweep(args.sweep), known_metric(args.metric)
    summary = export_analysis(sweep, Path(args.export), metric) if args.export else analyse_sweep(sweep, metric)
    print(summary.verdict)
    _print_table(summary.slopes.round(4))


def cmd_publish(args) -> None:
    from optical_core.study.grid import grid_cells
    from optical_core.study.publish import publish_sweep, write_analysis
    from optical_core.study.results import write_results
    from optical_core.settings import load_sweep_config

    sweep, dest = existing_sweep(args.sweep), Path(args.dest)
    if args.config:
        write_results(sweep, grid_cells(load_sweep_config(args.config)))  # refresh the table from the cells
    publish_sweep(sweep, dest)
    summary = write_analysis(dest, dest / "analysis")
    print(summary.verdict)
    print(f"published to {dest} ({summary.provenance})")
    if args.readme:
        write_readme(Path(args.readme), summary, dest)


def write_readme(readme: Path, summary, study: Path) -> None:
    from optical_core.store.atomic import atomic_write_text
    from optical_core.study.answer import readme_answer, replace_readme_answer

    label = study.resolve().relative_to(readme.resolve().parent) if study.resolve().is_relative_to(
        readme.resolve().parent) else study
    atomic_write_text(readme, replace_readme_answer(readme.read_text(encoding="utf-8"),
                                                    readme_answer(summary, str(label))))
    print(f"{readme}: its generated answer now reads {label}'s published analysis")


def cmd_answer(args) -> None:
    from optical_core.study.answer import short_answer
    from optical_core.study.summary import load_summary

    study = existing_sweep(args.study, "study")
    summary = load_summary(study)
    print("\n".join(short_answer(summary)))
    if args.readme:
        write_readme(Path(args.readme), summary, study)


def cmd_report(args) -> None:
    from optical_core.study.report import write_curve_report

    print(write_curve_report(existing_sweep(args.sweep), Path(args.out) if args.out else None,
                             metric=known_metric(args.metric)))


def cmd_download(args) -> None:
    from optical_core.data.corpora import download_corpora

    print(download_corpora(args.dest, args.langs))


def cmd_export(args) -> None:
    from optical_core.store.export import export_sentence_transformer

    dest = export_sentence_transformer(args.checkpoint, args.dest)
    print(f"sentence-transformers model: {dest}  (SentenceTransformer({str(dest)!r}).encode(queries))")


def cmd_parity(args) -> None:
    from optical_core.models.encoders import load_teacher
    from optical_core.study.parity import kd_parity

    config = settings_from_args(TrainConfig, args)
    table = kd_parity(config, load_teacher(), args.out, tuple(args.tasks))
    _print_table(table[table.metric.isin(["mrr@10", "ndcg@10"])].round(4))


def cmd_compare(args) -> None:
    import pandas as pd

    from optical_core.study.curves import compare_sweeps

    a, b, metric = existing_sweep(args.sweep_a), existing_sweep(args.sweep_b), known_metric(args.metric)
    table = pd.concat([compare_sweeps(a, b, metric, task) for task in args.tasks],
                      ignore_index=True)
    if args.out:
        table.to_csv(args.out, index=False)
    _print_table(table.round(4))
    if len(table):
        worst = table.loc[table["diff"].abs().idxmax()]
        print(f"largest difference: {worst['diff']:+.4f} ({worst.cell_id}, step {worst.step}, {worst.task}, "
              f"p = {worst.p_value:.3g}) over {len(table)} cell-steps")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optical", description=__doc__,
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

    p = sub.add_parser("train", help="distil one student",
                       description="Distil one student. Every setting below is a field of optical_core.settings.")
    add_settings(p, TrainConfig)
    add_settings(p, EvalPlan)
    p.add_argument("--name", default=None, help="checkpoint name (default: lang-family-size-method-seed)")
    p.add_argument("--out", default="checkpoints", help="checkpoint root directory")
    p.add_argument("--no-eval", action="store_true", help="score nothing (no learning curve, no final score)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a checkpoint and the baselines")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--lang", default=None)
    p.add_argument("--task", default="headline", choices=TASKS)
    p.add_argument("--baselines", nargs="*", default=None)
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sweep", help="run a grid",
                       description="Run a grid from a TOML config (resumable). The budget and evaluation options "
                                   "below change the config's values (each is a field of optical_core.settings).")
    p.add_argument("--config", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cells on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://host:8786; "
                        "docs/ENGINE.md) instead of the sweep's own local cluster")
    workers = setting_field(SweepConfig, "workers")
    p.add_argument("--workers", default=argparse.SUPPRESS, metavar="N",
                   help=f"{workers.metadata['help']} (default: the config's, else one per 2 cores)")
    add_settings(p, Budget, "budget.")
    add_settings(p, EvalPlan)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("rebuild", help="retrain a study cell from its record into a checkpoint, checked against it")
    p.add_argument("cell", help="a trained cell's id, e.g. swa-me5-L1-ot-s0")
    p.add_argument("--study", default="results/study", help="the study folder holding cells/<id>/result.json")
    p.add_argument("--out", default="checkpoints", help="checkpoint root directory (the checkpoint is named CELL)")
    p.add_argument("--precision", choices=EVAL_PRECISIONS, default=None,
                   help="train and evaluate at this precision instead of the recorded one (float32 on a CPU without "
                        "native bf16, where bf16 is emulated and several times slower); compared as another setup")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser("analyse", help="gains, slopes and verdict of a sweep")
    p.add_argument("--sweep", required=True)
    p.add_argument("--metric", default="mrr@10")
    p.add_argument("--export", default=None, help="directory for tables and figures")
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser("publish", help="copy a sweep's results (not its checkpoints) and its analysis to a folder")
    p.add_argument("--sweep", required=True)
    p.add_argument("--dest", required=True)
    p.add_argument("--config", default=None, help="the sweep's config: rewrite its results table first")
    p.add_argument("--readme", default=None, help="also write the study's generated answer into this README")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("answer", help="a study's answer in three generated sentences (and into the README)")
    p.add_argument("--study", default="results/study")
    p.add_argument("--readme", default=None, help="write the generated answer block into this README")
    p.set_defaults(func=cmd_answer)

    p = sub.add_parser("report", help="learning curves, each method vs its start and vs KD, collapse, cost")
    p.add_argument("--sweep", required=True)
    p.add_argument("--out", default=None, help="directory for tables, figures and report.md (default: SWEEP/analysis)")
    p.add_argument("--metric", default="mrr@10")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="a checkpoint as a sentence-transformers model directory")
    p.add_argument("checkpoint", help="an optical checkpoint directory")
    p.add_argument("dest", help="a new (or empty) folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("parity", help="our KD vs sentence-transformers' trainer on one setting")
    add_settings(p, TrainConfig)
    p.add_argument("--out", required=True, help="folder for parity.csv, parity.json and per-query scores")
    p.add_argument("--tasks", nargs="+", default=["headline", "siblings"], choices=TASKS + ("dev",))
    p.set_defaults(func=cmd_parity)

    p = sub.add_parser("compare", help="the same cells of two sweeps, step by step, paired over queries")
    p.add_argument("sweep_a")
    p.add_argument("sweep_b")
    p.add_argument("--tasks", nargs="+", default=["headline"], choices=TASKS + ("dev",))
    p.add_argument("--metric", default="mrr@10")
    p.add_argument("--out", default=None, help="write the table here as CSV")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("download-data", help="fetch NTREX-128 and MAFAND-MT (online only)")
    p.add_argument("--dest", default="data")
    p.add_argument("--langs", nargs="+", default=["swa", "yor", "ibo", "hau", "zul"])
    p.set_defaults(func=cmd_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (OpticalError, ValueError) as err:  # ValueError: a bad input the settings could not see
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main_entry() -> None:
    """The `optical` console script."""
    sys.exit(main())
