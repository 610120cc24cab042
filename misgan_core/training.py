"""The one training driver every trainable method runs through (MisGAN, GAIN, ConvAC; MF, mean and zero fit
in one step).

A method implements `Steppable`: one `train_step()` at a time, plus how to log, checkpoint and draw itself.
`drive()` owns everything around the steps, once for all methods:
  - the cadence: a log line every `log_every` steps (and at the end), an evaluation point (live FID, or the
    best-FID selection for GAIN) every `eval_every` (and at the end), grids every `sample_every`; checkpoints
    after the first step of a new run, every `checkpoint_every` steps, whenever `checkpoint_minutes` of
    training have passed since the last one (so a crash loses minutes, not the half hour 500 Conv steps take
    on a CPU), and at the end;
  - stopping: a step callback may raise StopTraining (a job asked to stop), which ends cleanly;
  - Ctrl-C: KeyboardInterrupt saves a checkpoint at the last finished step, then propagates;
  - time accounting: `train_time` sums the seconds spent training over all sessions of a run, without the
    evaluation points and grids, so a method that is evaluated more often is not charged for it in the
    quality-against-time curves, the time-to-reach table or a `minutes=N` budget;
  - the progress bar (steps/s and ETA, from tqdm).
`EpochOrder` is the minibatch order every method shares: a fresh permutation per epoch from (seed, epoch), so
resuming needs no extra state and a resumed run takes exactly the batches of an uninterrupted one.

`Trainer` is what background jobs (jobs.py) depend on; MisGAN and BaselineRun are Trainers.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from .errors import DatasetError, MisGANError, OptionError
from .runs import CheckpointError


class StopTraining(Exception):
    """Raised by a step callback to end training cleanly after the current step."""


@dataclass(frozen=True)
class Cadence:
    """How often, in steps, the driver logs, evaluates, draws grids and checkpoints (0 = never, except the
    final grids and checkpoint)."""

    log_every: int = 10
    eval_every: int = 0
    sample_every: int = 100
    checkpoint_every: int = 500
    checkpoint_minutes: float = 5.0

    def __post_init__(self) -> None:
        for name in ("log_every", "eval_every", "sample_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise OptionError(f"{name.replace('_', ' ')} must be a whole number of steps, 0 or more; got {value}")
        if not (self.checkpoint_minutes >= 0):  # also refuses NaN
            raise OptionError(f"checkpoint minutes must be 0 (off) or more; got {self.checkpoint_minutes}")


@runtime_checkable
class Trainer(Protocol):
    """What a background job drives: anything trained in steps and shown while it trains."""

    step: int
    train_time: float
    history: list[dict[str, Any]]
    grids: dict[str, torch.Tensor]

    def train(self, steps: int | None = None, callback: Callable[[Any], None] | None = None,
              progress: bool = False) -> Any: ...

    def make_grids(self, n: int = 64, save: bool = True) -> dict[str, torch.Tensor]: ...


class Steppable(Protocol):
    """What `drive` needs from a method."""

    step: int
    train_time: float
    run: Any  # a runs.RunDir when can_save

    def begin_training(self) -> None:
        """Networks to training mode, caches reset: called once before the first step of a session."""

    def train_step(self) -> dict[str, Any]:
        """One step (MisGAN: n_critic critic updates and one generator update); advances `step` by one and
        returns its losses (tensors may stay on the device until `log`)."""

    def log(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Reduce the records of the steps since the last log line to one line, append it to the history
        and the run's metrics.jsonl, and return it."""

    def evaluate_point(self) -> None:
        """A point of the live evaluation (live FID, or best-FID selection)."""

    def make_grids(self, n: int = 64, save: bool = True) -> dict[str, torch.Tensor]: ...

    def save(self) -> Any:
        """Write a checkpoint; only called when the method has a run folder (`can_save`)."""

    @property
    def can_save(self) -> bool: ...


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training; `saved_step` is the step of the checkpoint written on the way out
    (None when there was no run folder to write to)."""

    def __init__(self, saved_step: int | None):
        super().__init__()
        self.saved_step = saved_step


class TrainingDiverged(MisGANError, ValueError):
    """A logged loss became NaN or infinite; nothing of the diverged steps is saved."""


def drive(trainer: Steppable, steps: int, cadence: Cadence, callback: Callable[[Any], None] | None = None,
          progress: bool = False, progress_fields: tuple[str, ...] = ()) -> None:
    """Run `steps` more steps of `trainer` with the cadence, callback, Ctrl-C save and progress bar above.

    `callback(trainer)` runs after every step and may raise StopTraining. `progress_fields` are the log keys
    shown beside the bar. While it trains, the run folder's writer lock is held (RunDir.lock).
    """
    if steps < 0:
        raise OptionError(f"steps must be 0 or more; got {steps}")
    lock = trainer.run.lock() if trainer.can_save else contextlib.nullcontext()
    with lock:
        if trainer.can_save:
            # Loaded while another process was training it: going on from here would overwrite that work.
            saved = trainer.run.saved_step()
            if saved is not None and saved > trainer.step:
                raise CheckpointError(f"run {trainer.run.path} was trained on to step {saved} by another process "
                                      f"after this copy was loaded at step {trainer.step}; load it again to go on "
                                      f"from there")
        _drive(trainer, steps, cadence, callback, progress, progress_fields)


def _drive(trainer: Steppable, steps: int, cadence: Cadence, callback: Callable[[Any], None] | None,
           progress: bool, progress_fields: tuple[str, ...]) -> None:
    target = trainer.step + steps
    bar = progress_bar(steps, trainer.step, target) if progress else None
    trainer.begin_training()
    base_time, started = trainer.train_time, time.perf_counter()
    aside = 0.0  # seconds spent on evaluation points and grids, which train_time leaves out
    fresh = trainer.step == 0
    last_save = started
    pending: list[dict[str, Any]] = []
    interrupted = False
    evaluated = None  # the step of the last evaluation point
    c = cadence

    def log() -> dict[str, Any]:
        line = trainer.log(pending)
        pending.clear()
        bad = sorted(k for k, v in line.items() if isinstance(v, float) and not math.isfinite(v))
        if bad:
            raise TrainingDiverged(f"training diverged by step {trainer.step} ({', '.join(bad)} = "
                                   f"{line[bad[0]]}); the last checkpoint is kept: lower the learning rate or "
                                   f"check the data and options")
        return line

    def aside_from_training(work: Callable[[], Any]) -> None:
        nonlocal aside
        paused = time.perf_counter()
        try:
            work()
        finally:  # work that stops training (patience, Ctrl-C) is not training either
            aside += time.perf_counter() - paused

    try:
        while trainer.step < target:
            pending.append(trainer.train_step())
            step = trainer.step
            trainer.train_time = base_time + time.perf_counter() - started - aside
            if bar is not None:
                bar.update(1)
            if (c.log_every and step % c.log_every == 0) or step == target:
                line = log()
                if bar is not None and progress_fields:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in line.items() if k in progress_fields}, refresh=False)
            if c.eval_every and (step % c.eval_every == 0 or step == target):
                # Also at the last step, so a curve ends where its final figure is measured.
                evaluated = step
                aside_from_training(trainer.evaluate_point)
            if c.sample_every and step % c.sample_every == 0 and step != target:
                aside_from_training(trainer.make_grids)
            if trainer.can_save and step != target and (
                    (fresh and step == 1)
                    or (c.checkpoint_every and step % c.checkpoint_every == 0)
                    or (c.checkpoint_minutes and time.perf_counter() - last_save >= 60 * c.checkpoint_minutes)):
                trainer.save()
                last_save = time.perf_counter()
            if callback is not None:
                callback(trainer)
    except StopTraining:
        if c.eval_every and evaluated != trainer.step:  # stopped between points (a job, a time budget): one more
            try:
                with contextlib.suppress(StopTraining):
                    aside_from_training(trainer.evaluate_point)
            except KeyboardInterrupt:
                interrupted = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        trainer.train_time = base_time + time.perf_counter() - started - aside
        if bar is not None:
            bar.close()
    if pending:
        log()
    if interrupted:
        saved = None
        if trainer.can_save:
            trainer.save()  # Ctrl-C keeps everything up to the last finished step
            saved = trainer.step
        raise TrainingInterrupted(saved)
    trainer.make_grids()
    if trainer.can_save:
        trainer.save()


def progress_bar(total: int, initial: int, target: int) -> Any:
    """The progress bar of every training command: steps done, steps/s and the time left."""
    from tqdm import tqdm

    return tqdm(total=total, desc=f"steps {initial}->{target}", unit="step", dynamic_ncols=True)


class EpochOrder:
    """Minibatch indices: batch k of the run is batch k mod E of epoch k div E (E full batches an epoch; the
    ragged tail is dropped), each epoch a permutation drawn from (seed, epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device | str = "cpu"):
        if n < 1:
            raise DatasetError("there are no examples to train on")
        if batch_size < 1:
            raise OptionError(f"batch size must be at least 1; got {batch_size}")
        self.n, self.batch_size, self.seed = n, min(batch_size, n), int(seed)
        self.device = device
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    def indices(self, batch: int) -> torch.Tensor:
        """Indices of the examples in the run's batch number `batch` (0-based)."""
        epoch, i = divmod(batch, self.batches_per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2 ** 63))
            self._perm = torch.randperm(self.n, generator=gen).to(self.device)
            self._epoch = epoch
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]

    def epochs(self, batches: int) -> float:
        """How many epochs `batches` minibatches are."""
        return batches / self.batches_per_epoch
