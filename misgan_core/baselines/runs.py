"""Baselines in run folders, with the same conventions as MisGAN runs (misgan_core/runs.py).

config.json  {"kind": "gain" | "convac" | "mf" | "mean" | "zero", the data fields of MisGANConfig
             (dataset, mask, mask_size, ...), "seed", "batch_size", "options" (the model's config
             options as given), "shape" [C, H, W]}; the workbench's Compare page writes the same layout.
weights      the model under the prefix "model." in model.safetensors.
state.pt     {"step", "train_time", "trainer": BaselineTrainer.state_dict()} (optimizers, noise RNG);
             folders without "trainer" (written by the workbench) resume with fresh optimizer state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import IncompleteDataset
from ..runs import CheckpointError, RunDir
from . import BASELINES, build_baseline
from .fit import BaselineTrainer, is_trainable

BEST_WEIGHTS = "best.safetensors"
SELECT_SAMPLES = 1000  # examples in the fixed subset whose imputation FID picks the best weights
SELECT_EVERY = {"gain": 50}  # steps between selection points, per kind (GAIN degrades when trained long)


def default_select_every(kind: str, data_config: dict[str, Any]) -> int:
    """Best-FID selection where the paper used it (GAIN) and a FID feature extractor exists for the data."""
    if kind not in SELECT_EVERY:
        return 0
    try:
        from ..metrics import feature_extractor

        feature_extractor(str(data_config.get("dataset")))
    except Exception:  # no LeNet / Inception for this data: keep the last weights
        return 0
    return SELECT_EVERY[kind]


DATA_FIELDS = ("dataset", "data_dir", "limit", "mask", "mask_size", "missing_rate", "missing_rate_range",
               "mask_seed")


def load_run_data(config: dict[str, Any]) -> IncompleteDataset:
    """The incomplete data a baseline run's config describes, drawn exactly as a MisGAN run draws it."""
    from ..misgan import MisGANConfig, load_training_data

    fields = {k: config[k] for k in DATA_FIELDS if k in config}
    return load_training_data(MisGANConfig(**fields))


