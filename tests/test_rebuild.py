"""`optical rebuild`: a study cell retrained from its record reproduces it, and fills in the records it lacks."""

import json
import shutil

import pytest

from optical_core.errors import DataError, SettingsError
from optical_core.study.rebuild import rebuild_cell
from optical_core.study.records import read_plans, read_top_documents


def test_a_rebuilt_cell_reproduces_its_record_and_gains_its_missing_plans(quick_sweep, tmp_path, teacher):
    out, _, _ = quick_sweep
    study = tmp_path / "study"
    shutil.copytree(out, study)
    cell = study / "cells" / "swa-minilm-L1-ot-s0"
    plans = (cell / "plans.npz").read_bytes()
    (cell / "plans.npz").unlink()  # as in a study run before plan records existed
    (cell / "top_documents.npz").unlink()
    rebuilt = rebuild_cell(study, "swa-minilm-L1-ot-s0", tmp_path / "checkpoints", teacher=teacher)
    assert rebuilt.same_setup and rebuilt.identical
    assert (rebuilt.comparison["diff"] == 0).all() and list(rebuilt.comparison.step) == [0, 4]
    assert rebuilt.added_records == ["plans.npz", "top_documents.npz"]
    assert (cell / "plans.npz").read_bytes() == plans  # the same run writes the same plans
    assert read_plans(cell).steps == [0, 4] and len(read_top_documents(cell)) == 123
    assert "reproduced exactly" in rebuilt.summary()

    from optical_core.store.checkpoints import load_checkpoint

    encoder, manifest = load_checkpoint(rebuilt.checkpoint)  # a checkpoint every page can use
    assert manifest.name == "swa-minilm-L1-ot-s0" and manifest.method == "ot" and manifest.steps == 4


def test_rebuild_refuses_what_it_cannot_reproduce(quick_sweep, tmp_path):
    out, _, _ = quick_sweep
    with pytest.raises(DataError, match="no finished cell 'swa-minilm-L9-ot-s0'"):
        rebuild_cell(out, "swa-minilm-L9-ot-s0", tmp_path)
    with pytest.raises(SettingsError, match="only trained cells are rebuilt"):
        rebuild_cell(out, "swa-baseline-bm25", tmp_path)
    study = tmp_path / "study"
    shutil.copytree(out / "cells" / "swa-minilm-L1-kd-s0", study / "cells" / "swa-minilm-L1-kd-s0")
    manifest = study / "cells" / "swa-minilm-L1-kd-s0" / "manifest.json"
    record = json.loads(manifest.read_text())
    record["data"]["bitext_sha256"] = "0" * 64
    manifest.write_text(json.dumps(record))
    with pytest.raises(DataError, match="the training bitext differs from the one it ran on"):
        rebuild_cell(study, "swa-minilm-L1-kd-s0", tmp_path / "checkpoints")
    assert not (tmp_path / "checkpoints").exists()  # refused before any training


def test_a_rebuild_at_another_precision_is_compared_as_another_setup(quick_sweep, tmp_path, teacher):
    """`--precision` (float32 for a bf16 cell on a CPU that emulates bf16): trained and evaluated at that
    precision, said so, and never taken for the recorded run."""
    out, _, _ = quick_sweep
    study = tmp_path / "study"
    shutil.copytree(out, study)
    cell = study / "cells" / "swa-minilm-L1-kd-s0"
    (cell / "plans.npz").unlink(missing_ok=True)
    recorded = json.loads((cell / "result.json").read_text())["settings"]["precision"]
    other = "bf16" if recorded == "float32" else "float32"
    rebuilt = rebuild_cell(study, "swa-minilm-L1-kd-s0", tmp_path / "checkpoints", teacher=teacher, precision=other)
    assert not rebuilt.same_setup and rebuilt.added_records == [] and not (cell / "plans.npz").exists()
    assert f"at {other}; ran on " in rebuilt.setup and rebuilt.setup.endswith(f"at {recorded}")
    assert f"on another device or precision (rebuilt on " in rebuilt.summary()
    manifest = json.loads((rebuilt.checkpoint / "manifest.json").read_text())
    assert manifest["precision"] == other  # the checkpoint says how it was trained
    check = json.loads((rebuilt.checkpoint / "rebuild.json").read_text())  # and how it compares to its record
    assert check["summary"] == rebuilt.summary() and check["same_setup"] is False
    assert [r["step"] for r in check["comparison"]] == list(rebuilt.comparison.step)
