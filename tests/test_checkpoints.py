import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from optical_core.errors import CheckpointError
from optical_core.store.checkpoints import (
    checkpoint_path,
    delete_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_manifest,
    read_train_log,
    recover_interrupted,
    save_checkpoint,
)


def copy(src, root, name):
    dest = root / name
    shutil.copytree(src, dest)
    return dest


def test_checkpoint_reloads_bit_identically(tiny_checkpoint):
    encoder, manifest = load_checkpoint(tiny_checkpoint)
    saved = load_file(str(tiny_checkpoint / "model.safetensors"))
    for name, tensor in encoder.backbone.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert encoder.projection is not None  # me5 family maps into the teacher's space
    assert manifest.method == "ot" and manifest.lang == "hau" and manifest.steps == 2
    assert manifest.data["bitext_sha256"] and manifest.versions["torch"] and manifest.git_commit
    assert manifest.loss.plan_gradient == "detach" and manifest.vocab_size < manifest.original_vocab_size
    assert len(read_train_log(tiny_checkpoint)) == 2


def test_reload_equals_the_trained_model_that_was_saved(teacher, tmp_path):
    """Every tensor of the reloaded checkpoint (backbone and projection) equals the in-memory student that was
    saved, and so do its embeddings. The student is trained, then every tensor is perturbed with seeded noise,
    so neither the initialisation nor a default (e.g. a fresh projection) can match by accident."""
    from optical_core.distil.run import save_run
    from optical_core.distil.train import train

    from .conftest import tiny_config

    result = train(tiny_config("ot", "me5", 1, n_pairs=32), teacher=teacher)
    model = result.student.encoder
    assert model.projection is not None  # me5 (L1) maps into the teacher's width: the head is saved separately
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))
    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}
    texts = ["Habari za asubuhi", "Rais amewasili Nairobi", "Ina kwana lafiya"]
    expected_embeddings = model.encode(texts)

    path = save_run(result, "perturbed", checkpoint_root=tmp_path)
    loaded, manifest = load_checkpoint(path)
    got = loaded.state_dict()
    assert set(got) == set(expected)
    assert any(k.startswith("projection.") for k in got) and any(k.startswith("backbone.") for k in got)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    assert loaded.tokenizer.get_vocab() == model.tokenizer.get_vocab()  # the trimmed vocabulary, id for id
    assert torch.equal(loaded.encode(texts), expected_embeddings)
    assert manifest.steps == len(result.history) == 2


def test_checkpoint_encodes_the_same_after_reload(tiny_checkpoint):
    a, _ = load_checkpoint(tiny_checkpoint)
    b, _ = load_checkpoint(tiny_checkpoint)
    texts = ["Habari za asubuhi", "Rais amewasili Nairobi"]
    assert torch.equal(a.encode(texts), b.encode(texts))


def test_checkpoint_loads_in_plain_transformers(tiny_checkpoint):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_checkpoint)
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    out = model(**tok(["Habari za asubuhi"], return_tensors="pt")).last_hidden_state
    assert out.shape[-1] == 384 and torch.isfinite(out).all()


