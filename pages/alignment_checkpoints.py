"""The Alignment page's checkpoint view: a trained or rebuilt student's plan for any sentence pair, typed or
picked, solved as its training solved it. Two checkpoints side by side share one colour scale."""

import streamlit as st

from optical_core.data.bitext import load_mafand
from optical_core.data.clir import load_ntrex
from optical_core.plots import transport_heatmap
from optical_core.settings import LossConfig
from optical_core.store.locations import all_checkpoints
from optical_core.study.explore import shared_range
from pages.common import checkpoint_label, load_checkpoint_cached, setting_input, teacher


@st.cache_resource(max_entries=4, show_spinner="Building the checkpoint's objective...")
def objective_of(path: str, reg: float):
    from optical_core.distil.alignment import run_objective

    encoder, manifest = load_checkpoint_cached(path)
    return run_objective(manifest.config, encoder, teacher(), reg=reg)


def partner_of(entry, entries):
    """The other method's student of the same family, size, language and seed, if there is one."""
    m = entry.manifest
    for other in entries:
        om = other.manifest
        if om.method != m.method and om.lang == m.lang and om.seed == m.seed and om.student == m.student:
            return checkpoint_label(other)
    return None


def sentence_pair(lang: str) -> tuple[str, str] | None:
    source = st.radio("Sentence pair", ["corpus (MAFAND dev)", "NTREX (held-out test)", "type your own"],
                      horizontal=True)
    if source == "type your own":
        return (st.text_input(f"{lang} sentence", "Rais amewasili Nairobi leo asubuhi."),
                st.text_input("English sentence", "The president arrived in Nairobi this morning."))
    try:
        if source.startswith("corpus"):
            pairs = load_mafand(lang)
            lr_lines, en_lines = pairs.source, pairs.target
        else:
            ntrex = load_ntrex(lang)
            lr_lines, en_lines = ntrex.foreign, ntrex.english
    except ValueError as err:
        st.error(str(err))
        return None
    index = int(st.number_input("Pair number", 0, len(lr_lines) - 1, 0))
    st.markdown(f"**{lang}:** {lr_lines[index]}  \n**en:** {en_lines[index]}")
    return lr_lines[index], en_lines[index]


def align(entry, lr_text: str, en_text: str, reg: float, column):
    from optical_core.distil.alignment import align_pair

    try:
        encoder, manifest = load_checkpoint_cached(entry.path)
        return manifest, align_pair(encoder, teacher(), lr_text, en_text, objective_of(str(entry.path), reg),
                                    manifest.config.budget.max_length)
    except Exception as err:  # a corrupt checkpoint or odd input must not take the page down
        column.error(f"{entry.name}: {err}")
        return None


def show(entry, manifest, alignment, column, plan_range, cost_range) -> None:
    if any(alignment.dropped_tokens):
        column.warning(f"Cut to the run's max length ({manifest.config.budget.max_length} tokens): "
                       f"{alignment.dropped_tokens[0]} {manifest.lang} and {alignment.dropped_tokens[1]} English "
                       "tokens were dropped, as training would have dropped them.")
    share, chance, shared = alignment.identical_share
    column.markdown(f"**{manifest.method.upper()}** student · <P, C> = {alignment.transport_cost:.5f} · plan "
                    f"sharpness {alignment.sharpness:.3f} (0 = blurred, 1 = one-to-one) · identical-token share "
                    + (f"{share:.2f} over {shared} shared tokens (independent plan: {chance:.2f})" if shared else
                       "n/a (no token shared with the English side)"))
    plan = transport_heatmap(alignment.plan, alignment.lr_tokens, alignment.en_tokens, alignment.cost,
                             title=f"{manifest.method}: transport plan")
    cost = transport_heatmap(alignment.cost, alignment.lr_tokens, alignment.en_tokens,
                             title=f"{manifest.method}: cost matrix", value_name="cost")
    column.plotly_chart(plan.update_traces(zmin=plan_range[0], zmax=plan_range[1]), width="stretch",
                        key=f"plan-{entry.path}")
    column.plotly_chart(cost.update_traces(zmin=cost_range[0], zmax=cost_range[1]), width="stretch",
                        key=f"cost-{entry.path}")
    column.dataframe(alignment.top_pairs().round(4), hide_index=True)


def checkpoint_alignments() -> None:
    entries = [e for e in all_checkpoints() if e.manifest is not None]
    if not entries:
        st.info("No readable checkpoint yet: train one on the Train page, rebuild a study cell, or run a sweep that "
                "keeps its checkpoints. The study's cells keep no weights: open them as study cells above.")
        return
    labels = {checkpoint_label(e): e for e in entries}
    first = st.selectbox("Checkpoint", list(labels))
    entry, m = labels[first], labels[first].manifest
    options = ["(none)"] + [k for k in labels if k != first]
    suggested = partner_of(entry, entries)
    second = st.selectbox("Compare with", options, index=options.index(suggested) if suggested in options else 0,
                          help="Defaults to the other objective's student of the same size, language and seed.")
    pair = sentence_pair(m.lang)
    if pair is None:
        return
    reg = setting_input(st, LossConfig, "reg", value=m.loss.reg, label="epsilon (reg)", key=f"reg-{entry.path}")
    st.caption(f"Each plan is solved as its checkpoint's training solved it (cost, marginals, iterations, max "
               f"length); epsilon opens at the first checkpoint's own value ({m.loss.reg:g}) and applies to both "
               "when changed. Side by side, both plans share one colour scale (and both cost matrices another).")
    if not pair[0].strip() or not pair[1].strip():
        st.warning("Enter both sentences.")
        return
    chosen = [entry] + ([labels[second]] if second != "(none)" else [])
    columns = st.columns(len(chosen))
    done = [(e, c, align(e, *pair, reg, c)) for e, c in zip(chosen, columns)]
    done = [(e, c, result) for e, c, result in done if result is not None]
    plan_range = shared_range([result[1].plan for _, _, result in done])
    cost_range = shared_range([result[1].cost for _, _, result in done])
    for e, column, (manifest, alignment) in done:
        show(e, manifest, alignment, column, plan_range, cost_range)
