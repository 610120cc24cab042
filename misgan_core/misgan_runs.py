"""A MisGAN run on disk and in the training driver: checkpoints, the training log, live FID points and grids.

`MisGANRunFolder` is the half of `misgan.MisGAN` that is not the paper: what training.drive calls between
steps (training.Steppable), and the run folder's checkpoints (runs.RunDir: atomic writes, safetensors weights,
weights_only training state). The paper's half, networks, losses and the step, is misgan.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from .config import MisGANConfig
from .data import IncompleteDataset
from .distributed import average
from .errors import OptionError
from .fast import SpeedPaths
from .runs import CheckpointError, RunDir

Run = TypeVar("Run", bound="MisGANRunFolder")


class MisGANRunFolder:
    """Mixed into MisGAN; uses its networks, optimizers, noise and counters."""

    # -- the driver's hooks (training.Steppable) ---------------------------------------------

    @property
    def can_save(self) -> bool:
        return self.run is not None

    @property
    def epochs(self) -> float:
        """Passes over the training data so far (critic updates / batches per epoch)."""
        return self._order.epochs(self.batches)

    def begin_training(self) -> None:
        if self._reconcile_log and self.run is not None:
            self.run.truncate_metrics(self.step)
            self._reconcile_log = False
        for module in self.nets.modules().values():
            module.train()
        if self.config.imputer and self.config.imputer_mode != "joint":
            self.nets.gx.eval()
        self._samples_ahead = []  # the networks may have been changed or loaded since the last call

    def _checkpoint_modules(self) -> dict[str, nn.Module]:
        return {**self.nets.modules(), **{f"{k}_avg": v for k, v in self.averaged.items()}}

    def log(self, records: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        # One host sync per log line: the per-step losses stay on the device until here.
        keys = records[0].keys()
        stacked = {k: torch.stack([r[k].detach() for r in records]).mean() for k in keys}
        values = torch.stack(list(stacked.values()))
        values = (average(values) if self.world > 1 else values).tolist()  # the global batch's losses
        line: dict[str, Any] = {"step": self.step, "time": round(self.train_time, 3)}
        line.update(dict(zip(keys, values, strict=True)))
        line.update({k: round(v, 4) for k, v in self.mask_model.mechanism().items()})
        self.history.append(line)
        if self.run is not None:
            self.run.log_metrics(line)
        return line

    def evaluate_point(self) -> None:
        """A live FID point (metrics.LiveFID: a cheap FID of fixed-noise Gx samples), and with an imputer the
        imputation FID of a fixed subset of the training examples and, where the dataset has a test split with
        ground truth, of a fixed held-out subset (metrics.HeldOutFID). Rank 0 only under torchrun."""
        from .metrics import CURVE_EXAMPLES, HeldOutFID, LiveFID

        if self.rank != 0:
            return
        if self._live_fid is None:
            # The live FID's noise seed is fixed (not the run's seed) so curves compare across runs.
            reference = self.data.subset(slice(0, 10_000)).x if self.data.compact else self.data.x
            self._live_fid = LiveFID(self.config.data.dataset, reference if self.data.ground_truth else None,
                                     n_samples=self.config.fid_samples)
            self._held_out_fid = (HeldOutFID.of(self.config.data, self._live_fid.extractor)
                                  if self.nets.gi is not None else None)
        value = self._live_fid(lambda n, gen: self.sample(n, generator=gen))
        record = {"step": self.step, "time": round(self.train_time, 3), "fid": value}
        if self.nets.gi is not None and self.data.ground_truth and self._imputing:
            # The imputer's curve: imputation FID of a fixed subset of the training examples, fixed noise
            # (the same subset and seed as GAIN's and ConvAC's best-FID selection, so the curves compare).
            from .metrics import imputation_fid

            subset = self.data.subset(slice(0, min(CURVE_EXAMPLES, len(self.data))))
            record["imputation_fid"] = imputation_fid(self, subset, self._live_fid.extractor, seed=0)
            record["imputation_fid_n"] = len(subset)
            if self._held_out_fid is not None:
                record["imputation_fid_test"] = self._held_out_fid(self)
                record["imputation_fid_test_n"] = self._held_out_fid.n
        self.history.append(record)
        if self.run is not None:
            self.run.log_metrics(record)

    @torch.no_grad()
    def make_grids(self, n: int = 64, save: bool = True) -> dict[str, torch.Tensor]:
        """Grids of training examples (missing in grey), Gx and Gm samples and imputations; `save` writes them
        to the run folder. Rank 0 only under torchrun."""
        from .grids import show_missing

        if self.rank != 0:
            return {}
        gen = torch.Generator().manual_seed(1234)  # fixed noise: grids compare across steps
        k = min(n, len(self.data))
        first = self.data.subset(slice(0, k))
        grids = {"data": show_missing(first.x, first.m), "gx": self.sample(n, gen)}
        if self.nets.gm is not None:
            grids["gm"] = self.sample_masks(n, gen)
        if self.nets.gi is not None:
            grids["imputed"] = self.impute(first.x, first.m, draws=1, generator=gen)[0]
        self.grids = grids
        if save and self.run is not None:
            for name, images in grids.items():
                self.run.save_grid(name, images, self.step, keep_history=name != "data")
        return grids

    # -- checkpoints --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "batches": self.batches, "train_time": self.train_time,
                "noise": self.noise.generator.get_state(), "mask_noise": self.mask_noise.get_state(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def save(self, run_dir: str | Path | None = None) -> RunDir:
        """Write weights and training state to the run folder (atomically)."""
        if run_dir is not None and self.run is None:
            self.run = RunDir.create(run_dir, {"kind": "misgan", **self.config.to_dict()})
        if self.run is None:
            raise OptionError("no run folder: pass run_dir")
        self.run.save_checkpoint(self._checkpoint_modules(), self.state())
        return self.run

    @classmethod
    def load(cls: type[Run], path: str | Path, device: str | None = None, data: IncompleteDataset | None = None,
             speed: SpeedPaths | None = None) -> Run:
        """Rebuild a run from its folder, ready to sample, impute or train on."""
        run = RunDir.open(path)
        raw = run.read_config()
        if raw.get("kind", cls.name) != cls.name:
            raise CheckpointError(f"{path} is a {raw.get('kind')!r} run, not a MisGAN run")
        try:
            config = MisGANConfig.from_dict(raw)
        except TypeError as err:
            raise CheckpointError(f"{run.path / 'config.json'} does not describe a MisGAN run: {err}") from err
        if device is not None:
            config.device = device
        gan = cls(config, data=data, run_dir=run, _resume=True, speed=speed)
        if raw.get("inference_only"):
            # A shipped model (misgan_core.demo): generators and imputer only, no training state.
            gan.step = run.load_weights_only(gan.nets.modules(), raw["inference_only"], map_location=gan.device)
            for name, avg in gan.averaged.items():  # a shipped model's weights are its averages already
                avg.load_state_dict(getattr(gan.nets, name).state_dict())
            gan.history = run.read_metrics()
            gan.batches = gan.step * config.n_critic  # for its budget: epochs and training time
            gan.train_time = float(next((r["time"] for r in reversed(gan.history)
                                         if isinstance(r.get("time"), (int, float))), 0.0))
            gan.run = None  # nothing may write into a shipped model's folder
            return gan
        state = run.load_checkpoint(gan._checkpoint_modules(), map_location=gan.device)
        try:
            for k, opt in gan.optimizers.items():
                opt.load_state_dict(state["optimizers"][k])
            gan.step, gan.batches = int(state["step"]), int(state["batches"])
            gan.train_time = float(state.get("train_time", 0.0))
            gan.noise.generator.set_state(state["noise"].cpu())
            gan.mask_noise.set_state(state["mask_noise"].cpu())
        except (KeyError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{run.path} has weights but its training state does not fit the config "
                                  f"({err}); it was made by a different model config") from err
        # Log lines after the checkpoint describe work that was lost; a reader only skips them (a training
        # may still be writing), and training drops them from the file when it resumes (begin_training).
        gan.history = [r for r in run.read_metrics() if r.get("step", 0) <= gan.step]
        gan._reconcile_log = True
        return gan
