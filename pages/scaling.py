import streamlit as st

from optical_core.plots import accuracy_figure, gain_figure, learning_curve_figure, size_effect_figure
from optical_core.settings import HEADLINE_METRICS
from optical_core.store.locations import study_dirs
from optical_core.study.analysis import where_kd_learned
from pages.common import load_study

st.title("Scaling results")
studies = study_dirs()
if not studies:
    st.info("No study results yet: run a sweep (`python -m optical_core sweep --config configs/quick.toml`).")
    st.stop()

c1, c2, c3 = st.columns(3)
label = c1.selectbox("Study", list(studies))
metric = c2.selectbox("Metric", HEADLINE_METRICS)
axis = c3.radio("Size axis", ["params_non_embedding", "params_total"], horizontal=True,
                format_func=lambda a: "non-embedding params" if a == "params_non_embedding" else "total params")
summary = load_study(studies[label], metric)
if summary.superseded:
    st.error(summary.superseded)
if summary.curves is not None and len(summary.curves):
    st.plotly_chart(learning_curve_figure(summary.curves), width="stretch")
if summary.gains.empty:
    st.warning("This study has no finished pair of OT and KD cells yet.")
    st.stop()

f1, f2 = st.columns(2)
family = f1.selectbox("Student family", sorted(summary.gains.family.unique()))
langs = f2.multiselect("Languages", sorted(summary.gains.lang.unique()), default=sorted(summary.gains.lang.unique()))
gains = summary.gains[(summary.gains.family == family) & summary.gains.lang.isin(langs)]
accuracy = summary.accuracy[(summary.accuracy.family == family) & summary.accuracy.lang.isin(langs)]

st.markdown(summary.families.get(family, ""))
st.plotly_chart(gain_figure(gains, axis=axis, y="abs_diff", title=f"OT - KD in {metric} (absolute)"),
                width="stretch")
learned, _ = where_kd_learned(gains)  # a relative gain over KD means something only where KD learned
st.plotly_chart(gain_figure(learned, axis=axis), width="stretch")
st.caption(f"Relative gain: the {len(learned)} of {len(gains)} size-language cells where KD beats its start "
           "(paired over queries, p < 0.05).")
if summary.along is not None and len(summary.along):
    st.plotly_chart(size_effect_figure(summary.along[summary.along.family == family],
                                       f"{family}: slope of (objective - KD) in {metric} on log10(size), by step"),
                    width="stretch")
    st.caption("Pooled over every language of the study (per-language intercepts), whatever the filter above.")
st.plotly_chart(accuracy_figure(accuracy, axis=axis), width="stretch")
if summary.collapses is not None and len(summary.collapses):
    st.subheader("Collapsed runs (mean pairwise query cosine > 0.9), over every language and seed")
    st.dataframe(summary.collapses[summary.collapses.family == family], hide_index=True)

st.subheader("Slopes on log10(non-embedding params)")
st.dataframe(summary.slopes[summary.slopes.family == family].round(4), hide_index=True)
st.subheader("Gains per size and language")
st.dataframe(gains.round(4), hide_index=True)
st.subheader("Tidy results table")
table = summary.results[summary.results.metric == metric]
st.dataframe(table, hide_index=True)
d1, d2 = st.columns(2)
d1.download_button("Download results (CSV)", summary.results.to_csv(index=False), "results.csv", "text/csv")
d2.download_button("Download gains (CSV)", summary.gains.to_csv(index=False), "gains.csv", "text/csv")
