"""Background training as the app runs it: concurrency, cancellation, failure."""

from optical_core.jobs import JobManager
from optical_core.store.checkpoints import list_checkpoints, read_manifest

from .conftest import tiny_config


def test_two_sessions_training_at_once_do_not_clobber_each_other(tmp_path, teacher):
    manager = JobManager(tmp_path)
    config = tiny_config("kd", n_pairs=32)  # the very same settings in both sessions
    a = manager.start(config, owner="session-a", evaluate=False, teacher=teacher)
    b = manager.start(config, owner="session-b", evaluate=False, teacher=teacher)
    manager.wait(a.id), manager.wait(b.id)
    assert (a.status, b.status) == ("done", "done"), (a.error, b.error)
    assert a.checkpoint != b.checkpoint
    assert {e.name for e in list_checkpoints(tmp_path)} == {a.name, b.name}
    assert read_manifest(a.checkpoint).name == a.name and read_manifest(b.checkpoint).name == b.name
    assert [j.id for j in manager.jobs(owner="session-a")] == [a.id]


def test_cancel_from_the_app_leaves_no_checkpoint(tmp_path, teacher):
    manager = JobManager(tmp_path)
    job = manager.start(tiny_config("ot", n_pairs=160), owner="s", evaluate=False, teacher=teacher)
    manager.cancel(job.id)
    manager.wait(job.id)
    assert job.status == "cancelled" and job.checkpoint is None
    assert list_checkpoints(tmp_path) == []


def test_a_failing_job_reports_its_error(tmp_path, teacher):
    manager = JobManager(tmp_path)
    bad = tiny_config("kd")
    bad = type(bad)(**{**bad.__dict__, "lang": "qqq"})
    job = manager.wait(manager.start(bad, owner="s", evaluate=False, teacher=teacher).id)
    assert job.status == "failed" and "qqq" in job.error


def test_the_apps_evaluation_scores_start_and_end_in_memory_and_reuses_cached_documents(tmp_path, teacher,
                                                                                         monkeypatch):
    """The Train page's evaluation: the headline task at step 0 and at the last step, on the model in memory,
    with the teacher's document embeddings from the cache (memory, or disk for a fresh process)."""
    import json

    from optical_core.data.clir import build_collection
    from optical_core.evaluate import scoring
    from optical_core.settings import DOC_MAX_LENGTH

    scoring.document_embeddings(teacher, build_collection("headline", "swa"))  # the app warms this once
    scoring._DOC_CACHE.clear()  # as in a fresh process: only the disk cache is left
    encoded = []
    real = type(teacher).encode
    monkeypatch.setattr(type(teacher), "encode", lambda self, texts, *a, **k: encoded.append(
        k.get("max_length")) or real(self, texts, *a, **k))
    manager = JobManager(tmp_path)
    job = manager.wait(manager.start(tiny_config("kd", n_pairs=32), owner="s", teacher=teacher).id)
    assert job.status == "done", job.error
    assert DOC_MAX_LENGTH not in encoded  # no document was encoded again
    assert [step for step, _ in job.curve] == [0, len(job.history)]
    assert job.start_metrics is not None and set(job.metrics) == set(job.start_metrics) >= {"mrr@10", "ndcg@10"}
    saved = json.loads((job.checkpoint / "eval_headline.json").read_text())
    assert saved["means"] == job.metrics and saved["n_queries"] == 123
