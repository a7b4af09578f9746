import pandas as pd
import streamlit as st
import torch

from optical_core.data.bitext import mafand_languages
from optical_core.data.clir import ntrex_languages
from optical_core.distil.losses import LossConfig
from optical_core.plots import loss_curve_figure
from optical_core.models.students import LADDERS, StudentSpec
from optical_core.distil.train import TrainConfig
from pages.common import OT_CHOICES_NOTE, job_manager, session_id, teacher

st.title("Train a student")
st.caption("Training runs in the background: the app stays responsive, and you can leave this page and come back.")

languages = sorted(set(mafand_languages()) & set(ntrex_languages()))
devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])

with st.form("train"):
    c1, c2, c3 = st.columns(3)
    lang = c1.selectbox("Language", languages, index=languages.index("swa") if "swa" in languages else 0)
    family = c2.selectbox("Student family", list(LADDERS), help="me5: multilingual-e5-small (4-bit weights, "
                          "dequantised). minilm: the English teacher truncated.")
    layers = c3.selectbox("Size (first L layers)", LADDERS["me5"], index=1)
    method = c1.radio("Objective", ["kd", "ot"], horizontal=True)
    seed = c2.number_input("Seed", 0, 10_000, 0)
    device = c3.selectbox("Device", devices, help="GPU listed when one is present.")
    st.markdown("**OT options** (used when the objective is ot)")
    o1, o2, o3, o4, o5 = st.columns(5)
    reg = o1.number_input("epsilon (reg)", 0.001, 10.0, 0.05, format="%.3f")
    cost = o2.selectbox("Cost", ["cosine", "sqeuclidean"])
    marginals = o3.selectbox("Marginals", ["uniform", "idf"])
    plan_gradient = o4.selectbox("Plan gradient", ["detach", "autodiff"])
    kd_weight = o5.number_input("+ KD term weight", 0.0, 100.0, 0.0)
    st.markdown("**Budget**")
    b1, b2, b3, b4, b5 = st.columns(5)
    pairs = b1.number_input("Bitext pairs", 16, 100_000, 128)
    epochs = b2.number_input("Epochs", 1, 50, 1)
    batch = b3.number_input("Batch size", 2, 512, 16)
    max_length = b4.number_input("Max length", 8, 512, 48)
    lr = b5.number_input("Learning rate", 1e-6, 1e-2, 2e-4, format="%.5f")
    submitted = st.form_submit_button("Train", type="primary")
st.caption(OT_CHOICES_NOTE)

if submitted:
    if layers not in LADDERS[family]:
        st.error(f"The {family} ladder has sizes {LADDERS[family]}; L{layers} is not one of them.")
    else:
        config = TrainConfig(
            lang=lang, student=StudentSpec(family, int(layers)),
            loss=LossConfig(method=method, reg=reg, cost=cost, marginals=marginals, plan_gradient=plan_gradient,
                            kd_weight=kd_weight),
            n_pairs=int(pairs), epochs=int(epochs), batch_size=int(batch), max_length=int(max_length), lr=float(lr),
            seed=int(seed), device=device)
        job = job_manager().start(config, owner=session_id(), teacher=teacher())
        st.toast(f"Started {job.name}")


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
                st.dataframe(pd.DataFrame([job.metrics]).round(4), hide_index=True)
                if job.config.n_pairs < 5000:
                    st.caption("Toy-scale run: a few hundred pairs on CPU; scores are not comparable to a full run.")
            elif job.status == "failed":
                st.error(job.error)
            elif job.status == "cancelled":
                st.warning("Cancelled: no checkpoint was written.")


job_panel()
