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
