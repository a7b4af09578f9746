import streamlit as st

from optical_core.plots import transport_heatmap
from optical_core.study.explore import partner, shared_range, transport_cost
from optical_core.study.records import UnreadableRecord, read_plans
from pages.explore_common import pick_cell, pick_study, rebuild_button

st.title("Token alignments")
st.caption("The entropic OT plan between a student's LR tokens and the teacher's English tokens: the alignment "
           "the OT objective optimises. For a KD student the same plan is computed for inspection only.")
RECORDS, CHECKPOINTS = "a study cell (its recorded plans: no weights needed)", "a checkpoint (any sentence pair)"
source = st.radio("Open", [RECORDS, CHECKPOINTS], horizontal=True)
if source == CHECKPOINTS:
    from pages.alignment_checkpoints import checkpoint_alignments

    checkpoint_alignments()
    st.stop()


@st.cache_data(show_spinner=False, max_entries=16)
def plans_of(path: str, mtime: float):
    return read_plans(path)


def cell_plans(cell):
    """The cell's plan records, or None after saying in one line why there are none (and offering rebuild)."""
    try:
        return plans_of(str(cell.path), (cell.path / "plans.npz").stat().st_mtime if cell.has_plans else 0.0)
    except UnreadableRecord as err:
        st.info(str(err))
        rebuild_button(st, study, cell, "alignment")
        return None


picked = pick_study(st, "alignment-study", prefer=lambda cells: any(c.has_plans for c in cells))
if picked is None:
    st.stop()
_, study, cells = picked
trained = [c for c in cells if c.trained]  # baselines and untrained starts record no plans
if not trained:
    st.info("This study has no trained cell.")
    st.stop()
recorded = [c for c in trained if c.has_plans]
st.caption(f"{len(recorded)} of {len(trained)} trained cells of this study have plan records (the panel's plans at "
           "steps 0, 25 and the selected step). Cells run before plan records existed have none: rebuild one to "
           "add them.")
a = pick_cell(st, trained, "alignment-a", next((c for c in recorded if c.method == "ot"), (recorded or trained)[0]))
beside = st.radio("Beside it", ["another step of this cell", "another cell", "nothing"], horizontal=True)
plans_a = cell_plans(a)
if plans_a is None:
    st.stop()

sides = [(a, plans_a)]
if beside == "another cell":
    same = [c.layers for c in recorded if (c.lang, c.family, c.method, c.seed) == (a.lang, a.family, a.method, a.seed)]
    default_b = partner(a, trained, layers=max(same)) if same else a  # the largest recorded size: e.g. L1 beside L12
    st.markdown("**Cell B**")
    b = pick_cell(st, trained, "alignment-b", default_b)
    plans_b = cell_plans(b)
    if plans_b is None:
        st.stop()
    sides.append((b, plans_b))
elif beside == "another step of this cell":
    sides.append((a, plans_a))

pair = st.selectbox("Panel pair", range(len(plans_a.pairs)),
                    format_func=lambda i: f"{i}: {plans_a.pairs[i][0]} · {plans_a.pairs[i][2][:90]}",
                    help="A fixed panel every run of a language records: MAFAND dev pairs (disjoint from training) "
                         "and NTREX headlines (held-out test) with their English.")
columns = st.columns(len(sides))
shown = []
for k, ((cell, plans), column) in enumerate(zip(sides, columns)):
    default = plans.steps[0] if (beside == "another step of this cell" and k == 0) else plans.steps[-1]
    step = column.select_slider(f"Step ({cell.id})", plans.steps, value=default, key=f"step-{beside}-{k}-{cell.id}")
    if pair >= len(plans.pairs):
        column.info(f"{cell.id} recorded {len(plans.pairs)} panel pairs: pick one below {len(plans.pairs)}.")
        continue
    shown.append((cell, plans.plan(step, pair), column))

plan_range = shared_range([p.plan for _, p, _ in shown])
cost_range = shared_range([p.cost for _, p, _ in shown])
if len(shown) > 1:
    st.caption(f"One colour scale per row: plans {plan_range[0]:.3g} to {plan_range[1]:.3g}, costs "
               f"{cost_range[0]:.3g} to {cost_range[1]:.3g}.")
for k, (cell, p, column) in enumerate(shown):
    try:
        e = cell.evaluation(p.step)
        scores = (f"mrr@10 {e['means'].get('mrr@10', float('nan')):.3f} · query cosine "
                  f"{e.get('query_cosine') or float('nan'):.2f}" + (" (collapsed)" if e.get("collapsed") else ""))
    except UnreadableRecord:
        scores = "no evaluation at this step"
    column.markdown(f"**{cell.label}** · step {p.step} · {scores} · <P, C> = "
                    f"{transport_cost(p.plan, p.cost):.4f}  \n*{p.collection}:* {p.lr_text}  \n*en:* {p.en_text}")
    title = f"{cell.student} {cell.method}, step {p.step}"
    for matrix, value_name, (low, high) in ((p.plan, "mass", plan_range), (p.cost, "cost", cost_range)):
        fig = transport_heatmap(matrix, p.lr_tokens, p.en_tokens, p.cost if value_name == "mass" else None,
                                title=f"{title}: {'transport plan' if value_name == 'mass' else 'cost matrix'}",
                                value_name=value_name)
        column.plotly_chart(fig.update_traces(zmin=low, zmax=high), width="stretch", key=f"{value_name}-{k}")
