import json
from dataclasses import asdict

import pandas as pd
import streamlit as st

from optical_core.errors import CheckpointError
from optical_core.plots import loss_curve_figure
from optical_core.store.checkpoints import delete_checkpoint, read_train_log
from optical_core.store.locations import all_checkpoints, checkpoint_root

st.title("Checkpoints")
st.caption(f"App checkpoints live in `{checkpoint_root()}`; sweep checkpoints under `runs/<sweep>/cells/`.")
entries = all_checkpoints()
if not entries:
    st.info("No checkpoints yet.")
    st.stop()

rows = [dict(name=e.name, status="ok" if e.error is None else "unreadable",
             method=e.manifest.method if e.manifest else None, lang=e.manifest.lang if e.manifest else None,
             size=e.manifest.student.name if e.manifest else None,
             created=e.manifest.created if e.manifest else None, problem=e.error) for e in entries]
st.dataframe(pd.DataFrame(rows), hide_index=True)
for e in entries:
    if e.error:
        st.error(f"{e.name}: {e.error}")

name = st.selectbox("Inspect", [e.name for e in entries])
entry = next(e for e in entries if e.name == name)
if entry.manifest:
    st.json(json.loads(json.dumps(asdict(entry.manifest))))
    log = read_train_log(entry.path)
    if log:
        st.plotly_chart(loss_curve_figure({entry.manifest.method: log}), width="stretch")

if entry.path.parent == checkpoint_root():
    confirm = st.checkbox(f"Yes, delete {entry.name} permanently")
    if st.button("Delete", disabled=not confirm, type="primary"):
        try:
            delete_checkpoint(checkpoint_root(), entry.name)
            st.success(f"Deleted {entry.name}")
            st.rerun()
        except CheckpointError as err:
            st.error(str(err))
else:
    st.caption("Sweep checkpoints are managed by their sweep (delete the sweep's directory to remove them).")
