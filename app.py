"""optical: the Streamlit app. Pages only arrange widgets and call optical_core."""

import streamlit as st

st.set_page_config(page_title="optical: OT vs KD distillation at scale", page_icon="🔭", layout="wide")

pages = [
    st.Page("pages/overview.py", title="Overview", icon=":material/lightbulb:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/alignment.py", title="Alignment heatmaps", icon=":material/grid_on:"),
    st.Page("pages/scaling.py", title="Scaling results", icon=":material/trending_up:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/search.py", title="Search", icon=":material/search:"),
    st.Page("pages/checkpoints.py", title="Checkpoints", icon=":material/folder:"),
]
st.navigation(pages).run()
