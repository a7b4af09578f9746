import json

import streamlit as st

from optical_core.store.locations import study_dirs

st.title("Does student size change the gain of OT distillation over KD?")
st.markdown(
    "**OPTICAL** (Huang, Yu & Allan, WSDM 2023) distils an English retrieval teacher into a student query "
    "encoder for a low-resource language from bitext only, with a token-level **optimal-transport** loss. "
    "The baseline is sentence-level **knowledge distillation** (MSE; Reimers & Gurevych, 2020). Retrieval is "
    "zero-shot: English documents are encoded by the frozen teacher, LR queries by the student, and no relevance "
    "label is ever trained on. This app measures the OT-vs-KD gain across student sizes."
)

studies = study_dirs()
if not studies:
    st.info("No study results yet. Run `python -m optical_core sweep --config configs/quick.toml` "
            "(minutes), then reload.")
    st.stop()

label = st.selectbox("Study", list(studies), help="The committed studies, the full study first (a superseded one is "
                     "labelled so; the superseded first study is archived unread under results/archive/), then your "
                     "own sweeps under runs/.")
# Imported after the first widgets are sent: the browser loads their code while pandas imports (half a second).
from optical_core.plots import gain_figure, learning_curve_figure  # noqa: E402
from optical_core.study.answer import short_answer  # noqa: E402
from optical_core.study.summary import (  # noqa: E402
    DIFFERENCE_FIGURE,
    LEARNING_CURVES_FIGURE,
    budget_note,
    sweep_budget,
    sweep_task,
)
from pages.common import LICENCES, OT_CHOICES_NOTE, load_study, published_or_interactive  # noqa: E402

summary = load_study(studies[label])
sweep = summary.sweep
budget = sweep_budget(sweep)
st.subheader("The answer")
if summary.superseded:
    st.error(summary.superseded)
for sentence in short_answer(summary):  # at most three, generated: the regime, the trend, the main caveat
    st.markdown(sentence)
family = "me5" if "me5" in set(summary.gains.family) else next(iter(summary.gains.family), None)
if family:
    published_or_interactive(
        summary, DIFFERENCE_FIGURE.format(family=family),
        f"{family}: OT - KD in {summary.metric} vs student size, one line per language (95% CI), as published",
        lambda: gain_figure(summary.gains[summary.gains.family == family], y="abs_diff",
                            title=f"OT - KD in {summary.metric} vs student size"), key="answer_figure")
if budget and budget.get("n_pairs", 0) < 5000 and summary.curves is None:
    st.warning("Toy-scale setting: " + budget_note(sweep) + " Absolute scores are far below what a full "
               "training budget would give; read the figures as a comparison of methods at equal, small budget.")
with st.expander("The full verdict (every slope, the relative gain, along training, collapse, caveats)"):
    st.markdown(summary.verdict)
    for other, text in summary.families.items():
        if text != summary.verdict:
            st.markdown(f"*Control family `{other}`:* {text}")
if summary.curves is not None and len(summary.curves):
    with st.expander("Learning curves"):
        published_or_interactive(
            summary, LEARNING_CURVES_FIGURE.format(task=sweep_task(sweep)),
            f"{summary.metric} along training, per student, with the baselines (x: collapsed), as published",
            lambda: learning_curve_figure(summary.curves), key="curves_figure")

languages = summary.results.lang.nunique()
st.caption(f"{summary.results.cell_id.nunique()} cells finished · {languages} language{'s' if languages != 1 else ''} "
           f"· metric {summary.metric}")

if len(summary.baselines):
    with st.expander("Baselines (same queries)"):
        # A markdown table, not st.dataframe: the data grid's code (1.2 MB) would load with the figure above.
        table = summary.baselines.pivot(index="lang", columns="method", values="value").reset_index()
        shown = table.astype(object).where(table.notna(), None)  # a language without that baseline: a dash
        st.markdown(shown.to_markdown(index=False, floatfmt=".3f", missingval="–"))

st.caption("Provenance: " + summary.provenance + ". " + budget_note(sweep))
with st.expander("Provenance: device, budget, versions"):
    provenance = {"budget": budget, "git_commit": sweep.get("git_commit"), "versions": sweep.get("versions"),
                  "started": sweep.get("started")}
    # Plain text: st.json's viewer (0.1 MB of code) and st.code's highlighter (1.5 MB) would load with the figure.
    st.text(json.dumps(provenance, indent=2))
st.caption(OT_CHOICES_NOTE)
st.caption("Data and model licences: " + LICENCES)
