import json
from dataclasses import asdict

import pandas as pd
import streamlit as st

from optical_core.errors import CheckpointError
from optical_core.plots import loss_curve_figure
from optical_core.store.checkpoints import delete_checkpoint, read_train_log
from optical_core.store.export import export_sentence_transformer
from optical_core.store.locations import all_checkpoints, checkpoint_root, exports_root

st.title("Checkpoints")
st.caption(f"App checkpoints (trained on the Train page, or rebuilt from a study cell) live in `{checkpoint_root()}`; "
           "sweep checkpoints under `runs/<sweep>/cells/`. The committed studies keep no weights: their cells open "
           "from their records on the Alignment and Compare pages, and a rebuilt cell lands here.")
entries = all_checkpoints()
if not entries:
    st.info("No checkpoints yet: train one on the Train page, or rebuild a study cell from the Alignment page.")
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

if entry.manifest:
    with st.expander("Export for sentence-transformers"):
        target = exports_root() / entry.name
        st.caption(f"Writes `{target}`: Transformer + mean pooling + the projection head (Dense) + normalisation, "
                   "loadable offline with `SentenceTransformer(path)`. Encode English documents with the teacher "
                   "(all-MiniLM-L6-v2) and rank by cosine.")
        if st.button("Export", key=f"export-{entry.name}"):
            try:
                with st.spinner("Exporting..."):
                    path = export_sentence_transformer(entry.path, target)
                st.success(f"Exported to {path}")
                st.code(f"from sentence_transformers import SentenceTransformer\n"
                        f"student = SentenceTransformer({str(path)!r})\n"
                        "teacher = SentenceTransformer('sentence-transformers/all-MiniLM-L6-v2')"
                        "  # or its local folder",
                        language="python")
            except CheckpointError as err:
                st.error(str(err))

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
