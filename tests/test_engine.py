"""Cells as tasks on Dask distributed (study/engine.py, study/sweep.py): the same records as in one process, one
cell run once however many sweeps share a folder, a dead worker's cell run again, a wrong address one line."""

import dataclasses
import filecmp
import os
import signal
import threading
import time

import pandas as pd
import pytest

from optical_core.settings import load_sweep_config
from optical_core.study.grid import cell_status, grid_cells
from optical_core.study.sweep import run_sweep

TINY = """
name = "engine"
baselines = []
keep_checkpoints = false
[eval]
steps = [0]
[run.budget]
n_pairs = 8
batch_size = 4
max_length = 16
[[grid]]
family = "minilm"
sizes = [1]
langs = ["swa"]
seeds = [0]
methods = {methods}
"""


def tiny_sweep(tmp_path, methods=("kd", "ot", "untrained")):
    path = tmp_path / "engine.toml"
    path.write_text(TINY.format(methods=list(methods)).replace("'", '"'))
    return load_sweep_config(path)


@pytest.fixture(scope="module")
def cluster():
    """A Dask cluster of 2 worker processes (one cell at a time each), as `dask scheduler` + `dask worker` make."""
    import logging

    from distributed import Client, LocalCluster

    from optical_core.study.engine import NO_DASHBOARD

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, silence_logs=logging.ERROR,
                      **NO_DASHBOARD) as cluster, Client(cluster) as client:
        yield cluster, client


def finished_runs(cluster) -> int:
    """How many cell tasks the scheduler has seen finish (a cell run twice counts twice)."""
    return sum(1 for key, _, finish, *_ in cluster.scheduler.transition_log
               if str(key).startswith("cell_records") and finish == "memory")


def test_a_local_cluster_of_two_workers_writes_what_one_process_writes(tmp_path):
    config = tiny_sweep(tmp_path)
    here = run_sweep(dataclasses.replace(config, workers=0), tmp_path / "here")
    dask = run_sweep(dataclasses.replace(config, workers=2), tmp_path / "dask")
    key = ["cell_id", "step", "task", "metric"]
    assert len(here) and set(here.cell_id) == {c.id for c in grid_cells(config)}
    pd.testing.assert_frame_equal(here.sort_values(key).reset_index(drop=True)[key + ["value", "final_loss"]],
                                  dask.sort_values(key).reset_index(drop=True)[key + ["value", "final_loss"]])
    per_query = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here").rglob("per_query/*.csv"))
    assert len(per_query) == 5  # kd and ot at steps 0 and 2, the untrained start
    assert all(filecmp.cmp(tmp_path / "here" / p, tmp_path / "dask" / p, shallow=False) for p in per_query)


def test_an_unreachable_scheduler_is_one_line_and_quick(tmp_path, capsys):
    from optical_core.cli import main

    (tmp_path / "engine.toml").write_text(TINY.format(methods='["kd"]'))
    for address in ("tcp://127.0.0.1:1", "no-such-host:8786"):
        started = time.perf_counter()
        code = main(["sweep", "--config", str(tmp_path / "engine.toml"), "--out", str(tmp_path / "out"),
                     "--scheduler", address])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and time.perf_counter() - started < 20
        assert err[-1].startswith(f"error: --scheduler {address}: no Dask scheduler answered there within 5 s")
        assert not any(line.startswith(("Traceback", "  File")) for line in err)


def test_two_sweeps_on_one_folder_run_each_cell_once(tmp_path, cluster):
    cluster, _ = cluster
    config = tiny_sweep(tmp_path, methods=("kd", "ot", "untrained"))
    out, before = tmp_path / "shared", finished_runs(cluster)
    reports = {"a": [], "b": []}

    def sweep(name):
        run_sweep(config, out, scheduler=cluster.scheduler_address,
                  on_cell=lambda i, n, cell, status: reports[name].append((cell.id, status)))

    threads = [threading.Thread(target=sweep, args=(name,)) for name in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [cell for name in reports for cell, status in reports[name] if status == "done"]
    assert sorted(done) == sorted(c.id for c in grid_cells(config))  # each cell written by exactly one sweep
    assert finished_runs(cluster) - before == len(done)  # and run by exactly one worker
    assert all(cell_status(out, c) == "done" for c in grid_cells(config))


def test_a_worker_killed_in_the_middle_of_a_cell_leaves_no_record_and_the_cell_runs_again(tmp_path, cluster):
    cluster, client = cluster
    config = tiny_sweep(tmp_path, methods=("kd",))
    (cell,) = grid_cells(config)
    out, reports = tmp_path / "sweep", []
    sweep = threading.Thread(target=run_sweep, args=(config, out),
                             kwargs=dict(scheduler=cluster.scheduler_address,
                                         on_cell=lambda i, n, c, status: reports.append(status)))
    sweep.start()

    def executing(dask_worker):
        return [str(ts.key) for ts in dask_worker.state.tasks.values() if ts.state == "executing"]

    deadline = time.monotonic() + 120
    while not (running := {w: keys for w, keys in client.run(executing).items() if keys}):
        assert time.monotonic() < deadline and sweep.is_alive(), "the cell never started"
        time.sleep(0.05)
    (worker, (key,)), = running.items()
    time.sleep(0.5)  # well into the cell: loading the teacher alone takes longer
    os.kill(client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
    assert not (out / "cells" / cell.id).exists()  # nothing of the cell was written
    sweep.join(timeout=300)
    assert not sweep.is_alive() and reports == ["start", "done"]
    assert cell_status(out, cell) == "done" and not (out / "cells" / cell.id / "failed.json").exists()
    starts = [t for t in cluster.scheduler.transition_log if t[0] == key and t[2] == "processing"]
    assert len(starts) == 2  # scheduled again after its worker died
