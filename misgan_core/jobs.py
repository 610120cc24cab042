"""Background training jobs for the UI: start, pause, resume, stop and snapshot.

A job runs a `training.Trainer` (anything with `train(steps, callback=...)`, `step`, `history`, `grids` and
`make_grids(save=False)`: MisGAN and BaselineRun) in a daemon thread; it knows nothing else about them.
The thread never touches the UI; the UI asks `snapshot()` for copies taken under a lock.
One `JobRegistry` per process keeps every job, hands back a running job instead of starting a twin, and
stops all jobs at interpreter exit (a thread killed inside a torch op aborts the process).
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .device import configure_threads
from .training import StopTraining, Trainer

# Snapshots refresh sample grids at most this often: grids cost a generator forward pass.
GRID_REFRESH_S = 2.0


@dataclass
class JobSnapshot:
    """A copy of a job's visible state; safe to keep and draw from any thread."""

    id: str
    key: str
    label: str
    kind: str                   # the method: misgan, gain, ...
    status: str                 # queued | starting | running | paused | finished | stopped | failed
    step: int
    target: int
    history: list[dict[str, Any]] = field(default_factory=list)
    grids: dict[str, torch.Tensor] = field(default_factory=dict)
    steps_per_s: float = 0.0
    eta_s: float | None = None
    error: str | None = None
    started_at: float = 0.0

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed")

    @property
    def progress(self) -> float:
        return 0.0 if self.target <= 0 else min(1.0, self.step / self.target)


class Job:
    """One training run in a background thread."""

    _ids = itertools.count(1)

    def __init__(self, key: str, label: str, make_trainer: Callable[[], Trainer], steps: int,
                 threads: int | None = None, kind: str = "misgan", after: Job | None = None):
        self.id = f"job-{next(self._ids)}"
        self.key, self.label, self.kind = key, label, kind
        self._after = after  # wait for this job to end first: two trainings on a small CPU at once are slower
        self._make_trainer = make_trainer
        self._steps = steps
        self._threads = threads
        self._lock = threading.Lock()
        self._resume_event = threading.Event()
        self._resume_event.set()
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.id, daemon=True)
        self._status = "starting"
        self._error: str | None = None
        self._step = 0
        self._target = steps
        self._history: list[dict[str, Any]] = []
        self._grids: dict[str, torch.Tensor] = {}
        self._last_grid = 0.0
        self._rate_window: list[tuple[float, int]] = []
        self.started_at = time.time()
        self.trainer: Any = None

    # -- control (any thread) ------------------------------------------------------------------

    def start(self) -> Job:
        self._thread.start()
        return self

    def pause(self) -> None:
        with self._lock:
            if self._status == "running":
                self._status = "paused"
                self._resume_event.clear()

    def resume(self) -> None:
        with self._lock:
            if self._status == "paused":
                self._status = "running"
                self._resume_event.set()

    def stop(self, wait: bool = True, timeout: float | None = 60.0) -> None:
        """Ask the job to stop after its current step; it writes a checkpoint before it ends."""
        self._stop_event.set()
        self._resume_event.set()
        if wait and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            rate = self._rate()
            remaining = self._target - self._step
            return JobSnapshot(
                id=self.id, key=self.key, label=self.label, kind=self.kind, status=self._status, step=self._step,
                target=self._target, history=[dict(r) for r in self._history],
                grids={k: v.clone() for k, v in self._grids.items()}, steps_per_s=rate,
                eta_s=remaining / rate if rate > 0 and self._status not in ("finished", "stopped", "failed") else None,
                error=self._error, started_at=self.started_at)

    # -- the thread ------------------------------------------------------------------------------

    def _rate(self) -> float:
        w = self._rate_window
        if len(w) < 2 or w[-1][0] <= w[0][0]:
            return 0.0
        return (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0])

    def _run(self) -> None:
        try:
            if self._after is not None and self._after.alive:
                with self._lock:
                    self._status = "queued"
                while self._after.alive and not self._stop_event.is_set():
                    self._after.join(0.2)
                with self._lock:
                    self._status = "starting"
                if self._stop_event.is_set():
                    with self._lock:
                        self._status = "stopped"
                    return
            if self._threads is not None:
                configure_threads(self._threads)
            trainer = self._make_trainer()
            self.trainer = trainer
            with self._lock:
                self._step = trainer.step
                self._target = trainer.step + self._steps
                self._history = list(trainer.history)
                self._grids = dict(trainer.make_grids(save=False))
                self._rate_window = [(time.perf_counter(), self._step)]
                if self._status == "starting":
                    self._status = "running"
            # Stopped while starting: train(0) still writes the first checkpoint, so the folder can resume.
            steps = 0 if self._stop_event.is_set() else self._steps
            trainer.train(steps, callback=self._after_step)
            final = "stopped" if self._stop_event.is_set() else "finished"
            with self._lock:
                self._step = trainer.step
                self._history = list(trainer.history)
                self._grids = dict(trainer.grids)
                self._status = final
        except StopTraining:
            with self._lock:
                self._status = "stopped"
        except Exception as err:  # the UI shows the message; the run folder keeps the traceback
            detail = traceback.format_exc()
            run = getattr(getattr(self, "trainer", None), "run", None)
            if run is not None:
                try:
                    (Path(run.path) / "error.log").write_text(detail)
                except OSError:
                    pass
            with self._lock:
                self._status = "failed"
                self._error = f"{type(err).__name__}: {err}"

    def _after_step(self, trainer: Any) -> None:
        now = time.perf_counter()
        grids = None
        if now - self._last_grid >= GRID_REFRESH_S:
            grids = trainer.make_grids(save=False)
            self._last_grid = time.perf_counter()
        with self._lock:
            self._step = trainer.step
            new = trainer.history[len(self._history):]
            self._history.extend(dict(r) for r in new)
            if grids is not None:
                self._grids = dict(grids)
            self._rate_window.append((now, trainer.step))
            if len(self._rate_window) > 50:
                del self._rate_window[0]
        if not self._resume_event.is_set():
            self._resume_event.wait()
        if self._stop_event.is_set():
            raise StopTraining


class JobRegistry:
    """All jobs of this process. `start` returns the running job for a key instead of starting a twin."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        atexit.register(self.stop_all)

    def start(self, key: str, make_trainer: Callable[[], Trainer], steps: int, label: str | None = None,
              threads: int | None = None, kind: str = "misgan", after: Job | None = None) -> Job:
        key = _normalise(key)
        with self._lock:
            for job in self._jobs.values():
                if job.key == key and job.alive:
                    return job
            job = Job(key, label or key, make_trainer, steps, threads, kind, after)
            self._jobs[job.id] = job
            return job.start()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def find(self, key: str) -> Job | None:
        key = _normalise(key)
        matches = [j for j in self._jobs.values() if j.key == key]
        return matches[-1] if matches else None

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def running(self) -> list[Job]:
        return [j for j in self.jobs() if j.alive]

    def stop_all(self, timeout: float = 30.0) -> None:
        for job in self.jobs():
            job.stop(wait=False)
        deadline = time.time() + timeout
        for job in self.jobs():
            job.join(max(0.0, deadline - time.time()))


def _normalise(key: str) -> str:
    return str(Path(key).resolve()) if os.sep in key or Path(key).exists() else key


_REGISTRY: JobRegistry | None = None
_REGISTRY_LOCK = threading.Lock()


def registry() -> JobRegistry:
    """The process-wide registry (a module global, so clearing a UI cache never orphans a thread)."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        if _REGISTRY is None:
            _REGISTRY = JobRegistry()
        return _REGISTRY