def test_kill_during_save_keeps_the_previous_checkpoint(tiny_checkpoint, tmp_path, monkeypatch):
    encoder, manifest = load_checkpoint(tiny_checkpoint)
    save_checkpoint(tmp_path, encoder, manifest)
    before = (tmp_path / manifest.name / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(encoder.tokenizer, "save_pretrained", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, encoder, manifest)
    assert (tmp_path / manifest.name / "model.safetensors").read_bytes() == before
    assert [e.name for e in list_checkpoints(tmp_path)] == [manifest.name]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_truncated_weights_are_a_clear_error_and_others_still_list(tiny_checkpoint, tmp_path):
    good = copy(tiny_checkpoint, tmp_path, "good")
    bad = copy(tiny_checkpoint, tmp_path, "bad")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable header"):
        load_checkpoint(bad)
    entries = {e.name: e for e in list_checkpoints(tmp_path)}
    assert entries["good"].error is None and entries["good"].manifest is not None
    assert "unreadable header" in entries["bad"].error  # caught by the listing, not only on loading
    load_checkpoint(good)


def test_missing_config_and_mismatched_config(tiny_checkpoint, tmp_path):
    no_config = copy(tiny_checkpoint, tmp_path, "noconfig")
    (no_config / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(no_config)
    mismatched = copy(tiny_checkpoint, tmp_path, "mismatch")
    config = json.loads((mismatched / "config.json").read_text())
    config["hidden_size"] = 512
    (mismatched / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="cannot build the model it describes"):
        load_checkpoint(mismatched)
    config["hidden_size"], config["intermediate_size"] = 384, 1000  # builds, but the weights have other shapes
    (mismatched / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="could not load weights"):
        load_checkpoint(mismatched)


def test_manifest_from_a_newer_format_is_refused(tiny_checkpoint, tmp_path):
    newer = copy(tiny_checkpoint, tmp_path, "newer")
    manifest = json.loads((newer / "manifest.json").read_text())
    manifest["format"] = 99
    (newer / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="newer than this app understands"):
        read_manifest(newer)


def test_a_format_1_manifest_is_refused_in_one_line_not_upgraded(tiny_checkpoint, tmp_path):
    """Format 1 (a flat train_config, no format field) was retired with the superseded first study."""
    old = copy(tiny_checkpoint, tmp_path, "old")
    manifest = json.loads((old / "manifest.json").read_text())
    config = manifest.pop("config")
    flat = {k: v for k, v in config.items() if k != "budget"} | config["budget"]
    del manifest["format"], manifest["precision"]
    (old / "manifest.json").write_text(json.dumps(manifest | {"train_config": flat}))
    message = ("manifest format 1 (a flat train_config, from before typed manifests) is no longer read "
               "(this app reads format 2): train the run again")
    with pytest.raises(CheckpointError) as err:
        read_manifest(old)
    assert str(err.value) == message
    (entry,) = list_checkpoints(tmp_path)
    assert entry.manifest is None and entry.error == message
    manifest["format"] = "2"  # not an int: neither newer nor format 2
    (old / "manifest.json").write_text(json.dumps(manifest | {"config": config}))
    with pytest.raises(CheckpointError, match=r"^manifest format '2' is not one this app reads \(2\)$"):
        read_manifest(old)


def test_a_plain_directory_is_listed_with_its_error(tmp_path):
    (tmp_path / "notes").mkdir()
    (entry,) = list_checkpoints(tmp_path)
    assert entry.manifest is None and "config.json is missing" in entry.error


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "", "x" * 200])
def test_path_traversal_and_bad_names_are_refused(tmp_path, name):
    with pytest.raises(CheckpointError, match="invalid checkpoint name"):
        checkpoint_path(tmp_path, name)


def age(path, seconds):
    import os
    import time
    os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_delete_and_stale_cleanup(tiny_checkpoint, tmp_path):
    copy(tiny_checkpoint, tmp_path, "gone")
    (tmp_path / ".tmp-abandoned-abcd1234").mkdir()
    age(tmp_path / ".tmp-abandoned-abcd1234", 2 * 3600)
    (tmp_path / ".tmp-inprogress-abcd1234").mkdir()  # young: may be another process's write
    (tmp_path / ".deleting-gone2-abcd1234").mkdir()
    delete_checkpoint(tmp_path, "gone")
    assert list_checkpoints(tmp_path) == []  # the listing cleans up as it goes
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [".tmp-inprogress-abcd1234"]
    with pytest.raises(CheckpointError, match="no checkpoint named"):
        delete_checkpoint(tmp_path, "gone")


def test_a_replace_killed_between_its_renames_lists_the_old_version(tiny_checkpoint, tmp_path):
    """save_checkpoint renames the old version away, then the new one in: killed in between, neither is
    visible. The listing puts the old one back."""
    copy(tiny_checkpoint, tmp_path, ".old-run-0a1b2c3d")
    (tmp_path / ".tmp-run-unfinish").mkdir()  # a new version killed before its manifest: never finished
    (entry,) = list_checkpoints(tmp_path)
    assert entry.name == "run" and entry.error is None and entry.manifest.method == "ot"
    assert not (tmp_path / ".old-run-0a1b2c3d").exists()


def test_a_replace_killed_between_its_renames_lists_the_new_version_when_it_finished(tiny_checkpoint, tmp_path):
    import json
    copy(tiny_checkpoint, tmp_path, ".old-run-0a1b2c3d")
    new = copy(tiny_checkpoint, tmp_path, ".tmp-run-x_y9z8w7")
    manifest = json.loads((new / "manifest.json").read_text())
    (new / "manifest.json").write_text(json.dumps(dict(manifest, steps=99)))
    (entry,) = list_checkpoints(tmp_path)
    assert entry.name == "run" and entry.manifest.steps == 99
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["run"]  # the old version is cleaned up
    assert recover_interrupted(tmp_path) == 0


