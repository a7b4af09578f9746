import pandas as pd
import streamlit as st

from optical_core.data.clir import build_collection
from optical_core.evaluate.comparison import (differing_settings, largest_differences, manifests_side_by_side,
                                              pairwise_table, wins_losses)
from optical_core.evaluate.scoring import score_student
from optical_core.store.locations import all_checkpoints
from pages.common import checkpoint_label, load_checkpoint_cached, teacher

st.title("Compare checkpoints")
entries = {checkpoint_label(e): e for e in all_checkpoints() if e.manifest is not None}
if len(entries) < 2:
    st.info("Compare needs at least two readable checkpoints: train some on the Train page or run a sweep.")
    st.stop()

chosen = st.multiselect("Checkpoints (two or more)", list(entries), default=list(entries)[:2])
if len(chosen) < 2:
    st.stop()
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
    st.stop()
lang = langs.pop()
metric = st.selectbox("Metric", ["mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@10"])


@st.cache_data(show_spinner="Scoring on the NTREX headline collection...")
def scores_of(path: str, lang: str):
    encoder, _ = load_checkpoint_cached(path)
    return score_student(encoder, teacher(), build_collection("headline", lang))


scores = {}
for name, entry in picked.items():
    try:
        scores[name] = scores_of(str(entry.path), lang)
    except Exception as err:
        st.error(f"{name}: {err}")
if len(scores) < 2:
    st.stop()
st.subheader(f"Paired comparison ({metric}, {lang}, headline -> article)")
st.dataframe(pairwise_table(scores, metric).round(4), hide_index=True)
names = list(scores)
a, b = st.columns(2)
first = a.selectbox("A", names, index=0)
second = b.selectbox("B", names, index=1)
st.dataframe(pd.DataFrame([dict(A=first, B=second, **{f"queries where A {k}": v for k, v in
                                                        wins_losses(scores[first], scores[second], metric).items()})]),
             hide_index=True)
queries = build_collection("headline", lang).queries
st.subheader("Queries where they differ most")
st.dataframe(largest_differences(scores[first], scores[second], metric, queries).round(4), hide_index=True)