class BaselineRun:
    """A baseline model, its data and (for trainable models) its trainer, bound to a run folder."""

    def __init__(self, run: RunDir, config: dict[str, Any], data: IncompleteDataset, model: nn.Module,
                 device: torch.device):
        self.run, self.config, self.data, self.model, self.device = run, config, data, model, device
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
        # Best-FID selection (the paper's protocol for GAIN, appendix H): every `select_every` steps the
        # imputation FID of a fixed subset is measured and the best weights are kept in best.safetensors.
        self.select_every = int(config.get("select_every", 0) or 0)
        self.best_fid: float | None = None
        self.best_step: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._selector: Any = None

    @classmethod
    def create(cls, path: str | Path, kind: str, data_config: dict[str, Any],
               options: dict[str, Any] | None = None, seed: int = 0, batch_size: int | None = None,
               device: str = "cpu", data: IncompleteDataset | None = None) -> BaselineRun:
        """A new run folder for `kind` on the data `data_config` describes (keys of DATA_FIELDS)."""
        if kind not in BASELINES:
            raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
        options = dict(options or {})
        data = data if data is not None else load_run_data(data_config)
        # Built before the folder is made, so that bad options fail without leaving anything on disk.
        model = build_baseline(kind, tuple(data.shape), **options)
        if batch_size is None:
            batch_size = int(getattr(model.config, "batch_size", 128))
        config = {"kind": kind, **{k: data_config.get(k) for k in DATA_FIELDS if k in data_config},
                  "seed": int(seed), "batch_size": int(batch_size), "options": options,
                  "shape": list(data.shape), "select_every": default_select_every(kind, data_config)}
        run = RunDir.create(path, config)
        dev = torch.device(device)
        return cls(run, config, data, model.to(dev), dev)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None,
             data: IncompleteDataset | None = None) -> BaselineRun:
        """Rebuild a baseline run from its folder (weights, and training state where saved)."""
        run = RunDir.open(path)
        config = run.read_config()
        kind = config.get("kind")
        if kind not in BASELINES:
            raise CheckpointError(f"{path} is a {kind!r} run, not a baseline run ({', '.join(BASELINES)})")
        config.setdefault("seed", 0)
        data = data if data is not None else load_run_data(config)
        try:
            model = build_baseline(kind, tuple(data.shape), **config.get("options", {}))
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{run.path / 'config.json'} has options this version cannot build: "
                                  f"{err}") from err
        if "batch_size" not in config:
            config["batch_size"] = int(getattr(model.config, "batch_size", 128))
        dev = torch.device(device or "cpu")
        model.to(dev)
        state = run.load_checkpoint({"model": model}, map_location=dev)
        out = cls(run, config, data, model, dev)
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
        run.truncate_metrics(out.step)  # lines after the checkpoint describe work that was lost
        out.history = run.read_metrics()
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
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(str(path), device=str(self.device)))
        return True

    def _select(self, step: int) -> None:
        from ..metrics import feature_extractor, imputation_fid

        if self._selector is None:
            self._selector = feature_extractor(str(self.config.get("dataset")))
        n = min(SELECT_SAMPLES, len(self.data))
        was = self.model.training
        self.model.eval()
        fid = imputation_fid(self.model, self.data.subset(slice(0, n)), self._selector, seed=0)
        self.model.train(was)
        rec = {"step": step, "time": round(self.train_time, 3), "imputation_fid": fid}
        self.history.append(rec)
        self.run.log_metrics(rec)
        if self.best_fid is None or fid < self.best_fid:
            self.best_fid, self.best_step = fid, step
            self._best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def train(self, steps: int, on_step: Callable[[BaselineRun], None] | None = None, log_every: int = 10,
              checkpoint_every: int = 500, sample_every: int = 500, progress: bool = False,
              callback: Callable[[BaselineRun], None] | None = None) -> BaselineRun:
        """`steps` more train_step calls (closed-form models: fit once), then a checkpoint and grids.

        on_step(self) (or `callback`, the name background jobs use) runs after every step; raising there
        (e.g. StopTraining) still saves a checkpoint.
        """
        on_step = on_step or callback
        if self.trainer is None:
            if self.step == 0:
                start = time.perf_counter()
                info = self.model.fit(self.visible.to(self.device), self.data.m.to(self.device))
                self.step = 1
                self.train_time += time.perf_counter() - start
                self._log({"step": 1, **info})
                if on_step is not None:
                    on_step(self)
            self.save()
            self.make_grids()
            return self
        target = self.trainer.step + steps
        bar = _progress_bar(steps, self.trainer.step, target) if progress else None
        started = time.perf_counter() - self.train_time

        def after(step: int, record: dict[str, float]) -> None:
            self.step = step
            self.train_time = time.perf_counter() - started
            if step % log_every == 0 or step == target:
                self._log(record)
            if self.select_every and step % self.select_every == 0:
                self._select(step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k != "step"}, refresh=False)
            if step % checkpoint_every == 0 and step != target:
                self.save()
            if sample_every and step % sample_every == 0 and step != target:
                self.make_grids()
            if on_step is not None:
                on_step(self)

        try:
            self.trainer.run(target, after)
        finally:
            if bar is not None:
                bar.close()
            self.save()
        self.make_grids()
        return self

    def _log(self, record: dict[str, Any]) -> None:
        rec = {"step": int(record["step"]), "time": round(self.train_time, 3),
               **{f"loss_{k}": float(v) for k, v in record.items() if k != "step"}}
        self.history.append(rec)
        self.run.log_metrics(rec)

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


def _progress_bar(total: int, initial: int, target: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=f"steps {initial}->{target}", unit="step", dynamic_ncols=True)


def load_for_evaluation(path: Path, device: str | None) -> Any:
    """Run loader for `python -m misgan_core evaluate` (metrics.cli.register_run_loader)."""
    from ..metrics.cli import LoadedRun

    br = BaselineRun.load(path, device=device)
    br.use_best_weights()  # the paper evaluates GAIN at its best-FID epoch
    sample_fn = getattr(br.model, "sample", None)  # (n, generator) -> images; ConvAC only
    info = {"kind": br.kind, "step": br.step, "options": br.config.get("options", {})}
    if br.best_step is not None:
        info["best_step"] = br.best_step
    return LoadedRun(dataset=str(br.config.get("dataset")), data=br.data, sample_fn=sample_fn,
                     imputer=br.model, info=info)


def register_evaluate_loaders() -> None:
    """Teach `evaluate` to read every baseline kind's run folders."""
    from ..metrics.cli import register_run_loader

    for kind in BASELINES:
        register_run_loader(kind, load_for_evaluation)
