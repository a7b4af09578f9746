"""Where a sweep's cells run: one task per cell on Dask distributed.

A worker runs `cell_records`: the cell's records as bytes (study/cell.py's `run_cell`, with the worker's teacher,
loaded once per worker process), handed back to the client, which writes them (`write_cell`). So workers need the
package, the corpora and the model packages, and no access to the study's folder; resuming reads the records as it
always did. A worker that dies in the middle of a cell hands nothing back, so nothing is written: the scheduler
runs the task again on another worker (up to `distributed.scheduler.allowed-failures` deaths, then the cell is
recorded as failed and a rerun retries it).

Three engines, one interface (a `concurrent.futures.Executor` and how many cells may run at once):
- the sweep's own `LocalCluster` (the default): `workers` processes on this machine, one cell at a time each, on
  cores // workers threads; several may share one GPU;
- an existing Dask cluster, by its scheduler's address (docs/ENGINE.md: Slurm, Kubernetes, the Dask CLI);
- `workers = 0`: each cell in this process and thread when it is submitted (debugging; tests that patch the task).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from optical_core.errors import SettingsError
from optical_core.models.encoders import Encoder, load_teacher
from optical_core.settings import SweepConfig
from optical_core.study.cell import run_cell
from optical_core.study.grid import Cell

# No dashboard, and the scheduler's HTTP routes (health, metrics) on a free port rather than on 8787, which a second
# cluster on the machine (two sweeps, a test) would find taken.
NO_DASHBOARD = dict(dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})
CONNECT_TIMEOUT_S = 5  # an address where no scheduler answers is an error after this long, not after Dask's 30 s

_TEACHER: Encoder | None = None  # this process's teacher: a worker loads it at its first cell


def worker_teacher() -> Encoder:
    global _TEACHER
    if _TEACHER is None:
        _TEACHER = load_teacher()
    return _TEACHER


def cell_records(cell: Cell, config: SweepConfig) -> dict[str, bytes]:
    """The task: run one cell on this worker and return its records (relative path -> bytes)."""
    return run_cell(cell, config, worker_teacher())


@dataclass
class Engine:
    executor: concurrent.futures.Executor
    slots: Callable[[], int]  # how many cells may run at once now (a remote cluster may grow or shrink)
    description: str


class InProcess(concurrent.futures.Executor):
    """Runs each task in this process and thread as it is submitted: breakpoints and patches reach it."""

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # handed to the caller through the future, as a worker's would be
            future.set_exception(err)
        return future


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """One worker per 2 cores: 1 on the 2-core machines, 8 on a 16-core GPU host (8 processes keep a GPU busy where
    one process alone is bound by its host work)."""
    return max(1, cpu_cores() // 2)


@contextmanager
def open_engine(workers: int | None = None, scheduler: str | None = None) -> Iterator[Engine]:
    """The engine a sweep submits its cells to: the Dask cluster at `scheduler`, else `workers` local worker
    processes (None: `default_workers()`; 0: this process)."""
    if scheduler:
        with connect(scheduler) as client:
            yield Engine(client.get_executor(pure=False), lambda: max(1, sum(client.nthreads().values())),
                         f"the Dask cluster at {scheduler}")
        return
    if workers == 0:
        yield Engine(InProcess(), lambda: 1, "this process")
        return
    from distributed import Client, LocalCluster

    n = workers or default_workers()
    threads = str(max(1, cpu_cores() // n))  # Dask starts workers with 1 BLAS/OpenMP thread; torch reads these
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, silence_logs=logging.ERROR,
                      env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}, **NO_DASHBOARD
                      ) as cluster, Client(cluster) as client:
        yield Engine(client.get_executor(pure=False), lambda: n,
                     f"a local Dask cluster of {n} worker process{'es' if n > 1 else ''} x {threads} threads")


def connect(scheduler: str):
    """A Dask client of the scheduler at `scheduler`, or one SettingsError line within CONNECT_TIMEOUT_S."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as err:  # refused, timed out, or not an address at all
        raise SettingsError(f"--scheduler {scheduler}: no Dask scheduler answered there within {CONNECT_TIMEOUT_S} s "
                            f"({type(err).__name__}); start one (docs/ENGINE.md) or leave --scheduler out to run "
                            "the cells on this machine") from None
