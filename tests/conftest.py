import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from optical_core.corpora import find_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return find_data_dir()


@pytest.fixture(scope="session")
def teacher():
    from optical_core.encoders import load_teacher

    return load_teacher()


@pytest.fixture(scope="session")
def me5_dir():
    from optical_core.me5_convert import convert

    return convert()


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path
