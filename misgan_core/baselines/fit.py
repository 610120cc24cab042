"""Stepping a baseline: any model with `make_optimizers` and `train_step`, over minibatches of data in memory.

Models without `train_step` (MF, mean, zero) have a closed-form `fit(x, m)`, which fit_baseline calls
once instead. The batch order is training.EpochOrder's (seed, epoch) permutation, shared with MisGAN, and the
noise generator's state is part of `BaselineTrainer.state_dict()`, so a run stopped after step k and resumed
from a checkpoint of step k takes exactly the same steps as one that never stopped. Run folders drive these
steps through training.drive (baselines/runs.py); `run` is the bare in-memory loop for Python users.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, DatasetError, OptionError
from ..training import EpochOrder

OnStep = Callable[[int, dict[str, float]], "bool | None"]


def is_trainable(model: nn.Module) -> bool:
    """True for models trained by gradient steps (GAIN, ConvAC), False for closed-form fits."""
    return hasattr(model, "train_step") and hasattr(model, "make_optimizers")


class BaselineTrainer:
    """Drives `model.train_step` over shuffled minibatches of (x, m), with resumable state."""

    def __init__(self, model: nn.Module, x: torch.Tensor, m: torch.Tensor, batch_size: int, seed: int):
        if not is_trainable(model):
            raise TypeError(f"{type(model).__name__} has no train_step; call its fit(x, m) instead")
        if x.shape[0] != m.shape[0] or x.shape[0] == 0:
            raise DatasetError(f"x and m must hold the same, non-zero number of examples; got {x.shape[0]} "
                               f"and {m.shape[0]}")
        if batch_size < 1:
            raise OptionError("batch_size must be positive")
        self.model, self.x, self.m = model, x, m
        self.order = EpochOrder(x.shape[0], batch_size, seed)
        self.batch_size = self.order.batch_size
        self.seed = int(seed)
        self.step = 0
        self.optimizers = model.make_optimizers()
        self.noise = torch.Generator().manual_seed(self.seed)  # the model's noise, masks of hints, etc.

    @property
    def batches_per_epoch(self) -> int:
        return self.order.batches_per_epoch  # the ragged tail is dropped: every batch is full

    def batch_index(self, step: int) -> torch.Tensor:
        """Indices of the examples in batch `step` (0-based); a fresh permutation every epoch."""
        return self.order.indices(step)

    def train_step(self) -> dict[str, float]:
        """One model.train_step on the next minibatch; returns its record, with "step" counting from 1."""
        device = next(self.model.parameters()).device
        idx = self.batch_index(self.step)
        xb = self.x[idx].to(device, non_blocking=True)
        mb = self.m[idx].to(device, non_blocking=True)
        losses = self.model.train_step(xb, mb, self.optimizers, self.noise)
        self.step += 1
        return {"step": self.step, **losses}

    def run(self, steps: int, on_step: OnStep | None = None) -> list[dict[str, float]]:
        """Train until `self.step == steps`. on_step(step, record) is called after each step (step counts
        from 1); returning False stops early (e.g. a job asked to pause)."""
        self.model.train()
        records = []
        while self.step < steps:
            record = self.train_step()
            records.append(record)
            if on_step is not None and on_step(self.step, record) is False:
                break
        self.model.eval()
        return records

    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights that a resume needs; loadable with torch.load(weights_only=True)."""
        return {"step": self.step, "seed": self.seed, "batch_size": self.batch_size,
                "noise_rng": self.noise.get_state(),
                "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["batch_size"]) != self.batch_size or int(state["seed"]) != self.seed:
            raise CheckpointError(f"checkpoint was made with batch_size {state['batch_size']} and seed "
                                  f"{state['seed']}; this trainer has {self.batch_size} and {self.seed}")
        missing = set(self.optimizers) - set(state["optimizers"])
        if missing:
            raise CheckpointError(f"checkpoint has no state for optimizer {sorted(missing)[0]!r}")
        self.step = int(state["step"])
        self.noise.set_state(state["noise_rng"].to("cpu", torch.uint8))
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])


def fit_baseline(model: nn.Module, x: torch.Tensor, m: torch.Tensor, steps: int, batch_size: int, seed: int,
                 on_step: OnStep | None = None) -> list[dict[str, float]]:
    """Fit a baseline on the incomplete data (x, m) in memory and return one record per step.

    Trainable models take `steps` train_step calls on shuffled minibatches; closed-form models (MF,
    mean, zero) are fitted once by `model.fit(x, m)` and return a single record, `steps` and
    `batch_size` being irrelevant to them.
    """
    if not is_trainable(model):
        record = {"step": 1, **model.fit(x, m)}
        if on_step is not None:
            on_step(1, record)
        return [record]
    trainer = BaselineTrainer(model, x, m, batch_size, seed)
    return trainer.run(steps, on_step)
