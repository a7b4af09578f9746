import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The tests' own document-embedding cache: a test that patches encoding must never leave vectors that real runs
# would reuse. (The converted me5 checkpoint stays in the shared cache: converting it takes a minute.)
os.environ["OPTICAL_DOC_CACHE"] = tempfile.mkdtemp(prefix="optical-test-doc-cache-")

from optical_core.data.corpora import find_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return find_data_dir()


@pytest.fixture(scope="session")
def teacher():
    from optical_core.models.encoders import load_teacher

    return load_teacher()


@pytest.fixture(scope="session")
def me5_dir():
    from optical_core.models.me5_convert import convert

    return convert()


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def tiny_config(method="kd", family="minilm", layers=1, n_pairs=48, seed=0, **loss):
    from optical_core.settings import Budget, LossConfig, StudentSpec, TrainConfig

    return TrainConfig(lang="hau", student=StudentSpec(family, layers), loss=LossConfig(method=method, **loss),
                       budget=Budget(n_pairs=n_pairs, epochs=1, batch_size=16, max_length=32, lr=1e-4), seed=seed,
                       device="cpu")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, teacher):
    """A real (tiny) OT run on the me5 family, saved: it has a projection and a trimmed vocabulary."""
    from optical_core.distil.run import train_and_save

    root = tmp_path_factory.mktemp("ckpts")
    return train_and_save(tiny_config("ot", "me5", 1, n_pairs=32), root, "tiny-me5-ot", teacher=teacher)


PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def quick_sweep(tmp_path_factory):
    """The `quick` grid, run end to end on CPU into a fresh directory."""
    from optical_core.settings import load_sweep_config
    from optical_core.study.sweep import run_sweep

    runs = tmp_path_factory.mktemp("runs")
    config = load_sweep_config(PROJECT / "configs" / "quick.toml")
    table = run_sweep(config, runs / "quick")
    return runs / "quick", config, table


def pytest_collection_modifyitems(items):
    """Mark the tests that run a whole sweep (`-m "not sweeps"` leaves them out: `make mutation` reruns every
    test that reaches a mutant, and a sweep per mutant would take days)."""
    for item in items:
        if "quick_sweep" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sweeps)