def test_recovery_waits_while_another_process_replaces_a_checkpoint(tiny_checkpoint, tmp_path):
    import multiprocessing

    copy(tiny_checkpoint, tmp_path, ".old-run-0a1b2c3d")
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold_lock, args=(tmp_path / ".lock", ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        assert recover_interrupted(tmp_path) == 0 and (tmp_path / ".old-run-0a1b2c3d").exists()
    finally:
        release.set()
        holder.join(30)
    assert recover_interrupted(tmp_path) == 1 and (tmp_path / "run").is_dir()


def _hold_lock(path, ready, release):
    from optical_core.store.locks import file_lock
    with file_lock(path):
        ready.set()
        release.wait(30)


def test_symlinks_leading_out_of_the_checkpoint_folder_are_refused(tiny_checkpoint, tmp_path):
    root = tmp_path / "checkpoints"
    root.mkdir()
    (root / "linked").symlink_to(tiny_checkpoint, target_is_directory=True)
    inner = copy(tiny_checkpoint, root, "inner")
    (inner / "model.safetensors").unlink()
    (inner / "model.safetensors").symlink_to(tiny_checkpoint / "model.safetensors")
    entries = {e.name: e for e in list_checkpoints(root)}
    assert set(entries) == {"linked", "inner"}
    assert all(e.manifest is None and "symbolic link" in e.error and "refused" in e.error for e in entries.values())
    copy(tiny_checkpoint, root, "target")
    (root / "alias").symlink_to(root / "target", target_is_directory=True)  # inside, but Delete would hit "target"
    assert "symbolic link" in {e.name: e.error for e in list_checkpoints(root)}["alias"]
    with pytest.raises(CheckpointError, match="is a symbolic link"):
        delete_checkpoint(root, "alias")
    assert (root / "target" / "manifest.json").is_file()
    (root / "looped").mkdir()
    (root / "looped" / "loop").symlink_to(root / "looped" / "loop")  # resolve() raises on a loop
    assert "cannot be read" in {e.name: e.error for e in list_checkpoints(root)}["looped"]


def test_a_config_claiming_more_layers_than_the_weights_hold_is_refused_before_allocation(tiny_checkpoint, tmp_path):
    import json
    bomb = copy(tiny_checkpoint, tmp_path, "bomb")
    config = json.loads((bomb / "config.json").read_text())
    (bomb / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=10_000)))
    (entry,) = list_checkpoints(tmp_path)
    assert entry.manifest is None and "claims 10000 layers" in entry.error
    with pytest.raises(CheckpointError, match="claims 10000 layers"):
        load_checkpoint(bomb)
    (bomb / "config.json").write_text(json.dumps(dict(config, hidden_size=96_000)))  # 96,000 = 12 heads x 8,000
    with pytest.raises(CheckpointError, match="describes .* weights, model.safetensors holds"):
        load_checkpoint(bomb)
    (bomb / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 40}))  # defaults fill
    with pytest.raises(CheckpointError, match="claims 40 layers, model.safetensors holds weights for 1"):
        load_checkpoint(bomb)
    (bomb / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 4096,
                                                  "num_attention_heads": 16, "num_hidden_layers": 1}))
    with pytest.raises(CheckpointError, match="describes .* weights, model.safetensors holds"):
        load_checkpoint(bomb)
    (bomb / "config.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_checkpoint(bomb)


def test_hostile_manifests_are_listed_as_unreadable(tiny_checkpoint, tmp_path):
    """Deep nesting, a wrong type where a table belongs, and a huge file: a CheckpointError each, never a crash."""
    import json
    import shutil

    from optical_core.store.checkpoints import MANIFEST_MAX_BYTES, list_checkpoints

    cases = {
        "deep": lambda m: m,  # replaced by 100,000 nested lists below
        "wrong-type": lambda m: m | {"config": dict(m["config"], student="me5")},
        "bad-range": lambda m: m | {"config": dict(m["config"], budget=dict(m["config"]["budget"], lr=-1))},
    }
    for name, change in cases.items():
        shutil.copytree(tiny_checkpoint, tmp_path / name)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        (tmp_path / name / "manifest.json").write_text(json.dumps(change(manifest)))
    (tmp_path / "deep" / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    shutil.copytree(tiny_checkpoint, tmp_path / "huge")
    (tmp_path / "huge" / "manifest.json").write_text(" " * (MANIFEST_MAX_BYTES + 1) + "{}")
    entries = {e.name: e for e in list_checkpoints(tmp_path)}
    assert entries["deep"].manifest is None and "JSON" in entries["deep"].error
    assert "student" in entries["wrong-type"].error and "must be a table" in entries["wrong-type"].error
    assert entries["bad-range"].error == ("manifest.json: manifest config.budget.lr = -1.0: out of range, "
                                          "must be between 1e-08 and 1")
    assert "more than a manifest ever holds" in entries["huge"].error
