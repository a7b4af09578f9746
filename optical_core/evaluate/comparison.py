"""Side-by-side comparison of checkpoints scored on the same queries."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from optical_core.evaluate.significance import paired_comparison
from optical_core.settings import flat_settings
from optical_core.store.checkpoints import RunManifest

MANIFEST_FIELDS = ("method", "lang", "params_total", "params_non_embedding", "vocab_size", "seed", "steps",
                   "n_pairs", "wall_time_s", "device", "git_commit", "created")


def manifests_side_by_side(manifests: dict[str, RunManifest]) -> pd.DataFrame:
    rows = {}
    for name, m in manifests.items():
        row = {f: getattr(m, f) for f in MANIFEST_FIELDS}
        row.update({f"student.{k}": v for k, v in asdict(m.student).items()})
        row.update({f"loss.{k}": v for k, v in asdict(m.loss).items()})
        row.update({f"budget.{k}": v for k, v in asdict(m.config.budget).items()})
        row["bitext_sha256"] = m.data.get("bitext_sha256", "")[:12]
        rows[name] = row
    return pd.DataFrame(rows)


def differing_settings(manifests: dict[str, RunManifest]) -> dict[str, list]:
    """The settings (config fields, e.g. 'budget.n_pairs', 'loss.reg', 'lang') on which the runs differ,
    each with its value per run in order: what makes a comparison of two checkpoints not like for like."""
    flat = [flat_settings(asdict(m.config)) for m in manifests.values()]
    keys = sorted(set().union(*flat)) if flat else []
    return {k: [f.get(k) for f in flat] for k in keys if len({repr(f.get(k)) for f in flat}) > 1}


def paired_scores(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-query scores of two systems on their common queries: columns qid, <metric>_a, <metric>_b, diff."""
    joined = a[["qid", metric]].merge(b[["qid", metric]], on="qid", suffixes=("_a", "_b"))
    joined["diff"] = joined[f"{metric}_a"] - joined[f"{metric}_b"]
    return joined


def pairwise_table(scores: dict[str, pd.DataFrame], metric: str) -> pd.DataFrame:
    """Every ordered pair (A, B): mean difference A - B with bootstrap CI and randomisation p."""
    names = list(scores)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            joined = paired_scores(scores[a], scores[b], metric)
            cmp = paired_comparison(joined[f"{metric}_a"].to_numpy(), joined[f"{metric}_b"].to_numpy())
            rows.append(dict(a=a, b=b, metric=metric, mean_a=cmp.mean_a, mean_b=cmp.mean_b, diff=cmp.difference,
                             ci_low=cmp.ci_low, ci_high=cmp.ci_high, p_value=cmp.p_value, n=cmp.n))
    return pd.DataFrame(rows)


def wins_losses(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> dict[str, int]:
    """Queries where A scores higher, the same, lower than B."""
    diff = paired_scores(a, b, metric)["diff"]
    return {"wins": int((diff > 0).sum()), "ties": int((diff == 0).sum()), "losses": int((diff < 0).sum())}


def largest_differences(a: pd.DataFrame, b: pd.DataFrame, metric: str, queries: dict[str, str],
                        k: int = 10) -> pd.DataFrame:
    joined = paired_scores(a, b, metric)
    joined["query"] = joined.qid.map(queries)
    order = joined["diff"].abs().sort_values(ascending=False).index[:k]
    return joined.loc[order].reset_index(drop=True)
