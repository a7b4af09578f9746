"""Where the corpora live, and strict reading of their text files.

The data directory is looked up in this order: $OPTICAL_DATA_DIR, ./data, ../shared/corpora
(relative to the project root). It must hold `ntrex128/` and `mafand/` laid out as in
../shared/corpora/README.md.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from optical_core.errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_ENV_VAR = "OPTICAL_DATA_DIR"
NTREX_DIR = "ntrex128"
MAFAND_DIR = "mafand"

NTREX_URL = "https://raw.githubusercontent.com/MicrosoftTranslator/NTREX/main/NTREX-128"
MAFAND_URL = "https://raw.githubusercontent.com/masakhane-io/lafand-mt/main/data/text_files"


def candidate_data_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(DATA_ENV_VAR):
        dirs.append(Path(os.environ[DATA_ENV_VAR]).expanduser())
    dirs += [Path.cwd() / "data", PROJECT_ROOT / "data", PROJECT_ROOT.parent / "shared" / "corpora"]
    return dirs


def find_data_dir() -> Path:
    """The first candidate directory that holds both corpora, or a DataError saying what to do."""
    tried = candidate_data_dirs()
    for d in tried:
        if (d / NTREX_DIR).is_dir() and (d / MAFAND_DIR).is_dir():
            return d
    raise DataError(
        "No corpora found. Looked for ntrex128/ and mafand/ in: "
        + ", ".join(str(d) for d in tried)
        + f". Set ${DATA_ENV_VAR} to a directory holding them, or, when online, run "
        "`python -m optical_core download-data --dest data` (NTREX-128 and MAFAND-MT from GitHub)."
    )


def read_lines(path: Path | str) -> list[str]:
    """Lines of a UTF-8 text file without their line endings (LF or CRLF).

    Raises DataError naming the file for a missing or empty file and the line for invalid UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}, line {number}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    return out


def sha256_of_lines(lines: list[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def download_corpora(dest: Path | str, langs: list[str]) -> Path:
    """Fetch NTREX-128 and MAFAND-MT text files for `langs` into `dest` (needs internet).

    Offline it fails with a DataError that says where the files must go instead.
    """
    dest = Path(dest)
    jobs = [(f"{NTREX_URL}/newstest2019-src.eng.txt", dest / NTREX_DIR / "newstest2019-src.eng.txt"),
            (f"{NTREX_URL}/../DOCUMENT_IDS.tsv", dest / NTREX_DIR / "DOCUMENT_IDS.tsv")]
    for lang in langs:
        jobs.append((f"{NTREX_URL}/newstest2019-ref.{lang}.txt", dest / NTREX_DIR / f"newstest2019-ref.{lang}.txt"))
        for split in ("train", "dev", "test"):
            for side in ("en", lang):
                jobs.append((f"{MAFAND_URL}/en_{lang}_news/{split}.{side}",
                             dest / MAFAND_DIR / f"en-{lang}" / f"{split}.{side}"))
    for url, target in jobs:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
        except OSError as err:
            if "train." in url:
                continue  # several MAFAND languages have no train split
            raise DataError(
                f"Could not download {url} ({err}). Without internet, copy the corpora by hand to "
                f"{dest}/{NTREX_DIR} and {dest}/{MAFAND_DIR} (layout: ../shared/corpora/README.md) "
                f"or set ${DATA_ENV_VAR}."
            ) from None
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
    return dest
