import streamlit as st

from optical_core.data.bitext import load_mafand
from optical_core.data.clir import load_ntrex
from optical_core.distil.alignment import align_pair, run_objective
from optical_core.plots import transport_heatmap
from optical_core.settings import LossConfig
from optical_core.store.locations import all_checkpoints
from pages.common import (
    checkpoint_label,
    load_checkpoint_cached,
    setting_input,
    teacher,
)

st.title("Token alignments")
st.caption("The entropic OT plan between a student's LR tokens and the teacher's English tokens: the alignment "
           "the OT objective optimises. For a KD student the same plan is computed for inspection only.")

entries = [e for e in all_checkpoints() if e.manifest is not None]
if not entries:
    st.info("No readable checkpoint yet: train one on the Train page (or run a sweep).")
    st.stop()

labels = {checkpoint_label(e): e for e in entries}
first = st.selectbox("Checkpoint", list(labels))
entry = labels[first]
m = entry.manifest


def partner_of(e):
    """The other method's student of the same family, size, language and seed, if there is one."""
    for other in entries:
        om = other.manifest
        if (om.method != e.manifest.method and om.lang == e.manifest.lang and om.seed == e.manifest.seed
                and om.student == e.manifest.student):
            return checkpoint_label(other)
    return None


options = ["(none)"] + [k for k in labels if k != first]
suggested = partner_of(entry)
second = st.selectbox("Compare with", options, index=options.index(suggested) if suggested in options else 0,
                      help="Defaults to the other objective's student of the same size, language and seed.")

source = st.radio("Sentence pair", ["corpus (MAFAND dev)", "NTREX (held-out test)", "type your own"], horizontal=True)
if source == "type your own":
    lr_text = st.text_input(f"{m.lang} sentence", "Rais amewasili Nairobi leo asubuhi.")
    en_text = st.text_input("English sentence", "The president arrived in Nairobi this morning.")
else:
    try:
        if source.startswith("corpus"):
            pairs = load_mafand(m.lang)
            lr_lines, en_lines = pairs.source, pairs.target
        else:
            ntrex = load_ntrex(m.lang)
            lr_lines, en_lines = ntrex.foreign, ntrex.english
    except ValueError as err:
        st.error(str(err))
        st.stop()
    index = st.number_input("Pair number", 0, len(lr_lines) - 1, 0)
    lr_text, en_text = lr_lines[int(index)], en_lines[int(index)]
    st.markdown(f"**{m.lang}:** {lr_text}  \n**en:** {en_text}")

reg = setting_input(st, LossConfig, "reg", value=m.loss.reg, label="epsilon (reg)",
                    key=f"reg-{entry.path}")
st.caption(f"Each plan is solved as its checkpoint's training solved it (cost, marginals, iterations, max length); "
           f"epsilon opens at the first checkpoint's own value ({m.loss.reg:g}) and applies to both when changed.")


@st.cache_resource(max_entries=4, show_spinner="Building the checkpoint's objective...")
def objective_of(path: str, reg: float):
    encoder, manifest = load_checkpoint_cached(path)
    return run_objective(manifest.config, encoder, teacher(), reg=reg)


def show(entry, column):
    try:
        encoder, manifest = load_checkpoint_cached(entry.path)
        alignment = align_pair(encoder, teacher(), lr_text, en_text, objective_of(str(entry.path), reg),
                               manifest.config.budget.max_length)
    except Exception as err:  # a corrupt checkpoint or odd input must not take the page down
        column.error(f"{entry.name}: {err}")
        return
    if any(alignment.dropped_tokens):
        column.warning(f"Cut to the run's max length ({manifest.config.budget.max_length} tokens): "
                       f"{alignment.dropped_tokens[0]} {manifest.lang} and {alignment.dropped_tokens[1]} English "
                       "tokens were dropped, as training would have dropped them.")
    share, chance, shared = alignment.identical_share
    column.markdown(f"**{manifest.method.upper()}** student · <P, C> = {alignment.transport_cost:.5f} · plan sharpness "
                    f"{alignment.sharpness:.3f} (0 = blurred, 1 = one-to-one) · identical-token share "
                    + (f"{share:.2f} over {shared} shared tokens (independent plan: {chance:.2f})" if shared else
                       "n/a (no token shared with the English side)"))
    column.plotly_chart(transport_heatmap(alignment.plan, alignment.lr_tokens, alignment.en_tokens, alignment.cost,
                                          title=f"{manifest.method}: transport plan"),
                        width="stretch", key=f"plan-{entry.path}")
    column.plotly_chart(transport_heatmap(alignment.cost, alignment.lr_tokens, alignment.en_tokens,
                                          title=f"{manifest.method}: cost matrix", value_name="cost"),
                        width="stretch", key=f"cost-{entry.path}")
    column.dataframe(alignment.top_pairs().round(4), hide_index=True)


if not lr_text.strip() or not en_text.strip():
    st.warning("Enter both sentences.")
    st.stop()
columns = st.columns(2 if second != "(none)" else 1)
show(entry, columns[0])
if second != "(none)":
    show(labels[second], columns[1])
