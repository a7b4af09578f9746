import pandas as pd
import streamlit as st

from optical_core.data.clir import build_collection
from optical_core.settings import PRIMARY_METRIC
from optical_core.study.explore import cell_scores, compare_cells, differing_queries, partner
from optical_core.study.records import UnreadableRecord, read_top_documents
from pages.explore_common import RELEVANT, pick_cell, pick_study, rebuild_button

st.title("Compare students")
RECORDS, CHECKPOINTS = "two study cells (their records: no weights needed)", "checkpoints (scored now)"
source = st.radio("Compare", [RECORDS, CHECKPOINTS], horizontal=True)
if source == CHECKPOINTS:
    from pages.compare_checkpoints import compare_checkpoints

    compare_checkpoints()
    st.stop()


@st.cache_data(show_spinner="Reading the NTREX collection...")
def collection_of(task: str, lang: str):
    return build_collection(task, lang)


def top_documents(cell):
    """The cell's recorded top documents on its main task, or None (said in one line)."""
    if cell.family == "baseline":
        st.caption(f"{cell.id}: baselines record their scores, not their retrieved documents.")
        return None
    try:
        return read_top_documents(cell.path, cell.task)
    except UnreadableRecord as err:
        st.info(str(err))
        rebuild_button(st, study, cell, "compare")
        return None


picked = pick_study(st, "compare-study", prefer=lambda cells: any(c.has_top_documents for c in cells))
if picked is None:
    st.stop()
_, study, cells = picked
if not cells:
    st.info("This study has no finished cell yet.")
    st.stop()
recorded = [c for c in cells if c.trained and c.has_top_documents] or [c for c in cells if c.trained] or cells
first = next((c for c in recorded if c.method == "kd"), recorded[0])  # KD beside OT of the same student
st.markdown("**A**")
a = pick_cell(st, cells, "compare-a", first)
st.markdown("**B**")
b = pick_cell(st, cells, "compare-b", partner(a, cells, method="ot" if a.method != "ot" else "kd")
              or next((c for c in cells if c != a), a))
if a.lang != b.lang:
    st.error(f"A is {a.lang} and B is {b.lang}: a paired comparison needs the same queries. Pick one language.")
    st.stop()
try:
    scores_a, scores_b = cell_scores(a), cell_scores(b)
    metrics = [m for m in scores_a.columns if m != "qid" and m in scores_b.columns]
    metric = st.selectbox("Metric", metrics, index=metrics.index(PRIMARY_METRIC) if PRIMARY_METRIC in metrics else 0)
    result = compare_cells(scores_a, scores_b, metric)
except UnreadableRecord as err:  # a missing or damaged per-query file: one line
    st.error(str(err))
    st.stop()
t = result.test
st.subheader(f"Paired comparison ({metric}, {a.lang}, {a.task}, each cell at its selected step)")
st.caption(f"A = {a.label} at step {a.selected_step}; B = {b.label} at step {b.selected_step}. 95% CI: bootstrap over "
           "queries; p: paired sign-flip randomisation test.")
st.dataframe(pd.DataFrame([{"A": a.id, "B": b.id, "mean A": t.mean_a, "mean B": t.mean_b, "A - B": t.difference,
                            "ci_low": t.ci_low, "ci_high": t.ci_high, "p_value": t.p_value, "queries": t.n,
                            "queries where A wins": result.wins, "queries where A ties": result.ties,
                            "queries where A loses": result.losses}]).round(4), hide_index=True)

collection = collection_of(a.task, a.lang)
differ = differing_queries(result, collection.queries, collection.query_translations, collection.qrels,
                           top_documents(a), top_documents(b), k=10, depth=3)
st.subheader("Queries where they differ most")
st.dataframe(differ.drop(columns=["a_top", "b_top"]).rename(columns={"a": f"{metric} A", "b": f"{metric} B"})
             .round(4), hide_index=True)
for row in differ.itertuples():
    with st.expander(f"{row.qid} · A - B = {row.diff:+.3f} · {row.query[:100]}"):
        st.markdown(f"**{a.lang}:** {row.query}  \n**en (gold translation):** {row.english}")
        left, right = st.columns(2)
        for column, name, cell, top in ((left, "A", a, row.a_top), (right, "B", b, row.b_top)):
            column.markdown(f"**{name}: {cell.label}**, its top 3")
            if top is None:
                column.caption("no top documents recorded for this cell")
                continue
            for rank, doc in enumerate(top, 1):
                mark = f"{RELEVANT} · " if doc in row.relevant else ""
                column.markdown(f"{rank}. {mark}`{doc}`: {collection.documents.get(doc, '')[:300]}...")
