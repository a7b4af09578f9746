import streamlit as st

from optical_core.data.clir import build_collection, ntrex_languages
from optical_core.errors import DataError, SettingsError
from optical_core.evaluate.search import TOP_HIT_MAX_LENGTH, relevant_documents, search_all
from optical_core.plots import transport_heatmap
from optical_core.store.locations import all_checkpoints
from pages.common import checkpoint_label, load_checkpoint_cached, teacher
from pages.explore_common import RELEVANT

st.title("Search")
st.caption("A query in a low-resource language against the English NTREX news articles of its collection (123 "
           "documents): the chosen student (its query embedding against the teacher's document embeddings), the raw "
           "teacher reading the LR query, BM25 and multilingual-e5-small off the shelf, side by side.")
SYSTEM_NAMES = {"student": "student", "teacher-raw": "raw teacher", "bm25": "BM25", "me5": "mE5 off the shelf"}
NONE = "(none: the baselines only)"


@st.cache_data(show_spinner="Reading the NTREX collection...")
def collection_of(lang: str):
    return build_collection("headline", lang)


entries = {checkpoint_label(e): e for e in all_checkpoints() if e.manifest is not None}
if not entries:
    st.info("No student checkpoint yet: train one on the Train page or rebuild a study cell; meanwhile the "
            "baselines search alone.")
c1, c2, c3 = st.columns([3, 1, 1])
choice = c1.selectbox("Student (a trained or rebuilt checkpoint)", list(entries) + [NONE])
entry = entries.get(choice)
if entry is None:
    languages = ntrex_languages()
    lang = c2.selectbox("Language", languages, index=languages.index("swa") if "swa" in languages else 0)
else:
    lang = entry.manifest.lang
    c2.text_input("Language", lang, disabled=True, help="The student's own language.")
k = c3.slider("Top k", 3, 20, 5)
try:
    collection = collection_of(lang)
except DataError as err:  # a language without NTREX files here
    st.error(str(err))
    st.stop()
headlines = list(collection.queries)
source = st.radio("Query", ["pick an NTREX headline", "type your own"], horizontal=True)
if source == "type your own":
    query = st.text_area(f"Query ({lang})", collection.queries[headlines[0]], height=80,
                         help="A sentence or two in the student's language (at most 5,000 characters).")
else:
    qid = st.selectbox("NTREX headline (held-out test query)", headlines,
                       format_func=lambda q: f"{q}: {collection.queries[q][:110]}")
    query = collection.queries[qid]
    st.markdown(f"**{lang}:** {query}  \n**en (gold translation):** {collection.query_translations[qid]}")

student = load_checkpoint_cached(entry.path)[0] if entry is not None else None
try:
    with st.spinner("Searching (the first search encodes the documents for mE5: a minute)..."):
        rankings = search_all(query, collection, teacher(), student, k=k)
except (DataError, SettingsError) as err:
    st.error(str(err))
    st.stop()
relevant = relevant_documents(query, collection)
if relevant:
    st.caption(f"{RELEVANT} marks the headline's own article. Its rank per system: " + "; ".join(
        f"{SYSTEM_NAMES[s]} {next((r.rank_of(d) for d in relevant if r.rank_of(d)), None) or f'> {k}'}"
        for s, r in rankings.items()))
else:
    st.caption("A typed query has no relevance judgement: no document is marked.")
columns = st.columns(len(rankings))
for column, (system, ranking) in zip(columns, rankings.items()):
    column.markdown(f"**{SYSTEM_NAMES[system]}**" + (f" ({entry.manifest.method}, {entry.manifest.student.name})"
                                                     if system == "student" else ""))
    if not ranking.doc_ids:
        column.caption("no document shares a word with the query")
    for rank, (doc, score) in enumerate(zip(ranking.doc_ids, ranking.scores), 1):
        column.markdown(f"{rank}. {RELEVANT + ' ' if doc in relevant else ''}`{doc}` ({score:.3f}): "
                        f"{collection.documents[doc][:160]}...")

if student is not None and rankings["student"].doc_ids:
    from optical_core.distil.alignment import align_pair
    from pages.alignment_checkpoints import objective_of

    top = rankings["student"].doc_ids[0]
    st.subheader(f"The plan between the query and the student's top hit ({top})")
    alignment = align_pair(student, teacher(), query, collection.documents[top],
                           objective_of(str(entry.path), entry.manifest.loss.reg), TOP_HIT_MAX_LENGTH)
    st.caption(f"The student's objective's OT problem (cost, marginals, epsilon) on the query's tokens and the "
               f"document's first {TOP_HIT_MAX_LENGTH - 2} tokens · <P, C> = {alignment.transport_cost:.4f}")
    st.plotly_chart(transport_heatmap(alignment.plan, alignment.lr_tokens, alignment.en_tokens, alignment.cost,
                                      title=f"query -> {top}: transport plan"), width="stretch")
