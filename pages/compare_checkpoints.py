"""The Compare page's checkpoint view: two or more trained or rebuilt students scored now on the NTREX headline
collection of their language, paired over its queries."""

import pandas as pd
import streamlit as st

from optical_core.data.clir import build_collection
from optical_core.settings import PRIMARY_METRIC, TASK_METRICS
from optical_core.store.locations import all_checkpoints
from pages.common import checkpoint_label, load_checkpoint_cached, teacher


@st.cache_data(show_spinner="Scoring on the NTREX headline collection...")
def scores_of(path: str, lang: str):
    from optical_core.evaluate.scoring import score_student

    encoder, _ = load_checkpoint_cached(path)
    return score_student(encoder, teacher(), build_collection("headline", lang))


def compare_checkpoints() -> None:
    from optical_core.evaluate.comparison import (differing_settings, largest_differences, manifests_side_by_side,
                                                  pairwise_table, wins_losses)

    entries = {checkpoint_label(e): e for e in all_checkpoints() if e.manifest is not None}
    if len(entries) < 2:
        st.info("Comparing checkpoints needs at least two readable ones: train some on the Train page or rebuild "
                "study cells. Two study cells compare from their records without weights (above).")
        return
    chosen = st.multiselect("Checkpoints (two or more)", list(entries), default=list(entries)[:2])
    if len(chosen) < 2:
        return
    picked = {entries[c].name: entries[c] for c in chosen}
    differ = differing_settings({n: e.manifest for n, e in picked.items()})
    differ.pop("seed", None)
    if differ:  # beyond the objective itself, anything listed here is mixed into the differences below
        st.warning("These runs differ in: " + "; ".join(f"{key} ({' vs '.join(map(str, values))})"
                                                       for key, values in differ.items()))
    st.subheader("Manifests")
    st.dataframe(manifests_side_by_side({n: e.manifest for n, e in picked.items()}).astype(str))
    langs = {e.manifest.lang for e in picked.values()}
    if len(langs) > 1:
        st.error(f"These checkpoints are for different languages ({', '.join(sorted(langs))}): a paired comparison "
                 "needs the same queries. Pick checkpoints of one language.")
        return
    lang = langs.pop()
    metrics = list(TASK_METRICS["headline"])
    metric = st.selectbox("Metric", metrics, index=metrics.index(PRIMARY_METRIC))
    scores = {}
    for name, entry in picked.items():
        try:
            scores[name] = scores_of(str(entry.path), lang)
        except Exception as err:
            st.error(f"{name}: {err}")
    if len(scores) < 2:
        return
    st.subheader(f"Paired comparison ({metric}, {lang}, headline -> article)")
    st.dataframe(pairwise_table(scores, metric).round(4), hide_index=True)
    names = list(scores)
    a, b = st.columns(2)
    first = a.selectbox("A", names, index=0)
    second = b.selectbox("B", names, index=1)
    counts = wins_losses(scores[first], scores[second], metric)
    st.dataframe(pd.DataFrame([{"A": first, "B": second, "queries where A wins": counts["wins"],
                                "queries where A ties": counts["ties"], "queries where A loses": counts["losses"]}]),
                 hide_index=True)
    st.subheader("Queries where they differ most")
    st.dataframe(largest_differences(scores[first], scores[second], metric,
                                     build_collection("headline", lang).queries).round(4), hide_index=True)
