"""What every method is, and the one run type all of them open as.

A `Method` knows everything that differs between methods: how it makes a new run folder from a DataSpec and
its options, how it loads one, how it trains (always through training.drive), whether it samples and imputes,
how it names and describes its runs, its default budget, and what the paper's comparison (sweep.py) gives it.
Everything outside misgan_core/methods/ asks a Method instead of testing which method it has.

A `Run` is a run folder of any method opened for use: `.method`, `.path`, `.spec`, `.data`, `.config` (its
config.json), `.imputer` (an Imputer, or None), `.sampler` (or None), `.trainer` (the object training.drive
steps), `.train()`, `.budget()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import IncompleteDataset
from ..errors import OptionError
from ..imputers import Imputer
from ..migrate import data_spec_of
from ..spec import DataSpec

SampleFn = Callable[[int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class CellContext:
    """What a sweep (sweep.py) tells a method about one of its cells."""

    paper_budget: bool            # the paper's epochs (appendix D and H), rather than quick / steps / minutes
    examples: Callable[[], int]   # training examples in the cell's data (counted on demand)
    device: str                   # the sweep's device, resolved: "cpu" or "cuda"
    seed: int
    arch: str                     # the sweep's --arch, for methods that have a choice of networks
    options: Mapping[str, Any]    # the user's options for this method (e.g. --misgan-set)
    eval_every: int | None = None  # steps between evaluation points of trainable cells (None: each method's own)


@dataclass
class Run:
    """A run folder of any method, opened for imputing, sampling, evaluating or training on."""

    method: Method
    trainer: Any                        # what training.drive steps: a misgan.MisGAN or a baselines BaselineRun
    path: Path
    spec: DataSpec
    data: IncompleteDataset
    config: dict[str, Any]              # the folder's config.json as the method reads it
    imputer: Imputer | None = None
    sampler: SampleFn | None = None
    info: dict[str, Any] = field(default_factory=dict)
    cadence: dict[str, Any] = field(default_factory=dict)  # checkpoint / grid cadence for this training call

    @property
    def kind(self) -> str:
        return self.method.name

    @property
    def model(self) -> Any:
        """The trained object itself (the MisGAN, or the BaselineRun); the same as `trainer`."""
        return self.trainer

    @property
    def step(self) -> int:
        return int(self.trainer.step)

    @property
    def epochs(self) -> float | None:
        return self.trainer.epochs

    @property
    def seconds(self) -> float:
        return float(self.trainer.train_time)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.trainer.history

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape

    @property
    def title(self) -> str:
        return self.method.describe(self.spec, self.config, self.step)

    @property
    def stopped_early(self) -> bool:
        """Whether its own stopping rule ended it (a baseline's best-FID patience ran out)."""
        return bool(getattr(self.trainer, "stopped_early", False))

    def budget(self) -> dict[str, Any]:
        """Steps, epochs and seconds of training, for every number shown about this run."""
        out: dict[str, Any] = {"steps": self.step, "step_unit": self.method.step_unit,
                               "epochs": None if self.epochs is None else round(self.epochs, 2),
                               "seconds": round(self.seconds, 1)}
        if "best_step" in self.info:
            out["best_step"] = self.info["best_step"]
        return out

    def require_imputer(self) -> Imputer:
        if self.imputer is None:
            raise OptionError(f"{self.path} has no imputer: {self.method.no_imputer_hint}")
        return self.imputer

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` complete images drawn unconditionally, for a method that generates."""
        if self.sampler is None:
            raise OptionError(f"{self.path} is a {self.method.title} run, which does not generate; sample from a "
                             f"run of a method that does")
        return self.sampler(n, generator if generator is not None else torch.Generator())

    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """`draws` completions of each incomplete image (observed entries kept exactly)."""
        return self.require_imputer().impute(x, m, draws=draws, generator=generator)

    def train(self, steps: int | None = None, callback: Callable[[Any], None] | None = None,
              progress: bool = False) -> Run:
        """`steps` more steps through training.drive (closed-form methods: their one fit)."""
        self.method.train(self, steps, callback, progress)
        return self

    def batch_geometry(self) -> tuple[int, int]:
        """(examples per batch, batches per step): what one step of this run consumes."""
        return self.method.batch_geometry(self)


class Method:
    """One method the workbench trains or fits. Subclasses fill in the class attributes and the hooks."""

    name: str = ""
    title: str = ""
    trainable: bool = True          # trained in steps (else fitted once, in closed form)
    generates: bool = False         # has unconditional samples (generation FID)
    default_steps: int = 1          # the one default budget, in `step_unit`
    step_unit: str = "steps"
    # A baseline is fitted with `baseline KIND --set NAME=VALUE` and from the Compare page with its defaults;
    # the workbench's own method (MisGAN) has its own command (`train`) and page (Train, Inpaint).
    baseline: bool = True
    live_fid: bool = False          # logs a live FID while it trains (the Runs page draws it)
    data_parallel: bool = False     # trains under torchrun (distributed.py)
    no_imputer_hint: str = "this method does not impute"
    quick_steps: int = 1            # the sweep's `quick` budget
    paper_epochs: float = 0         # the sweep's `paper` budget, in epochs (appendix D and H)
    colour: str = "#999999"         # its line in the sweep's figures

    # -- reading a config.json without loading weights -----------------------------------------

    def spec_of(self, config: dict[str, Any]) -> DataSpec:
        """The DataSpec a run folder's config.json names (any layout: migrate.py)."""
        return data_spec_of(config)

    def label(self, config: Mapping[str, Any]) -> str:
        """The method as a run of this config shows it (MisGAN adds its networks and imputer)."""
        return self.title

    def imputes(self, config: Mapping[str, Any]) -> bool:
        """Whether a run of this config has an imputer."""
        return True

    def describe(self, spec: DataSpec | None, config: Mapping[str, Any] | None = None,
                 steps: int | None = None) -> str:
        """What a run or job is, in one line: method, data and missingness, budget."""
        parts = [self.label(config or {})]
        if spec is not None:
            parts.append(spec.label())
        if steps is not None and self.trainable:
            parts.append(f"{steps:,} {self.step_unit}")
        return " · ".join(parts)

    def name_prefix(self, settings: Mapping[str, Any]) -> str:
        """The start of a run folder's name (run_name in catalog.py adds the data and a digest)."""
        return self.name

    def name_settings(self, spec: DataSpec, options: Mapping[str, Any] | None, seed: int | None) -> dict[str, Any]:
        """The settings a run folder's name digests: the same method, data and settings give the same name."""
        return {"seed": 0 if seed is None else seed}

    def defaults(self) -> dict[str, Any]:
        """The method's options and their defaults."""
        return {}

    # -- run folders ---------------------------------------------------------------------------

    def create(self, path: str | Path, spec: DataSpec, options: Mapping[str, Any] | None = None, *,
               seed: int | None = None, device: str | None = None, data: IncompleteDataset | None = None,
               batch_size: int | None = None) -> Run:
        """A new run folder at `path` for the incomplete data `spec` describes (or `data`, when given), with the
        method's `options` (see defaults()); seed, device and batch size None: the method's defaults."""
        raise NotImplementedError

    def load(self, path: str | Path, *, device: str | None = None, data: IncompleteDataset | None = None,
             for_training: bool = False) -> Run:
        """A run folder of this method. For reading (the default) a method may load the weights it evaluates
        with (a baseline's best-FID weights); `for_training` loads the last checkpoint to train on."""
        raise NotImplementedError

    def train(self, run: Run, steps: int | None, callback: Callable[[Any], None] | None, progress: bool) -> None:
        """Train `run` for `steps` more steps through training.drive."""
        run.trainer.train(steps, callback=callback, progress=progress)

    def batch_geometry(self, run: Run) -> tuple[int, int]:
        """(examples per batch, batches per step) of `run`."""
        return 1, 1

    # -- the paper's comparison (sweep.py) -----------------------------------------------------

    def paper_steps(self, n_examples: int, batch_size: int, batches_per_step: int = 1, image_side: int = 28) -> int:
        """Steps for `paper_epochs` epochs over `n_examples` examples, one batch a step (a method whose steps
        consume several batches, as MisGAN's, says so in its own paper_steps)."""
        return math.ceil(self.paper_epochs * max(1, n_examples // batch_size))

    def check_cell_options(self, spec: DataSpec, context: CellContext) -> None:
        """Refuse options this method cannot take, before a sweep trains anything."""
        if context.options:
            raise OptionError(f"{self.title} takes no sweep options; got {', '.join(sorted(context.options))}")

    def sweep_cell(self, path: Path, spec: DataSpec, context: CellContext) -> Run:
        """A new run folder for a sweep cell."""
        return self.create(path, spec, dict(context.options), seed=context.seed)

    def load_cell(self, path: Path, context: CellContext) -> Run:
        """A sweep cell already on disk, to train on."""
        return self.load(path, for_training=True)

    def check_cell(self, path: Path, spec: DataSpec, context: CellContext) -> None:
        """Refuse to reuse a cell already on disk that was made with other options (nothing to check by
        default)."""
