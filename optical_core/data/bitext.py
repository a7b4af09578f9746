"""Line-aligned training bitext (LR sentence, English translation) and its held-out filter.

MAFAND-MT (Adelani et al., NAACL 2022) is the default source; any pair of line-aligned files or a
two-column TSV works the same way.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from optical_core.data.corpora import (
    MAFAND_DIR,
    find_data_dir,
    read_lines,
    sha256_of_lines,
)
from optical_core.errors import DataError


@dataclass(frozen=True)
class Bitext:
    """Aligned pairs: `source[i]` (LR) translates to `target[i]` (English)."""

    lang: str
    source: list[str]
    target: list[str]
    origin: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if len(self.source) != len(self.target):
            raise DataError(f"bitext {self.lang}: {len(self.source)} source vs {len(self.target)} target lines")

    def __len__(self) -> int:
        return len(self.source)

    def sha256(self) -> str:
        return sha256_of_lines([s + "\t" + t for s, t in zip(self.source, self.target)])

    def head(self, n: int) -> "Bitext":
        return Bitext(self.lang, self.source[:n], self.target[:n], self.origin, self.notes)


def _check_no_blank(lines: list[str], path: Path) -> None:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError(f"{path}, line {number}: blank line (every line must hold a sentence)")


def load_aligned_files(source_path: Path | str, target_path: Path | str, lang: str) -> Bitext:
    """A bitext from two line-aligned UTF-8 files (LR first, English second)."""
    source_path, target_path = Path(source_path), Path(target_path)
    source, target = read_lines(source_path), read_lines(target_path)
    if len(source) != len(target):
        shorter, longer = (source_path, target_path) if len(source) < len(target) else (target_path, source_path)
        raise DataError(
            f"{source_path} has {len(source)} lines but {target_path} has {len(target)}: "
            f"{longer} has no partner for line {min(len(source), len(target)) + 1} in {shorter}"
        )
    _check_no_blank(source, source_path)
    _check_no_blank(target, target_path)
    return Bitext(lang, source, target, origin=(str(source_path), str(target_path)))


def load_tsv(path: Path | str, lang: str) -> Bitext:
    """A bitext from a TSV with two columns: LR sentence, English sentence."""
    path = Path(path)
    source, target = [], []
    for number, line in enumerate(read_lines(path), start=1):
        cells = line.split("\t")
        if len(cells) != 2 or not cells[0].strip() or not cells[1].strip():
            raise DataError(f"{path}, line {number}: expected two non-empty tab-separated columns, got {len(cells)}")
        source.append(cells[0])
        target.append(cells[1])
    return Bitext(lang, source, target, origin=(str(path),))


def mafand_languages(data_dir: Path | None = None) -> list[str]:
    root = (data_dir or find_data_dir()) / MAFAND_DIR
    return sorted(p.name.split("-", 1)[1] for p in root.glob("en-*") if p.is_dir())


def load_mafand(lang: str, data_dir: Path | None = None) -> Bitext:
    """MAFAND-MT train split for `lang`; dev+test where the language has no train split."""
    root = (data_dir or find_data_dir()) / MAFAND_DIR
    folder = root / f"en-{lang}"
    if not folder.is_dir():
        raise DataError(
            f"no MAFAND-MT bitext for language '{lang}' (no folder {folder}); "
            f"available: {', '.join(mafand_languages(root.parent)) or 'none'}"
        )
    splits = ["train"] if (folder / f"train.{lang}").is_file() else ["dev", "test"]
    parts = [load_aligned_files(folder / f"{s}.{lang}", folder / f"{s}.en", lang) for s in splits]
    return Bitext(
        lang,
        [s for p in parts for s in p.source],
        [t for p in parts for t in p.target],
        origin=tuple(o for p in parts for o in p.origin),
        notes=() if splits == ["train"] else ("no train split: dev+test used as training bitext",),
    )


def normalise(text: str) -> str:
    """Case-, accent-, punctuation- and space-insensitive form used for overlap checks."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.findall(r"\w+", text))


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class DedupReport:
    kept: int
    dropped_exact: int
    dropped_ngram: int

    @property
    def dropped(self) -> int:
        return self.dropped_exact + self.dropped_ngram


def remove_heldout_overlap(bitext: Bitext, heldout: list[str], ngram: int = 8) -> tuple[Bitext, DedupReport]:
    """Drop pairs whose either side equals a held-out sentence (normalised) or shares an `ngram`-word run.

    This is what keeps NTREX (either side) out of training.
    """
    # a held-out line of punctuation only ("።") normalises to "": it matches no real sentence, only empty ones
    exact = {normalise(t) for t in heldout} - {""}
    grams: set[tuple[str, ...]] = set()
    for t in heldout:
        grams |= word_ngrams(t, ngram)
    source, target = [], []
    dropped_exact = dropped_ngram = 0
    for s, t in zip(bitext.source, bitext.target):
        if normalise(s) in exact or normalise(t) in exact:
            dropped_exact += 1
        elif word_ngrams(s, ngram) & grams or word_ngrams(t, ngram) & grams:
            dropped_ngram += 1
        else:
            source.append(s)
            target.append(t)
    clean = Bitext(bitext.lang, source, target, bitext.origin, bitext.notes)
    return clean, DedupReport(len(source), dropped_exact, dropped_ngram)


@functools.lru_cache(maxsize=16)
def training_bitext(lang: str, n_pairs: int | None, data_dir: Path | None = None,
                    data_seed: int = 0) -> tuple[Bitext, DedupReport]:
    """MAFAND bitext for `lang` with every NTREX overlap removed, then `n_pairs` drawn with a fixed seed (None:
    every pair; a run's count is its Budget.n_pairs, the one place its default is written).

    The draw does not depend on the run seed, so all cells of a study see the same pairs.
    """
    from optical_core.data.clir import heldout_texts  # the held-out side of the study

    clean, report = remove_heldout_overlap(load_mafand(lang, data_dir), heldout_texts(lang, data_dir))
    if len(clean) == 0:
        raise DataError(f"no training pairs left for '{lang}' after removing NTREX overlap")
    if n_pairs is not None and n_pairs < len(clean):
        import random

        order = list(range(len(clean)))
        random.Random(data_seed).shuffle(order)
        keep = sorted(order[:n_pairs])
        clean = Bitext(lang, [clean.source[i] for i in keep], [clean.target[i] for i in keep], clean.origin,
                       clean.notes)
    return clean, report
