"""MisGAN (Li, Jiang, Marlin, ICLR 2019), the workbench's own method, as a registry entry: a `Method` around
misgan_core.misgan.MisGAN, whose options are MisGANConfig's fields (misgan_core/config.py).

A MisGAN run always samples; it imputes when it was trained with its imputer (`imputer=True`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import MisGANConfig
from ..data import IncompleteDataset
from ..errors import OptionError
from ..misgan import MisGAN
from ..options import check_assignments
from ..runs import CheckpointError, RunDir
from ..spec import DataSpec
from .base import CellContext, Method, Run

# The paper's budget (appendix D; the released code's --pretrain, then mnist_misgan_impute.py): MisGAN alone for
# ALONE_EPOCHS, then with its imputer for JOINT_EPOCHS (JOINT_EPOCHS_LARGE for images larger than 32x32, as for
# CelebA), all networks training jointly.
ALONE_EPOCHS = 300
JOINT_EPOCHS = 1000
JOINT_EPOCHS_LARGE = 600
# Options that change what a sweep cell learns; a cell on disk is reused only when they all agree.
CELL_OPTION_FIELDS = ("arch", "latent", "tau", "mask_model", "temperature", "mask_activation", "mask_critic",
                      "batch_size", "n_critic", "alpha", "gp_weight", "lr", "betas", "imputer", "imputer_mode", "beta",
                      "imputer_lr", "imputer_sees_mask", "imputer_critic_sees_mask", "imputer_start", "ema",
                      "imputer_width", "imputer_depth", "precision", "seed")


class MisGANMethod(Method):
    name = "misgan"
    title = "MisGAN"
    trainable = True
    generates = True
    default_steps = MisGANConfig().steps
    step_unit = "generator steps"
    baseline = False
    live_fid = True
    data_parallel = True
    no_imputer_hint = "it is a MisGAN run trained without --imputer; train one with `train ... --imputer`"
    quick_steps = 200
    colour = "#D55E00"

    def __repr__(self) -> str:
        return "MisGANMethod()"

    # -- reading a config.json -----------------------------------------------------------------

    def spec_of(self, config: dict[str, Any]) -> DataSpec:
        return MisGANConfig.from_dict(config).data

    def label(self, config: Mapping[str, Any]) -> str:
        return f"{self.title} {config.get('arch') or 'fc'}" + (" + imputer" if config.get("imputer") else "")

    def imputes(self, config: Mapping[str, Any]) -> bool:
        return bool(config.get("imputer"))

    def name_prefix(self, settings: Mapping[str, Any]) -> str:
        return f"{self.name}-{settings.get('arch', 'fc')}" + ("-imp" if settings.get("imputer") else "")

    def name_settings(self, spec: DataSpec, options: Mapping[str, Any] | None, seed: int | None) -> dict[str, Any]:
        config = self.config(spec, options, seed)
        return {k: v for k, v in config.to_dict().items() if k != "data"}

    def defaults(self) -> dict[str, Any]:
        defaults = MisGANConfig()
        return {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults) if f.name != "data"}

    def config(self, spec: DataSpec, options: Mapping[str, Any] | None = None, seed: int | None = None,
               device: str | None = None) -> MisGANConfig:
        """The MisGANConfig of a run of `spec` with `options` (MisGANConfig's fields but `data`)."""
        options = dict(options or {})
        if seed is not None:
            options["seed"] = seed
        if device is not None:
            options["device"] = device
        check_assignments(MisGANConfig, options, "options", kind="MisGAN option")
        return MisGANConfig(data=spec, **options)

    # -- run folders ---------------------------------------------------------------------------

    def create(self, path: str | Path, spec: DataSpec, options: Mapping[str, Any] | None = None, *,
               seed: int | None = None, device: str | None = None, data: IncompleteDataset | None = None,
               batch_size: int | None = None) -> Run:
        if batch_size is not None:
            options = {**(options or {}), "batch_size": batch_size}
        return self.create_from_config(path, self.config(spec, options, seed, device), data=data)

    def create_from_config(self, path: str | Path, config: MisGANConfig,
                           data: IncompleteDataset | None = None) -> Run:
        """A new run folder for a MisGANConfig built elsewhere (the `train` command, the Train page)."""
        config.validate()
        return self.wrap(MisGAN(config, data=data, run_dir=path), Path(path))

    def load(self, path: str | Path, *, device: str | None = None, data: IncompleteDataset | None = None,
             for_training: bool = False) -> Run:
        return self.wrap(MisGAN.load(path, device=device, data=data), Path(path))

    def wrap(self, gan: MisGAN, path: Path) -> Run:
        """A MisGAN (made or loaded by hand) as a Run."""
        has_imputer = gan.nets.gi is not None
        config = {"kind": self.name, **gan.config.to_dict()}
        return Run(self, gan, path, gan.config.data, gan.data, config,
                   imputer=gan if has_imputer else None, sampler=lambda n, g: gan.sample(n, generator=g),
                   info={"arch": gan.config.arch, "imputer": has_imputer})

    def train(self, run: Run, steps: int | None, callback: Callable[[Any], None] | None, progress: bool) -> None:
        run.trainer.train(steps, callback=callback, progress=progress)

    def batch_geometry(self, run: Run) -> tuple[int, int]:
        return run.trainer.config.batch_size, run.trainer.config.n_critic

    # -- the paper's comparison ----------------------------------------------------------------

    def paper_steps(self, n_examples: int, batch_size: int, batches_per_step: int = 5, image_side: int = 28) -> int:
        epochs = ALONE_EPOCHS + (JOINT_EPOCHS if image_side <= 32 else JOINT_EPOCHS_LARGE)
        return math.ceil(epochs * max(1, n_examples // batch_size) / batches_per_step)

    @staticmethod
    def paper_imputer_start(n_examples: int, batch_size: int, n_critic: int = 5) -> int:
        """Generator steps before the imputer joins under the paper's budget: ALONE_EPOCHS of MisGAN alone."""
        return math.ceil(ALONE_EPOCHS * max(1, n_examples // batch_size) / n_critic)

    def cell_config(self, spec: DataSpec, context: CellContext) -> MisGANConfig:
        """A sweep cell's configuration: the imputer on (joining after the paper's ALONE_EPOCHS under the paper
        budget), the sweep's arch, seed, device and evaluation cadence, then the user's options (--misgan-set)."""
        start = self.paper_imputer_start(context.examples(), MisGANConfig.batch_size) if context.paper_budget else 0
        base = {"data": spec, "arch": context.arch, "imputer": True, "seed": context.seed, "device": context.device,
                "sample_every": 500, "checkpoint_every": 500, "imputer_start": start}
        if context.eval_every is not None:
            base["fid_every"] = context.eval_every
        check_assignments(MisGANConfig, context.options, "--misgan-set", kind="MisGAN option", exclude=("steps",))
        config = MisGANConfig(**{**base, **context.options})
        config.validate()
        return config

    def check_cell_options(self, spec: DataSpec, context: CellContext) -> None:
        self.cell_config(spec, context)  # an unknown or ill-typed option fails here, before any cell

    def sweep_cell(self, path: Path, spec: DataSpec, context: CellContext) -> Run:
        return self.create_from_config(path, self.cell_config(spec, context))

    def load_cell(self, path: Path, context: CellContext) -> Run:
        return self.load(path, device=context.device, for_training=True)

    def check_cell(self, path: Path, spec: DataSpec, context: CellContext) -> None:
        """Refuse to reuse a cell made with other options: its numbers would belong to neither. Compared: every
        option that changes the model or its training (not steps, device, threads or cadences)."""
        if not (path / "config.json").exists():
            return
        try:
            stored = MisGANConfig.from_dict(RunDir(path).read_config())
        except (CheckpointError, OSError, ValueError):
            return  # opening the cell reports what is wrong with it
        wanted = self.cell_config(spec, context).resolved()  # defaults as a new cell would store them
        for name in CELL_OPTION_FIELDS:
            value, have = getattr(wanted, name), getattr(stored, name)
            if value is not None and have != value:
                raise OptionError(f"cell {path.name} was trained with {name}={have!r}, not {value!r}: use another "
                                 f"--out for these options, or pass --misgan-set {name}={json.dumps(have)}")


MISGAN = MisGANMethod()
