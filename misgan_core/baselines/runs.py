"""Baselines in run folders, with the same conventions as MisGAN runs (misgan_core/runs.py), trained through
the same driver (misgan_core/training.py).

config.json  {"kind": "gain" | "convac" | "mf" | "mean" | "zero", "data": DataSpec.to_dict(), "seed",
             "batch_size", "options" (the model's config options as given), "shape" [C, H, W], "eval_every",
             "select_best", "patience"}; folders written before DataSpec have the data fields at the top level,
             and still load; folders with "select_every" instead of "eval_every" selected at every point.
weights      the model under the prefix "model." in model.safetensors.
state.pt     {"step", "train_time", "trainer": BaselineTrainer.state_dict()} (optimizers, noise RNG);
             folders without "trainer" resume with fresh optimizer state.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import IncompleteDataset
from ..device import pick_device
from ..errors import OptionError
from ..migrate import data_spec_of
from ..runs import CheckpointError, RunDir
from ..spec import DataSpec
from ..training import Cadence, StopTraining, drive
from . import BASELINES, build_baseline
from .fit import BaselineTrainer, is_trainable

FORMAT = 2  # 2: "data" holds a DataSpec and GAIN's default widths follow its MNIST example
BEST_WEIGHTS = "best.safetensors"
Build = Callable[..., nn.Module]  # build(shape, **options): a network with impute (and train_step or fit)
OptionsUpgrade = Callable[[dict[str, Any], dict[str, Any], tuple[int, int, int]], dict[str, Any]]


def evaluation_cadence(spec: DataSpec, wanted: int) -> int:
    """Evaluation points every `wanted` steps where a FID feature extractor exists for the data, else off (0).
    How often each method evaluates by default, and whether it selects its best weights, its entry in
    misgan_core.methods says."""
    every = int(wanted)
    if every <= 0:
        return 0
    from ..metrics import ExtractorUnavailable, feature_extractor

    try:
        feature_extractor(spec.dataset)
    except (ExtractorUnavailable, ValueError, OSError, RuntimeError):  # no LeNet / Inception for this data
        return 0
    return every


class BaselineRun:
    """A baseline model, its data and (for trainable models) its trainer, bound to a run folder."""

    def __init__(self, run: RunDir, config: dict[str, Any], spec: DataSpec, data: IncompleteDataset,
                 model: nn.Module, device: torch.device):
        data = data.as_float()  # the baselines train on float tensors (a compact store is expanded)
        self.run, self.config, self.spec, self.data, self.model, self.device = run, config, spec, data, model, device
        self.kind = str(config["kind"])
        # Models only ever see observed entries; zero the rest so that ground truth cannot leak in.
        self.visible = torch.where(data.m.bool(), data.x, torch.zeros((), dtype=data.x.dtype))
        self.trainer: BaselineTrainer | None = None
        if is_trainable(model):
            self.trainer = BaselineTrainer(model, self.visible, data.m, int(config["batch_size"]),
                                           int(config["seed"]))
        self.step = 0
        self.train_time = 0.0
        self.history: list[dict[str, Any]] = []
        self.grids: dict[str, torch.Tensor] = {}
        # Evaluation points every `eval_every` steps: the imputation FID of a fixed subset of the training
        # examples (and of a held-out subset, metrics.HeldOutFID), logged as the run's curve. With `select_best`
        # (the paper's protocol for GAIN, appendix H) the weights with the best training-subset FID are kept in
        # best.safetensors and the run is evaluated with them; `patience` stops training after that many points
        # without a better one. Folders written before the two were apart selected at every point.
        legacy = "eval_every" not in config
        self.eval_every = int(config.get("select_every" if legacy else "eval_every", 0) or 0)
        self.select_best = bool(self.eval_every) if legacy else bool(config.get("select_best", False))
        self.patience = int(config.get("patience", 0) or 0)
        self.best_fid: float | None = None
        self.best_step: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._selector: Any = None
        self._held_out: Any = None
        self._reconcile_log = False

    @classmethod
    def create(cls, path: str | Path, kind: str, spec: DataSpec, options: dict[str, Any] | None = None,
               seed: int = 0, batch_size: int | None = None, device: str = "cpu",
               data: IncompleteDataset | None = None, eval_every: int = 0, select_best: bool = False,
               patience: int = 0, build: Build | None = None) -> BaselineRun:
        """A new run folder for `kind` on the incomplete data `spec` describes (or `data`, when given).

        eval_every: steps between evaluation points, the run's curve (0: off; the method registry gives each
        method's own, e.g. GAIN's 50).
        select_best: keep the weights of the point with the best imputation FID of the training subset and
        evaluate the run with them (GAIN, appendix H); otherwise the points are a curve only.
        patience: stop after this many points without a better FID (0: never stop early).
        build: how to make the network (default: misgan_core.baselines.BASELINES[kind])."""
        if build is None and kind not in BASELINES:
            raise OptionError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
        options = dict(options or {})
        data = data if data is not None else spec.load()
        # Built before the folder is made, so that bad options fail without leaving anything on disk; its initial
        # weights follow the run's seed (and leave the global generator as it was).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = (build or partial(build_baseline, kind))(tuple(data.shape), **options)
        if batch_size is None:
            batch_size = int(getattr(model.config, "batch_size", 128))
        if batch_size < 1:
            raise OptionError(f"batch size must be at least 1; got {batch_size}")
        config = {"kind": kind, "format": FORMAT, "data": spec.to_dict(), "seed": int(seed),
                  "batch_size": int(batch_size), "options": options, "shape": list(data.shape),
                  "eval_every": evaluation_cadence(spec, eval_every), "select_best": bool(select_best),
                  "patience": int(patience)}
        dev = pick_device(device)
        run = RunDir.create(path, config)
        return cls(run, config, spec, data, model.to(dev), dev)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, data: IncompleteDataset | None = None,
             upgrade: OptionsUpgrade | None = None, build: Build | None = None) -> BaselineRun:
        """Rebuild a baseline run from its folder (weights, and training state where saved). `upgrade(config,
        options, shape)` gives the options a folder written by an earlier version was built with."""
        run = RunDir.open(path)
        config = run.read_config()
        kind = config.get("kind")
        if build is None and kind not in BASELINES:
            raise CheckpointError(f"{path} is a {kind!r} run, not a baseline run ({', '.join(BASELINES)})")
        config.setdefault("seed", 0)
        spec = data_spec_of(config)
        data = data if data is not None else spec.load()
        options = config.get("options", {})
        if not isinstance(options, dict):
            raise CheckpointError(f"{run.path / 'config.json'}: options must be an object; got {options!r}")
        if upgrade is not None:
            options = upgrade(config, options, tuple(data.shape))
        try:
            model = (build or partial(build_baseline, kind))(tuple(data.shape), **options)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{run.path / 'config.json'} has options this version cannot build: "
                                  f"{err}") from err
        if "batch_size" not in config:
            config["batch_size"] = int(getattr(model.config, "batch_size", 128))
        dev = pick_device(device or "cpu")
        model.to(dev)
        state = run.load_checkpoint({"model": model}, map_location=dev)
        out = cls(run, config, spec, data, model, dev)
        out.step = int(state.get("step", 0))
        out.train_time = float(state.get("train_time", 0.0))
        if state.get("best_fid") is not None:
            out.best_fid, out.best_step = float(state["best_fid"]), int(state["best_step"])
        if out.trainer is not None:
            if "trainer" in state:
                try:
                    out.trainer.load_state_dict(state["trainer"])
                except (KeyError, ValueError, RuntimeError) as err:
                    raise CheckpointError(f"{run.path} training state does not fit its config "
                                          f"({err})") from err
            out.trainer.step = out.step
        # Lines after the checkpoint describe lost work: skipped here, dropped from the file on resume.
        out.history = [r for r in run.read_metrics() if r.get("step", 0) <= out.step]
        out._reconcile_log = True
        model.eval()
        return out

    def save(self) -> None:
        state: dict[str, Any] = {"step": self.step, "train_time": self.train_time,
                                 "best_fid": self.best_fid, "best_step": self.best_step}
        if self.trainer is not None:
            state["trainer"] = self.trainer.state_dict()
        if self._best_state is not None:
            from safetensors.torch import save_file

            tmp = self.run.path / (BEST_WEIGHTS + ".tmp")
            save_file(self._best_state, str(tmp), metadata={"step": str(self.best_step), "fid": str(self.best_fid)})
            tmp.replace(self.run.path / BEST_WEIGHTS)
        self.run.save_checkpoint({"model": self.model}, state)

    def use_best_weights(self) -> bool:
        """Load the best-FID weights into the model (for imputing and evaluating); False if there are none."""
        path = self.run.path / BEST_WEIGHTS
        if not path.exists():
            return False
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            self.model.load_state_dict(load_file(str(path), device=str(self.device)))
        except (SafetensorError, OSError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{path} is corrupt ({err}); delete it to use the last weights") from err
        return True

    @property
    def epochs(self) -> float:
        """Passes over the training data so far (closed-form fits: one)."""
        if self.trainer is None:
            return float(self.step)
        return self.trainer.order.epochs(self.step)

    # -- training through the driver -----------------------------------------------------------

    def train(self, steps: int | None = None, callback: Callable[[BaselineRun], None] | None = None,
              progress: bool = False, log_every: int = 10, checkpoint_every: int = 500,
              sample_every: int = 500, checkpoint_minutes: float = 5.0) -> BaselineRun:
        """`steps` more train_step calls (closed-form models: the one fit, if not done yet), then a checkpoint
        and grids. `callback(self)` runs after every step and may raise StopTraining."""
        if self.trainer is None:
            steps = 1 if self.step == 0 else 0
        elif steps is None:
            raise OptionError(f"say how many steps to train {self.kind} for")
        cadence = Cadence(log_every=log_every, eval_every=self.eval_every, sample_every=sample_every,
                          checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes)
        fields = ("loss_d_loss", "loss_g_loss", "loss_mse", "loss_nll")
        try:
            drive(self, steps, cadence, callback, progress, progress_fields=fields)
        finally:
            self.model.eval()
        return self

    can_save = True

    def begin_training(self) -> None:
        if self._reconcile_log:
            self.run.truncate_metrics(self.step)
            self._reconcile_log = False
        self.model.train()

    def train_step(self) -> dict[str, Any]:
        if self.trainer is None:
            info = self.model.fit(self.visible.to(self.device), self.data.m.to(self.device))
            self.step = 1
            return {"step": 1, **info}
        record = self.trainer.train_step()
        self.step = self.trainer.step
        return record

    def log(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        record = records[-1]
        line = {"step": int(record["step"]), "time": round(self.train_time, 3),
                **{f"loss_{k}": float(v) for k, v in record.items() if k != "step"}}
        self.history.append(line)
        self.run.log_metrics(line)
        return line

    def evaluate_point(self) -> None:
        """An evaluation point: the imputation FID of a fixed subset of the training examples (the subset MisGAN's
        curve uses) and, where the dataset has a test split with ground truth, of a fixed held-out subset; with
        `select_best` the weights of the best training-subset FID are kept."""
        from ..metrics import CURVE_EXAMPLES, HeldOutFID, feature_extractor, imputation_fid

        if self._selector is None:
            self._selector = feature_extractor(self.spec.dataset)
            self._held_out = HeldOutFID.of(self.spec, self._selector)
        n = min(CURVE_EXAMPLES, len(self.data))
        was = self.model.training
        self.model.eval()
        fid = imputation_fid(self.model, self.data.subset(slice(0, n)), self._selector, seed=0)
        rec: dict[str, Any] = {"step": self.step, "time": round(self.train_time, 3), "imputation_fid": fid,
                               "imputation_fid_n": n}
        if self._held_out is not None:
            rec["imputation_fid_test"] = self._held_out(self.model)
            rec["imputation_fid_test_n"] = self._held_out.n
        self.model.train(was)
        self.history.append(rec)
        self.run.log_metrics(rec)
        if self.best_fid is None or fid < self.best_fid:
            self.best_fid, self.best_step = fid, self.step
            if self.select_best:
                self._best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.stopped_early:
            raise StopTraining  # the driver ends cleanly: checkpoint and grids

    @property
    def stopped_early(self) -> bool:
        """Whether `patience` evaluation points have passed without a better FID."""
        return bool(self.patience and self.eval_every and self.best_step is not None
                    and self.step - self.best_step >= self.patience * self.eval_every)

    @torch.no_grad()
    def make_grids(self, n: int = 32, save: bool = True) -> dict[str, torch.Tensor]:
        """Observed inputs (missing grey) and one imputation each; ConvAC also unconditional samples.

        Closed-form models (mean, MF) cannot impute before their fit, so they have no grids at step 0.
        """
        from ..grids import show_missing

        if self.trainer is None and self.step == 0:
            return {}

        x, m, visible = self.data.x[:n], self.data.m[:n], self.visible[:n]
        gen = torch.Generator().manual_seed(0)
        grids = {"data": show_missing(x, m),
                 "imputed": self.model.impute(visible, m, draws=1, generator=gen)[0].cpu()}
        if hasattr(self.model, "sample"):
            grids["samples"] = self.model.sample(n, generator=gen).cpu()
        self.grids = grids
        if save:
            for name in ("imputed", "samples"):
                if name in grids:
                    self.run.save_grid(name, grids[name], self.step, keep_history=False)
        return grids
