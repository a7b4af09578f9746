"""Every setting of a run and of a sweep, defined once: its type, default, allowed values and help.

Each setting is a field of a frozen dataclass below. The command line (`cli.py`) and the app's Train
page build their options from these fields, sweep configs (TOML) and manifests (JSON) are read back
through `from_mapping`, and every instance validates itself on construction: a bad value anywhere
ends in one `SettingsError` line that names the field, the value and what is allowed.

OPTICAL's own OT settings (cost, marginals, epsilon, iterations, plan gradient, extra terms) are not
public (only the abstract of arXiv 2301.12566 is): the defaults of `LossConfig` are this project's
choices, recorded in every manifest.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace

from optical_core.errors import SettingsError

# Allowed values, each listed once.
METHODS = ("kd", "ot")
COSTS = ("cosine", "sqeuclidean")
MARGINALS = ("uniform", "idf")
PLAN_GRADIENTS = ("detach", "autodiff")
FAMILIES = ("me5", "minilm", "hf")
LADDERS = {"me5": (1, 2, 3, 4, 6, 8, 12), "minilm": (1, 2, 3, 4, 6)}  # sizes (first L layers) per family
PROJECTIONS = ("auto", "always", "never")
HEAD_INITS = ("ridge", "procrustes", "random")
OT_FORMS = ("transport_cost", "sinkhorn_divergence")
REG_SCALES = ("absolute", "relative")
FULL_PRECISION = "float32"  # the default of training and of evaluation; bf16 is a recorded choice
PRECISIONS = ("auto", FULL_PRECISION, "bf16")
EVAL_PRECISIONS = (FULL_PRECISION, "bf16")
SCHEDULES = ("linear", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
TASKS = ("headline", "siblings")
EVAL_TASKS = TASKS + ("dev",)  # dev: the MAFAND dev collection, where settings (and stopping steps) are chosen
BASELINE_SYSTEMS = ("oracle", "bm25", "teacher-raw", "me5")
SWEEP_METHODS = METHODS + ("untrained",)

# The metric lists of each CLIR task (ranx names). Siblings has several relevant passages per query.
HEADLINE_METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@10")
SIBLING_METRICS = HEADLINE_METRICS + ("recall@100", "map")
TASK_METRICS = {"headline": HEADLINE_METRICS, "siblings": SIBLING_METRICS, "dev": HEADLINE_METRICS}
PRIMARY_METRIC = HEADLINE_METRICS[0]  # the study's headline metric (MRR@10); the stopping rule watches it too
# A student whose query embeddings have a mean pairwise cosine above this ranks every query almost alike:
# the teacher's own headline queries sit near 0.1; random-head me5 students (at chance) at 0.75-0.84; an
# OT student that collapsed at 0.997 (../shared/FIELD_NOTES.md). 0.9 sits between trained and collapsed.
COLLAPSE_COSINE = 0.9
QUERY_MAX_LENGTH = 64
DOC_MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length

# Names that become parts of paths (languages, sweeps): letters, digits, '.', '_', '-'; never '..'.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


def setting(default, help: str, *, choices: tuple | None = None, low: float | None = None,
            high: float | None = None, pattern: str | None = None, flag: str | None = None,
            allow_empty: bool = False, parse: typing.Callable[[str], object] | None = None) -> Field:
    """A dataclass field with what the CLI, the app and the validator need to know about it.

    choices: allowed values (for a tuple field: allowed elements); low/high: inclusive bounds;
    pattern: a regular expression the whole string must match; flag: the command-line name when it
    differs from the field name; allow_empty: a tuple field may be empty; parse: text -> value.
    """
    metadata = dict(help=help, choices=choices, low=low, high=high, pattern=pattern, flag=flag,
                    allow_empty=allow_empty, parse=parse)
    if is_dataclass(default):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


def same_setting(cls, name: str, **changes) -> Field:
    """A field defined like `cls`'s field `name` (its default, help and allowed values), for a dataclass that
    sets the same thing in another place (a grid block sets a student's family): one definition, two uses."""
    f = setting_field(cls, name)
    return setting(default_of(f), **dict(dict(f.metadata), **changes))


def parse_size(text: str) -> int:
    """'L2' (first 2 layers) or '2' -> 2."""
    value = str(text).strip().upper().removeprefix("L")
    if not value.isdigit():
        raise SettingsError(f"student size must look like L2 (first 2 layers), got {text!r}")
    return int(value)


# --- validation and reading from plain data --------------------------------------------------------


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _describe(meta: dict, kind) -> str:
    parts = []
    if meta.get("choices"):
        parts.append("one of " + ", ".join(map(str, meta["choices"])))
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        parts.append(f"between {low:g} and {high:g}")
    elif low is not None:
        parts.append(f">= {low:g}")
    if meta.get("pattern"):
        parts.append("letters, digits, '.', '_', '-'")
    return (kind + " " if kind else "") + "; ".join(parts)


def _coerce(value, hint, where: str, meta: dict):
    """`value` as type `hint` (int, float, str, bool, X | None, tuple[X, ...], a settings dataclass)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where, meta)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where} = {value!r}: must be a list")
        if not value and not meta.get("allow_empty"):
            raise SettingsError(f"{where} = []: must not be empty")
        return tuple(_coerce(v, args[0], f"{where}[{i}]", meta) for i, v in enumerate(value))
    if is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return from_mapping(hint, value, where)
        raise SettingsError(f"{where} = {value!r}: must be a table of {hint.__name__} settings")
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where} = {value!r}: must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where} = {value!r}: must be an integer ({_describe(meta, '')})".replace(" ()", ""))
        value = int(value)
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where} = {value!r}: must be a number ({_describe(meta, '')})".replace(" ()", ""))
        value = float(value)
        if not math.isfinite(value):
            raise SettingsError(f"{where} = {value!r}: must be a finite number ({_describe(meta, '')})")
    elif hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where} = {value!r}: must be a string")
        if len(value) > 4096:
            raise SettingsError(f"{where}: a string of {len(value)} characters is too long (at most 4096)")
    if meta.get("choices") and value not in meta["choices"]:
        raise SettingsError(f"{where} = {value!r}: must be {_describe(meta, '')}")
    low, high = meta.get("low"), meta.get("high")
    if (low is not None and value < low) or (high is not None and value > high):
        raise SettingsError(f"{where} = {value!r}: out of range, must be {_describe(meta, '')}")
    if meta.get("pattern") and (not re.fullmatch(meta["pattern"], value) or ".." in value):
        raise SettingsError(f"{where} = {value!r}: must be a plain name ({_describe(meta, '')})")
    return value


def check(instance) -> None:
    """Validate (and normalise: lists to tuples, ints to floats) every field of a settings dataclass."""
    cls = type(instance)
    hints = _hints(cls)
    for f in fields(instance):
        value = _coerce(getattr(instance, f.name), hints[f.name], f"{cls.__name__}.{f.name}", dict(f.metadata))
        object.__setattr__(instance, f.name, value)


def from_mapping(cls, data: dict, where: str | None = None):
    """A settings dataclass from plain data (TOML, JSON). Unknown keys are an error; missing keys take the
    default; a nested table is applied on top of the field's default (so `[ot]` keeps method = "ot")."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise SettingsError(f"{where} = {data!r}: must be a table of settings")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SettingsError(f"{where}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                            f"(known: {', '.join(known)})")
    values = {}
    hints = _hints(cls)
    for name, value in data.items():
        hint, f = hints[name], known[name]
        if is_dataclass(hint) and isinstance(value, dict):
            value = _apply(default_of(f), value, f"{where}.{name}")
        values[name] = value
    try:
        return cls(**values)
    except SettingsError as err:  # name the field the way the config file spells it
        raise SettingsError(str(err).replace(f"{cls.__name__}.", f"{where}.", 1)) from None


def _apply(base, changes: dict, where: str):
    checked = from_mapping(type(base), changes, where)  # unknown keys and types
    return replace(base, **{k: getattr(checked, k) for k in changes})


def default_of(f: Field):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise SettingsError(f"{f.name} has no default")


def flat_settings(mapping: dict, prefix: str = "") -> dict:
    """A nested settings dict (e.g. `asdict(TrainConfig)`) as flat keys: {"budget.lr": 2e-4, "loss.reg": ...}."""
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def setting_field(cls, name: str) -> Field:
    """The dataclass field of `cls` called `name` (for widgets and options built from it)."""
    for f in fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no setting {name!r}")


def parse_text(text: str, f: Field, hint, where: str):
    """A value typed on the command line, as the field's type (validation happens in the dataclass)."""
    meta = f.metadata
    if meta.get("parse"):
        return meta["parse"](text)
    args = typing.get_args(hint)
    if type(None) in args:
        if str(text).lower() == "none":
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{where} = {text!r}: must be an integer ({_describe(dict(meta), '')})") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise SettingsError(f"{where} = {text!r}: must be a number ({_describe(dict(meta), '')})") from None
    return text


# --- the settings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossConfig:
    """What a run optimises: KD (Reimers & Gurevych, 2020), or OPTICAL-style OT (Huang et al., 2023)."""

    method: str = setting("kd", "distillation objective", choices=METHODS)
    reg: float = setting(0.05, "entropic epsilon of the OT plan", low=1e-3, high=100.0)
    cost: str = setting("cosine", "token distance of the OT cost matrix", choices=COSTS)
    marginals: str = setting("uniform", "token masses of the OT problem", choices=MARGINALS)
    plan_gradient: str = setting("detach", "detach: the plan is a constant (envelope gradient); autodiff: "
                                 "differentiate through every Sinkhorn iteration", choices=PLAN_GRADIENTS)
    sinkhorn_iters: int = setting(100, "largest number of Sinkhorn iterations per step", low=1, high=10_000)
    sinkhorn_tol: float = setting(1e-5, "Sinkhorn stops when every marginal is this close (L2)", low=1e-9, high=1.0)
    kd_weight: float = setting(0.0, "weight of a sentence-level KD term added to the OT loss (0 = pure OT)",
                               low=0.0, high=1000.0)
    ot_form: str = setting("transport_cost", "transport_cost: <P, C> (OPTICAL-style); sinkhorn_divergence: "
                           "OT(a,b) - OT(a,a)/2 - OT(b,b)/2 with entropic OT values (Feydy et al., 2019), which "
                           "does not reward a collapsed student", choices=OT_FORMS)
    reg_scale: str = setting("absolute", "absolute: epsilon = reg; relative: epsilon = reg x the median cost of "
                             "the batch's real token pairs (for costs with no fixed range, e.g. sqeuclidean)",
                             choices=REG_SCALES)

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class StudentSpec:
    """A student query encoder: a family's first `layers` layers (see models/students.py)."""

    family: str = setting("me5", "me5: multilingual-e5-small (4-bit weights, dequantised); minilm: the English "
                          "teacher truncated; hf: a local Hugging Face checkpoint (init_path)", choices=FAMILIES)
    layers: int = setting(2, "keep the first L layers, e.g. L2", low=1, high=48, flag="size", parse=parse_size)
    init_path: str | None = setting(None, "local Hugging Face checkpoint directory (family hf)")
    trim_vocab: bool = setting(True, "keep only the vocabulary pieces the study's texts use")
    projection: str = setting("auto", "linear map into the teacher's space: auto (unless the student is the "
                              "teacher's own family and width), always or never", choices=PROJECTIONS)
    head_init: str = setting("ridge", "how the projection starts: ridge (closed-form ridge regression of the "
                             "teacher's pooled embeddings on the student's, fitted on the run's own training "
                             "pairs), procrustes (orthogonal map with scale, same pairs) or random",
                             choices=HEAD_INITS)

    def __post_init__(self):
        check(self)
        ladder = LADDERS.get(self.family)
        if ladder and self.layers not in ladder:
            raise SettingsError(f"StudentSpec.layers = {self.layers}: the {self.family} ladder has sizes "
                                f"{', '.join(f'L{n}' for n in ladder)}")
        if self.family == "hf" and not self.init_path:
            raise SettingsError("StudentSpec.init_path: family 'hf' needs a local Hugging Face checkpoint directory")

    @property
    def name(self) -> str:
        return f"{self.family}-L{self.layers}"


@dataclass(frozen=True)
class Budget:
    """How much training a student gets. The defaults are the CLI's single run."""

    n_pairs: int | None = setting(2000, "training pairs (the first N after held-out de-duplication; none = all)",
                                  low=1, high=10_000_000, flag="pairs")
    epochs: int = setting(1, "passes over the pairs", low=1, high=1000)
    max_steps: int | None = setting(None, "stop after this many optimiser steps (none = all epochs)",
                                    low=1, high=10_000_000)
    batch_size: int = setting(32, "pairs per optimiser step", low=1, high=4096)
    max_length: int = setting(64, "tokens per sentence, specials included (longer ones are truncated)",
                              low=4, high=512)
    lr: float = setting(2e-4, "AdamW learning rate of the backbone", low=1e-8, high=1.0)
    head_lr_multiplier: float = setting(50.0, "learning-rate multiplier of the projection head (it starts "
                                        "from scratch, the backbone does not)", low=1e-3, high=1e4)
    warmup_ratio: float = setting(0.1, "share of the steps with a linear learning-rate warm-up", low=0.0, high=1.0)
    weight_decay: float = setting(0.01, "AdamW weight decay", low=0.0, high=1.0)
    bucket_by_length: bool = setting(False, "batch pairs of similar source length together (less padding, faster "
                                     "steps; changes which pairs share a batch)")
    schedule: str = setting("linear", "learning rate after the warm-up: linear (decays to 0 at the last step) or "
                            "constant (for runs stopped on the dev set, where the last step is not known in advance)",
                            choices=SCHEDULES)

    def __post_init__(self):
        check(self)

    @property
    def steps(self) -> int | None:
        """Optimiser steps, when the pair count is known."""
        return self.max_steps if self.n_pairs is None else self.steps_for(self.n_pairs)

    def steps_for(self, available_pairs: int) -> int:
        """Optimiser steps of a run on a bitext of `available_pairs` (n_pairs caps it)."""
        pairs = min(available_pairs, self.n_pairs or available_pairs)
        steps = -(-pairs // self.batch_size) * self.epochs
        return min(steps, self.max_steps) if self.max_steps else steps


# The app's Train page default: a run that finishes in well under a minute on a laptop CPU, to try the
# instrument. Far too small to compare objectives: that is what the sweep's budgets are for.
DEMO_BUDGET = Budget(n_pairs=128, batch_size=16, max_length=48)


@dataclass(frozen=True)
class EvalPlan:
    """When a run is scored and on what: its learning curve, its final tasks, the transport plans it records,
    and when it stops. The same plan serves a single run (`optical train --eval-steps ...`) and a sweep ([eval])."""

    steps: tuple[int, ...] = setting((0, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400),
                                     "steps at which a run is scored (the learning curve; steps past the run's end "
                                     "are dropped, its last step is always scored)", low=0, high=10_000_000,
                                     allow_empty=True, flag="eval_steps")
    every: int | None = setting(None, "also score every N steps (an interval beside `steps`; none = `steps` only)",
                                low=1, high=10_000_000, flag="eval_every")
    tasks: tuple[str, ...] = setting(("headline",), "tasks scored at every evaluation step", choices=EVAL_TASKS,
                                     flag="eval_tasks")
    final_tasks: tuple[str, ...] = setting((), "tasks scored at the selected (final) step only (e.g. siblings: 1,868 "
                                           "queries)", choices=EVAL_TASKS, allow_empty=True)
    task: str = setting("headline", "the task of each run's main row, read by the analysis at the selected step "
                        "(dev: the MAFAND dev collection, for choosing settings)", choices=EVAL_TASKS,
                        flag="eval_task")
    precision: str = setting(FULL_PRECISION, "precision of the students' query encoding at evaluation (documents are "
                             "the teacher's, cached in float32); bf16 ranks as float32 does: Spearman >= 0.9996 per "
                             "query, |MRR@10 difference| <= 0.0014 (benchmarks, eval-precision)",
                             choices=EVAL_PRECISIONS, flag="eval_precision")
    stop_task: str | None = setting(None, "stop a run once its MRR@10 on this task (dev: never a test task) has not "
                                    "improved for `patience` evaluations, and keep its best step's weights; none = "
                                    "train the whole budget", choices=EVAL_TASKS)
    patience: int = setting(3, "evaluations without improvement before a run with a stop_task stops", low=1,
                            high=1000)
    plan_steps: tuple[int, ...] = setting((0, 25), "evaluation steps at which the transport plans of "
                                          "a fixed panel of sentence pairs are recorded (the selected step always)",
                                          low=0, high=10_000_000, allow_empty=True)

    def __post_init__(self):
        check(self)
        if self.stop_task is not None and self.stop_task not in self.tasks:
            raise SettingsError(f"EvalPlan.stop_task = {self.stop_task!r}: a run can only stop on a task it is scored "
                                f"on along training (tasks: {', '.join(self.tasks)})")

    def steps_for(self, total_steps: int) -> tuple[int, ...]:
        """The steps a run of at most `total_steps` is scored at: the schedule, the interval, and the last step."""
        every = set(range(0, total_steps + 1, self.every)) if self.every else set()
        return tuple(sorted({s for s in set(self.steps) | every if s <= total_steps} | {total_steps}))

    @property
    def all_tasks(self) -> tuple[str, ...]:
        """Every task a run is scored on, the main task first."""
        return tuple(dict.fromkeys((self.task,) + self.tasks + self.final_tasks))


@dataclass(frozen=True)
class TrainConfig:
    """One run: a student, an objective, a budget, a language's bitext, a seed."""

    lang: str = setting("swa", "low-resource language code (MAFAND bitext and NTREX test text)",
                        pattern=NAME_PATTERN)
    student: StudentSpec = setting(StudentSpec(), "the student")
    loss: LossConfig = setting(LossConfig(), "the objective")
    budget: Budget = setting(Budget(), "the training budget")
    seed: int = setting(0, "random seed (initialisation, batch order)", low=0, high=2**31 - 1)
    device: str = setting("auto", "auto picks cuda, then mps, then cpu", choices=DEVICES)
    precision: str = setting(FULL_PRECISION, "the encoder's matmuls: float32, bf16 (autocast; OT, losses and the "
                             "optimiser stay float32) or auto (bf16 where the CPU or GPU supports it)",
                             choices=PRECISIONS)

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class Variant:
    """A named objective of a sweep (e.g. an OT variant), usable as a grid method."""

    name: str = setting("ot-kd", "the method name cells use", pattern=NAME_PATTERN)
    loss: LossConfig = setting(LossConfig(method="ot"), "its objective")

    def __post_init__(self):
        check(self)
        if self.name in SWEEP_METHODS + BASELINE_SYSTEMS:
            raise SettingsError(f"Variant.name = {self.name!r}: kd, ot, untrained and the baselines' names are taken")


@dataclass(frozen=True)
class GridSpec:
    """One block of a sweep: a family's sizes x languages x seeds x methods."""

    family: str = same_setting(StudentSpec, "family")
    sizes: tuple[int, ...] = setting((2,), "student sizes (first L layers)", low=1, high=48)
    langs: tuple[str, ...] = setting(("swa",), "languages", pattern=NAME_PATTERN)
    seeds: tuple[int, ...] = setting((0,), "seeds", low=0, high=2**31 - 1)
    methods: tuple[str, ...] = setting(METHODS, "objectives (kd, ot, a [[variant]] name), and 'untrained' for "
                                       "the initialisation", pattern=NAME_PATTERN)
    init_path: str | None = same_setting(StudentSpec, "init_path")

    def __post_init__(self):
        check(self)
        for layers in self.sizes:  # the same rules as a single run's student
            StudentSpec(self.family, layers, self.init_path)


# What a sweep's grid sets in each cell's run: a [run] table that sets them too would be silently overridden.
SET_BY_GRID = ("lang", "seed", "loss", "student.family", "student.layers", "student.init_path")


@dataclass(frozen=True)
class SweepConfig:
    """A grid of runs: one run's settings as a template, an evaluation plan, and the grid (configs/*.toml)."""

    name: str = setting("sweep", "sweep name (its directory under runs/)", pattern=NAME_PATTERN)
    description: str = setting("", "one line on what the sweep is for")
    grids: tuple[GridSpec, ...] = setting((GridSpec(),), "the [[grid]] blocks")
    run: TrainConfig = setting(TrainConfig(), "every cell's run ([run], [run.budget], [run.student]); the grid sets "
                               "its language, student family and size, seed and objective")
    eval: EvalPlan = setting(EvalPlan(), "how every cell is scored ([eval])")
    ot: LossConfig = setting(LossConfig(method="ot"), "the OT objective of the 'ot' cells")
    variants: tuple[Variant, ...] = setting((), "further named objectives ([[variant]] tables)", allow_empty=True)
    baselines: tuple[str, ...] = setting(BASELINE_SYSTEMS, "baseline systems scored once per language",
                                         choices=BASELINE_SYSTEMS, allow_empty=True)
    keep_checkpoints: bool = setting(True, "keep each trained cell's weights (cells/<id>/checkpoint)")
    workers: int | None = setting(None, "worker processes of the sweep's own Dask cluster, each running one cell at "
                                  "a time on its share of the CPU cores (several may share one GPU); none: one per 2 "
                                  "cores; 0: every cell in this process (debugging). Not used with --scheduler",
                                  low=0, high=1024)

    def __post_init__(self):
        check(self)
        if self.ot.method != "ot":
            raise SettingsError(f"SweepConfig.ot.method = {self.ot.method!r}: the [ot] table configures the OT cells")
        names = [v.name for v in self.variants]
        if len(set(names)) < len(names):
            raise SettingsError(f"SweepConfig.variants: names must differ, got {', '.join(names)}")
        known = set(SWEEP_METHODS) | set(names)
        for g in self.grids:
            unknown = sorted(set(g.methods) - known)
            if unknown:
                raise SettingsError(f"SweepConfig.grids: unknown method {', '.join(unknown)} (known: "
                                    f"{', '.join(sorted(known))}; add a [[variant]] table to define one)")

    def loss_for(self, method: str) -> LossConfig:
        """The objective of a cell's method."""
        if method == "kd":
            return LossConfig(method="kd")
        if method == "ot":
            return self.ot
        return next(v.loss for v in self.variants if v.name == method)


def load_sweep_config(path) -> SweepConfig:
    """A sweep config from TOML: every key is checked against the settings (unknown keys, types, ranges); the
    `[[grid]]` tables become `SweepConfig.grids`, `[[variant]]` tables `variants`."""
    import tomllib
    from pathlib import Path

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SettingsError(f"{path}: cannot read sweep config ({err})") from None
    raw.setdefault("name", path.stem)
    if "grids" in raw or "variants" in raw:
        raise SettingsError(f"{path}: write the grid blocks as [[grid]] tables and variants as [[variant]] tables")
    if "grid" not in raw:
        raise SettingsError(f"{path}: no [[grid]] table")
    raw["grids"] = raw.pop("grid")
    if "variant" in raw:
        raw["variants"] = raw.pop("variant")
    run = raw.get("run") if isinstance(raw.get("run"), dict) else {}
    for key in SET_BY_GRID:
        table, _, name = key.rpartition(".")
        scope = run.get(table, {}) if table else run
        if isinstance(scope, dict) and name in scope:
            raise SettingsError(f"{path}: run.{key} is set by each [[grid]] block (and [ot] / [[variant]] for "
                                "the objective), not in [run]")
    try:
        return from_mapping(SweepConfig, raw, "config")
    except SettingsError as err:
        raise SettingsError(f"{path}: {err}") from None
