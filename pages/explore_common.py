"""Widgets the Alignment, Compare and Search pages share: a study picker, a study cell picker (language,
family, size, method, seed), and the rebuild button. App layer only: every number comes from optical_core."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from optical_core.store.locations import checkpoint_root, study_dirs
from optical_core.study.explore import StudyCell, read_study_cells

RELEVANT = ":green-background[relevant]"  # a text badge: headless browsers may lack emoji glyphs


@st.cache_data(show_spinner=False, max_entries=8)
def _cells(path: str, stamp: tuple):
    return read_study_cells(Path(path))


def study_cells(path: Path) -> tuple[list[StudyCell], list[str]]:
    """The study's cells, re-read when its results table or its set of cells changes."""
    table, cells = Path(path) / "results.csv", Path(path) / "cells"
    stamp = tuple(p.stat().st_mtime if p.exists() else 0.0 for p in (table, cells))
    return _cells(str(path), stamp)


def pick_study(container, key: str, prefer=lambda cells: True) -> tuple[str, Path, list[StudyCell]] | None:
    """A study picker over every study the app lists; opens on the first study where `prefer(cells)` holds
    (e.g. some cell has plan records), else on the first. None (with a note) when there is no study."""
    studies = study_dirs()
    if not studies:
        container.info("No study yet: run a sweep (`optical sweep --config configs/quick.toml`).")
        return None
    labels = list(studies)
    default = next((i for i, label in enumerate(labels) if prefer(study_cells(studies[label])[0])), 0)
    label = container.selectbox("Study", labels, index=default, key=key,
                                help="Committed studies under results/, then sweeps under runs/ (OPTICAL_RUNS).")
    cells, unreadable = study_cells(studies[label])
    if unreadable:  # listed, never a traceback; a study of another format says so once, not per cell
        more = f" (and {len(unreadable) - 3} more)" if len(unreadable) > 3 else ""
        container.warning(f"{len(unreadable)} cell records unreadable: " + "; ".join(unreadable[:3]) + more)
    return label, studies[label], cells


def _choose(container, label: str, options: list, wanted, key: str, fmt=str):
    index = options.index(wanted) if wanted in options else 0
    if key in st.session_state and st.session_state[key] not in options:  # a choice the cells before ruled out
        st.session_state[key] = options[index]
        index = 0  # the session state holds the choice now (a default beside it would draw Streamlit's warning)
    return container.selectbox(label, options, index=index, key=key, format_func=fmt)


def pick_cell(container, cells: list[StudyCell], key: str, default: StudyCell | None = None) -> StudyCell:
    """Five selectboxes in a row (language, family, size, method, seed), each offering only what the study has
    given the choices before it; they open on `default` where it is among the options."""
    d = default or cells[0]
    cols = container.columns(5)
    lang = _choose(cols[0], "Language", sorted({c.lang for c in cells}), d.lang, f"{key}-lang")
    cells = [c for c in cells if c.lang == lang]
    family = _choose(cols[1], "Family", sorted({c.family for c in cells}), d.family, f"{key}-family")
    cells = [c for c in cells if c.family == family]
    layers = _choose(cols[2], "Size", sorted({c.layers for c in cells}), d.layers, f"{key}-size",
                     fmt=lambda n: "-" if family == "baseline" else f"L{n}")
    cells = [c for c in cells if c.layers == layers]
    method = _choose(cols[3], "Method", sorted({c.method for c in cells}), d.method, f"{key}-method")
    cells = [c for c in cells if c.method == method]
    seed = _choose(cols[4], "Seed", sorted({c.seed for c in cells}), d.seed, f"{key}-seed")
    return next(c for c in cells if c.seed == seed)


def rebuild_button(container, study: Path, cell: StudyCell, key: str) -> None:
    """A button that retrains `cell` from its record into checkpoints/ (and adds its plan records where it
    reproduces), with progress; the core's rebuild is imported on the click (it trains, so it imports torch)."""
    at_float32 = container.checkbox(
        "at float32", key=f"rebuild-fp32-{key}-{cell.id}",
        help="Train and evaluate at float32 instead of the recorded precision: several times faster on a CPU "
             "without native bf16, where bf16 is emulated. The rebuild is then compared as another setup (within "
             "seed noise, not equal) and adds nothing to the study.")
    if not container.button(f"Rebuild {cell.id}", key=f"rebuild-{key}-{cell.id}",
                            help="Retrain the cell from its record (settings, seed, data) into checkpoints/ and "
                                 "check its metrics against the record: minutes on a CPU."):
        return
    from optical_core.study.rebuild import rebuild_cell

    total = max(cell.steps(), default=0)  # the last evaluated step: the run's last step
    bar = container.progress(0.0, text=f"Rebuilding {cell.id}...")

    def on_step(log):  # the core reports each training step (a StepLog)
        if total:
            bar.progress(min(log.step / total, 1.0), text=f"Rebuilding {cell.id}: step {log.step} / {total}")

    try:
        result = rebuild_cell(study, cell.id, checkpoint_root(), on_step=on_step,
                              precision="float32" if at_float32 else None)
    except Exception as err:  # a one-line error from the core (settings, data, checkpoint) or anything else
        container.error(f"Rebuild of {cell.id} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
        return
    bar.progress(1.0, text="Done")
    container.success(result.summary())
    if result.added_records:
        container.button("Open its records", key=f"reopen-{key}-{cell.id}")  # any click reruns the page
