"""What the baselines share: a network from misgan_core.baselines in a BaselineRun folder (baselines/runs.py).

Each baseline's own module (gain.py, convac.py, mf.py, simple.py) is a `BaselineMethod` with its title,
budget and defaults; this one turns a BaselineRun into a `Run`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..baselines.runs import BaselineRun, Build
from ..data import IncompleteDataset
from ..errors import OptionError
from ..runs import CheckpointError, RunDir
from ..spec import DataSpec
from .base import CellContext, Method, Run


class BaselineMethod(Method):
    """A baseline imputer in a BaselineRun folder. `network(shape, **options)` builds its network: an nn.Module
    with `impute` (keeping observed entries exactly: imputers.paste_observed), and either `make_optimizers` and
    `train_step` (trained in steps) or a closed-form `fit(x, m)`; `sample` where it generates."""

    eval_every: int = 0             # steps between evaluation points (its curve) by default (0: off)
    eval_every_epochs: int = 0      # ... under the sweep's paper budget, in epochs (0: the default above)
    select_best: bool = False       # evaluated with the weights of its best point (GAIN, appendix H), not its last
    paper_patience: int = 0         # points without a better FID before a paper-budget cell stops (0: never); a cell
                                    # that stops so is evaluated with its best point's weights
    gpu: bool = False               # trains on the sweep's GPU when it has one (else on the CPU)
    options_class: Any = None       # the network's options as a dataclass (defaults() reads it)

    def __init__(self, name: str, title: str, network: Build, **attributes: Any):
        self.name, self.title, self.network = name, title, network
        for key, value in attributes.items():
            if not hasattr(type(self), key):
                raise TypeError(f"{type(self).__name__} has no attribute {key!r}")
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def upgrade_options(self, config: dict[str, Any], options: dict[str, Any],
                        shape: tuple[int, int, int]) -> dict[str, Any]:
        """The options a folder written by an earlier version was built with (none to add by default)."""
        return options

    def create(self, path: str | Path, spec: DataSpec, options: Mapping[str, Any] | None = None, *,
               seed: int | None = None, device: str | None = None, data: IncompleteDataset | None = None,
               batch_size: int | None = None, eval_every: int | None = None, select_best: bool | None = None,
               patience: int = 0) -> Run:
        """`eval_every`: steps between evaluation points (None: the method's default; 0: off); `select_best`:
        evaluate with the best point's weights (None: the method's default)."""
        trainer = BaselineRun.create(path, self.name, spec, dict(options or {}), seed=seed or 0,
                                     batch_size=batch_size, device=device or "cpu", data=data,
                                     eval_every=self.eval_every if eval_every is None else eval_every,
                                     select_best=self.select_best if select_best is None else select_best,
                                     patience=patience, build=self.network)
        return self._run(trainer, trainer.run.path)

    def load(self, path: str | Path, *, device: str | None = None, data: IncompleteDataset | None = None,
             for_training: bool = False) -> Run:
        trainer = BaselineRun.load(path, device=device, data=data, upgrade=self.upgrade_options, build=self.network)
        if not for_training:
            trainer.use_best_weights()  # evaluated as the paper evaluates it (GAIN's best-FID weights)
        return self._run(trainer, Path(path))

    def _run(self, trainer: BaselineRun, path: Path) -> Run:
        info: dict[str, Any] = {"options": trainer.config.get("options", {})}
        if trainer.select_best and trainer.best_step is not None:
            info["best_step"] = trainer.best_step
        sample = getattr(trainer.model, "sample", None)
        return Run(self, trainer, path, trainer.spec, trainer.data, trainer.config, imputer=trainer.model,
                   sampler=(lambda n, g: sample(n, generator=g)) if sample is not None else None, info=info)

    def defaults(self) -> dict[str, Any]:
        return dataclasses.asdict(self.options_class()) if self.options_class is not None else {}

    def train(self, run: Run, steps: int | None, callback: Any, progress: bool) -> None:
        run.trainer.train(steps, callback=callback, progress=progress and self.trainable, **run.cadence)

    def batch_geometry(self, run: Run) -> tuple[int, int]:
        stepper = run.trainer.trainer
        return (stepper.batch_size if stepper is not None else 1), 1

    def cell_options(self, context: CellContext) -> dict[str, Any]:
        """The options a sweep cell of this method is made with (the user's, by default)."""
        return dict(context.options)

    def check_cell(self, path: Path, spec: DataSpec, context: CellContext) -> None:
        """Refuse to reuse a cell made with other options (MIWAE's --arch): its figures would belong to neither."""
        if not (path / "config.json").exists():
            return
        try:
            stored = dict(RunDir(path).read_config().get("options") or {})
        except (CheckpointError, OSError, ValueError, AttributeError):
            return  # opening the cell reports what is wrong with it
        wanted = self.cell_options(context)
        for name in sorted(set(stored) | set(wanted)):
            have, want = stored.get(name), wanted.get(name)
            if have != want:
                how = f" (or pass --arch {have})" if name == "arch" and have else ""
                raise OptionError(f"cell {path.name} was made with {name}={have!r}, not {want!r}: use another "
                                  f"--out for these options{how}")

    def sweep_cell(self, path: Path, spec: DataSpec, context: CellContext) -> Run:
        data = spec.load()  # loaded once: the run keeps it, and its size sets the evaluation cadence
        paper_every = None
        if context.paper_budget and self.eval_every_epochs:
            paper_every = max(1, self.eval_every_epochs * (len(data) // 128))
        eval_every = context.eval_every if context.eval_every is not None and self.trainable else paper_every
        patience = self.paper_patience if context.paper_budget else 0
        if patience and paper_every and eval_every:
            # The paper's patience is a stretch of training (points at its own cadence); at another --eval-every
            # it is the same number of steps, rounded up to whole points.
            patience = max(1, math.ceil(patience * paper_every / eval_every))
        device = context.device if self.gpu else "cpu"
        return self.create(path, spec, self.cell_options(context), seed=context.seed, device=device, data=data,
                           eval_every=eval_every, select_best=self.select_best or bool(patience), patience=patience)
