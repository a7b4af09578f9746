"""Background training for the app: a job runs in a worker thread, reports progress, can be cancelled.

The app keeps one JobManager (process-wide); each job belongs to the browser session that started it
and writes to its own uniquely named checkpoint, so concurrent sessions cannot clobber each other.
A cancelled or failed job writes no checkpoint (train_and_save only saves a finished run).
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from optical_core.distil.run import default_run_name, train_and_save
from optical_core.distil.train import StepLog
from optical_core.errors import TrainingCancelled
from optical_core.evaluate.evaluator import RunEvaluator
from optical_core.evaluate.scoring import record_evaluation
from optical_core.models.encoders import load_teacher
from optical_core.settings import EvalPlan, TrainConfig

TASK = "headline"  # what the app scores a run on


@dataclass
class Job:
    id: str
    owner: str
    config: TrainConfig
    name: str
    status: str = "queued"  # queued, running, done, failed, cancelled
    history: list[StepLog] = field(default_factory=list)
    total_steps: int = 0
    checkpoint: Path | None = None
    metrics: dict | None = None  # the trained student's mean metrics on the headline task
    curve: list[tuple[int, dict]] = field(default_factory=list)  # (step, mean metrics); step 0 is the start
    error: str | None = None
    traceback: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def fraction(self) -> float:
        return len(self.history) / self.total_steps if self.total_steps else 0.0

    @property
    def start_metrics(self) -> dict | None:
        """The run's start (its untrained or linear-map student) on the same queries."""
        return self.curve[0][1] if self.curve and self.curve[0][0] == 0 else None

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.time()) - self.started


class JobManager:
    def __init__(self, checkpoint_root: Path | str):
        self.root = Path(checkpoint_root)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, config: TrainConfig, owner: str, evaluate: bool = True, teacher=None) -> Job:
        job_id = uuid.uuid4().hex[:8]
        job = Job(job_id, owner, config, f"{default_run_name(config)}-{job_id}")
        with self._lock:
            self._jobs[job_id] = job
        threading.Thread(target=self._run, args=(job, evaluate, teacher), daemon=True, name=f"train-{job_id}").start()
        return job

    def _run(self, job: Job, evaluate: bool, teacher) -> None:
        job.status = "running"

        def on_step(log: StepLog) -> None:
            job.total_steps = log.total_steps
            job.history.append(log)

        try:
            teacher = teacher or load_teacher()
            evaluator = None
            if evaluate:  # scored in memory at the start and along training: no reload, documents cached
                evaluator = RunEvaluator(teacher, job.config.lang, EvalPlan(tasks=(TASK,), task=TASK),
                                         job.config.budget.max_length, record_plans=False,
                                         on_record=lambda r: job.curve.append(
                                             (r.step, r.scores.drop(columns="qid").mean().to_dict())))
            job.checkpoint = train_and_save(job.config, self.root, job.name, teacher=teacher, on_step=on_step,
                                            should_stop=job.cancel_event.is_set, evaluator=evaluator)
            if evaluate:
                record_evaluation(job.checkpoint, TASK, job.config.lang, evaluator.selected(TASK).scores)
                job.metrics = job.curve[-1][1]
            job.status = "done"
        except TrainingCancelled:
            job.status = "cancelled"
        except Exception as err:  # shown to the user; the app keeps running
            job.status, job.error = "failed", f"{type(err).__name__}: {err}"
            job.traceback = traceback.format_exc()
        finally:
            job.finished = time.time()

    def cancel(self, job_id: str) -> None:
        if job_id in self._jobs:
            self._jobs[job_id].cancel_event.set()

    def jobs(self, owner: str | None = None) -> list[Job]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [j for j in jobs if owner is None or j.owner == owner]

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def wait(self, job_id: str, timeout: float = 600) -> Job:
        deadline = time.time() + timeout
        job = self._jobs[job_id]
        while job.active and time.time() < deadline:
            time.sleep(0.2)
        return job
