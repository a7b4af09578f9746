import pandas as pd
import streamlit as st
import torch

from optical_core.data.bitext import mafand_languages
from optical_core.data.clir import ntrex_languages
from optical_core.data.corpora import PROJECT_ROOT
from optical_core.plots import loss_curve_figure
from optical_core.settings import (
    DEMO_BUDGET,
    LADDERS,
    Budget,
    LossConfig,
    StudentSpec,
    TrainConfig,
    load_sweep_config,
)
from pages.common import (
    OT_CHOICES_NOTE,
    job_manager,
    session_id,
    setting_input,
    teacher,
)

st.title("Train a student")
st.caption("Training runs in the background: the app stays responsive, and you can leave this page and come back. "
           f"The default budget ({DEMO_BUDGET.n_pairs} pairs, {DEMO_BUDGET.steps} steps) is for trying the "
           "instrument in under a minute, not for comparing objectives: the study's sweeps train far longer.")


@st.cache_data(show_spinner=False)
def study_kd_weight() -> float:
    """The KD weight of the study's OT+KD objective (configs/study.toml's ot-kd variant, chosen on dev)."""
    try:
        variants = load_sweep_config(PROJECT_ROOT / "configs" / "study.toml").variants
        return next(v.loss.kd_weight for v in variants if v.name == "ot-kd")
    except (ValueError, StopIteration):  # no study config here: any positive weight is an OT+KD
        return 1.0


OT_KD = "ot-kd"
OBJECTIVES = {  # the three objectives of the study, by name; OT+KD is OT with a KD term (LossConfig.kd_weight > 0)
    "kd": "KD: MSE between the student's pooled LR embedding and the teacher's pooled English one",
    "ot": "OT: the transport cost <P, C> between student LR tokens and teacher English tokens (pure OT)",
    OT_KD: "OT+KD: <P, C> + w x the KD term, w the KD weight below",
}
languages = sorted(set(mafand_languages()) & set(ntrex_languages()))
devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
student_default = StudentSpec()

with st.form("train"):
    c1, c2, c3, c4 = st.columns(4)
    lang = c1.selectbox("Language", languages, index=languages.index("swa") if "swa" in languages else 0)
    family = setting_input(c2, StudentSpec, "family", label="Student family")
    sizes = sorted({n for ladder in LADDERS.values() for n in ladder})
    layers = c3.selectbox("Size (first L layers)", sizes, index=sizes.index(student_default.layers),
                          help="Each family has its own ladder; a size outside it is refused.")
    head_init = setting_input(c4, StudentSpec, "head_init", label="Head initialisation")
    objective = c1.radio("Objective", list(OBJECTIVES), horizontal=True, help="  \n".join(OBJECTIVES.values()),
                         format_func=lambda o: o.upper().replace("-", "+"))
    seed = setting_input(c2, TrainConfig, "seed")
    device = c3.selectbox("Device", devices, help="GPU listed when one is present.")
    st.markdown("**OT options** (used by OT and OT+KD)")
    o1, o2, o3, o4, o5 = st.columns(5)
    loss_fields = {name: setting_input(col, LossConfig, name) for col, name in
                   zip((o1, o2, o3, o4), ("reg", "cost", "marginals", "plan_gradient"))}
    kd_weight = setting_input(o5, LossConfig, "kd_weight", value=study_kd_weight(), label="KD weight w (OT+KD)")
    st.caption(f"OT+KD is OT with a KD term: loss = <P, C> + w x KD. w is used by OT+KD only (KD and pure OT ignore "
               f"it); the study's OT+KD uses w = {study_kd_weight():g}, chosen on the dev collection.")
    st.markdown("**Budget**")
    b1, b2, b3, b4, b5 = st.columns(5)
    budget_fields = {name: setting_input(col, Budget, name, value=getattr(DEMO_BUDGET, name)) for col, name in
                     zip((b1, b2, b3, b4, b5), ("n_pairs", "epochs", "batch_size", "max_length", "lr"))}
    submitted = st.form_submit_button("Train", type="primary")
st.caption(OT_CHOICES_NOTE)

if submitted and objective == OT_KD and kd_weight <= 0:
    st.error("OT+KD needs a KD weight w above 0 (w = 0 is pure OT).")
elif submitted:
    try:
        config = TrainConfig(lang=lang, student=StudentSpec(family, int(layers), head_init=head_init),
                             loss=LossConfig(method="kd" if objective == "kd" else "ot",
                                             kd_weight=kd_weight if objective == OT_KD else 0.0, **loss_fields),
                             budget=Budget(**budget_fields), seed=seed, device=device)
    except ValueError as err:  # SettingsError: one line naming the field and what is allowed
        st.error(str(err))
    else:
        job = job_manager().start(config, owner=session_id(), teacher=teacher())
        st.toast(f"Started {job.name}")


def result_table(job) -> pd.DataFrame:
    """The run's start beside the trained student on the same headline queries: did training do anything?"""
    rows = [dict(student="start (step 0, before any update)", **job.start_metrics)] if job.start_metrics else []
    rows.append(dict(student=f"trained ({len(job.history)} steps)", **job.metrics))
    if job.start_metrics:
        rows.append(dict(student="trained - start", **{k: job.metrics[k] - job.start_metrics[k] for k in job.metrics}))
    return pd.DataFrame(rows).round(4)


@st.fragment(run_every=1.0)
def job_panel():
    jobs = sorted(job_manager().jobs(owner=session_id()), key=lambda j: j.started, reverse=True)
    if not jobs:
        st.info("No training run in this session yet.")
        return
    for job in jobs:
        with st.container(border=True):
            st.markdown(f"**{job.name}** · {job.status} · {job.elapsed_s:.0f} s")
            if job.active:
                st.progress(job.fraction, text=f"step {len(job.history)} / {job.total_steps or '?'}")
                if st.button("Cancel", key=f"cancel-{job.id}"):
                    job_manager().cancel(job.id)
            if job.history:
                st.plotly_chart(loss_curve_figure({job.config.loss.method: [h.__dict__ for h in job.history]}),
                                width="stretch", key=f"loss-{job.id}-{len(job.history)}")
            if job.status == "done":
                st.success(f"Saved checkpoint {job.checkpoint}")
                if job.metrics is not None:
                    st.dataframe(result_table(job), hide_index=True)
                if job.config.budget.n_pairs < 5000:
                    st.caption("Toy-scale run: a few hundred pairs on CPU; scores are not comparable to a full run.")
            elif job.status == "failed":
                st.error(job.error)
            elif job.status == "cancelled":
                st.warning("Cancelled: no checkpoint was written.")


job_panel()
