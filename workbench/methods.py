"""Imputation methods for Compare and Inpaint: MisGAN runs and the baselines (GAIN, ConvAC, MF, mean, zero).

Baselines are fitted in background jobs (the same registry as MisGAN training, so every session sees them)
as `misgan_core.baselines.runs.BaselineRun` run folders, so they survive a restart, show on the Runs page
and can be evaluated from the command line too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from misgan_core import IncompleteDataset, MisGANConfig, load_training_data
from misgan_core.jobs import Job, registry

from . import state

BASELINE_KINDS = ("gain", "convac", "mf", "mean", "zero")
BASELINE_TITLES = {"gain": "GAIN", "convac": "ConvAC", "mf": "MF", "mean": "Mean", "zero": "Zero"}
DEFAULT_STEPS = {"gain": 1000, "convac": 500, "mf": 1, "mean": 1, "zero": 1}
TRAINABLE = {"gain", "convac"}
RESULTS_FILE = "compare-results.jsonl"


def baselines_available() -> str | None:
    """None when misgan_core.baselines imports; else the reason, for a readable message on the page."""
    try:
        from misgan_core.baselines import BASELINES  # noqa: F401
    except Exception as err:  # the package is being written alongside the app
        return f"the baselines package cannot be imported ({type(err).__name__}: {err})"
    return None


def metrics_available() -> str | None:
    try:
        from misgan_core.metrics import evaluate  # noqa: F401
    except Exception as err:
        return f"the metrics package cannot be imported ({type(err).__name__}: {err})"
    return None


# ---------------------------------------------------------------------------------------------
# Data specs: the dataset and missingness a comparison is about


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    mask: str = "square"
    mask_size: int = 14
    missing_rate: float = 0.5
    missing_rate_range: tuple[float, float] | None = None
    mask_seed: int = 0
    limit: int | None = None

    def config(self) -> MisGANConfig:
        """A MisGANConfig carrying only the data fields (the engine builds the data from it)."""
        return MisGANConfig(
            dataset=self.dataset,
            data_dir=state.data_dir(),
            limit=self.limit,
            mask=self.mask,
            mask_size=self.mask_size,
            missing_rate=self.missing_rate,
            missing_rate_range=list(self.missing_rate_range) if self.missing_rate_range else None,
            mask_seed=self.mask_seed,
        )

    def load(self) -> IncompleteDataset:
        return load_training_data(self.config())

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "mask": self.mask,
            "mask_size": self.mask_size,
            "missing_rate": self.missing_rate,
            "missing_rate_range": list(self.missing_rate_range) if self.missing_rate_range else None,
            "mask_seed": self.mask_seed,
            "limit": self.limit,
        }

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> DataSpec:
        rng = c.get("missing_rate_range")
        return cls(
            str(c.get("dataset")),
            str(c.get("mask", "square")),
            int(c.get("mask_size", 14)),
            float(c.get("missing_rate", 0.5)),
            tuple(rng) if rng else None,
            int(c.get("mask_seed", 0)),
            c.get("limit"),
        )

    def same_missingness(self, other: DataSpec) -> bool:
        """Same dataset and the same missingness process (the parameters that matter for its kind)."""
        if self.dataset != other.dataset or self.mask != other.mask:
            return False
        if self.mask == "square":
            return self.mask_size == other.mask_size
        if self.mask == "dropout":
            return (
                math.isclose(self.missing_rate, other.missing_rate)
                and self.missing_rate_range == other.missing_rate_range
            )
        return True

    def label(self) -> str:
        if self.mask == "square":
            return f"{self.dataset}, square {self.mask_size}"
        if self.mask == "dropout":
            if self.missing_rate_range:
                return (
                    f"{self.dataset}, dropout {self.missing_rate_range[0]:g}-{self.missing_rate_range[1]:g}"
                )
            return f"{self.dataset}, dropout {self.missing_rate:g}"
        return f"{self.dataset}, {self.mask}"


# ---------------------------------------------------------------------------------------------
# Baseline fitting in a job


def baseline_run_name(kind: str, spec: DataSpec) -> str:
    import hashlib

    digest = hashlib.sha1(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:6]
    return f"{kind}-{Path(spec.dataset).stem}-{spec.mask}-{digest}"


def start_baseline(kind: str, spec: DataSpec, steps: int | None = None, seed: int = 0) -> Job:
    """Fit a baseline in the background (or return the job already fitting it)."""
    if kind not in BASELINE_KINDS:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINE_KINDS)}")
    reason = baselines_available()
    if reason:
        raise RuntimeError(f"cannot fit {kind}: {reason}")
    steps = int(steps or DEFAULT_STEPS[kind])
    if kind not in TRAINABLE:
        steps = 1
    state.init_process()
    base = baseline_run_name(kind, spec)
    root = state.runs_root()
    root.mkdir(parents=True, exist_ok=True)
    for job in registry().jobs():
        if job.alive and Path(job.key).name.startswith(base):
            return job
    path, k = root / base, 2
    while path.exists():
        path, k = root / f"{base}-{k}", k + 1
    data_config = {**spec.to_dict(), "data_dir": state.data_dir()}
    from misgan_core.baselines.runs import BaselineRun

    return registry().start(
        str(path),
        lambda: BaselineRun.create(path, kind, data_config, seed=seed),
        steps,
        label=f"{BASELINE_TITLES[kind]} on {spec.label()}",
    )


def baseline_job(kind: str, spec: DataSpec) -> Job | None:
    base = baseline_run_name(kind, spec)
    matches = [j for j in registry().jobs() if Path(j.key).name.startswith(base)]
    return matches[-1] if matches else None


# ---------------------------------------------------------------------------------------------
# Trained methods on disk


@dataclass
class Method:
    """A trained imputer on disk: a MisGAN run with its imputer, or a fitted baseline."""

    kind: str  # "misgan" or a baseline kind
    path: Path
    spec: DataSpec
    step: int
    shape: tuple[int, int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        if self.kind == "misgan":
            return f"MisGAN ({self.path.name})"
        return f"{BASELINE_TITLES.get(self.kind, self.kind)} ({self.path.name})"

    @property
    def short(self) -> str:
        return "MisGAN" if self.kind == "misgan" else BASELINE_TITLES.get(self.kind, self.kind)


def trained_methods(root: Path | None = None) -> list[Method]:
    """Every MisGAN run with an imputer and every fitted baseline under the runs root, newest first."""
    out = []
    for info in state.run_infos(root):
        if info.error or not info.has_checkpoint:
            continue
        if info.kind == "misgan" and not info.config.get("imputer"):
            continue
        if info.kind != "misgan" and info.kind not in BASELINE_KINDS:
            continue
        shape = tuple(info.config["shape"]) if "shape" in info.config else None
        out.append(
            Method(
                info.kind,
                info.path,
                DataSpec.from_config(info.config),
                info.step,
                shape,
                {"config": info.config},
            )
        )  # type: ignore[arg-type]
    out.extend(shipped_demo())
    return out


def shipped_demo() -> list[Method]:
    """The demo model that ships with the app (an FC MisGAN imputer on mnist-5k), when present."""
    from misgan_core import demo

    if not demo.demo_available():
        return []
    config = json.loads((demo.DEMO_DIR / "config.json").read_text())
    step = int(config.get("made_from", {}).get("step", 0))
    return [Method("misgan", demo.DEMO_DIR, DataSpec.from_config(config), step, None,
                   {"config": config, "demo": True})]


def load_method(kind: str, path: str | Path) -> Any:
    """The imputer of a method folder: a MisGAN (its impute is Gi) or a baseline module."""
    if kind == "misgan":
        return state.load_misgan(path)
    from misgan_core.baselines.runs import BaselineRun

    run = BaselineRun.load(path, device="cpu")
    run.use_best_weights()  # GAIN keeps its best-FID weights, as the paper evaluates it
    run.model.eval()
    return run.model


# ---------------------------------------------------------------------------------------------
# Evaluation and results


def evaluate_method(imputer: Any, data: IncompleteDataset) -> dict[str, Any]:
    """Imputation FID (its label says which features) and RMSE on missing entries, via misgan_core.metrics."""
    from misgan_core.metrics import evaluate

    return evaluate(data.name, imputer=imputer, data=data)


def results_path(root: Path | None = None) -> Path:
    return (root or state.runs_root()) / RESULTS_FILE


def record_result(row: dict[str, Any], root: Path | None = None) -> None:
    from misgan_core.runs import append_jsonl

    path = results_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(path, row)


def read_results(root: Path | None = None) -> list[dict[str, Any]]:
    from misgan_core.runs import read_jsonl

    return read_jsonl(results_path(root))


def sweep_series(rows: list[dict[str, Any]], dataset: str, mask: str) -> dict[str, list[tuple[float, float]]]:
    """FID against missing rate per method, from recorded results (latest value per method and rate)."""
    latest: dict[tuple[str, float], float] = {}
    for r in rows:
        if r.get("dataset") != dataset or r.get("mask") != mask or r.get("fid") is None:
            continue
        rate = r.get("missing_rate")
        if rate is None:
            continue
        latest[(str(r.get("method")), round(float(rate), 3))] = float(r["fid"])
    series: dict[str, list[tuple[float, float]]] = {}
    for (method, rate), fid in sorted(latest.items(), key=lambda kv: kv[0][1]):
        series.setdefault(method, []).append((rate, fid))
    return {k: v for k, v in series.items() if len(v) >= 2}


def evaluation_row(method: str, spec: DataSpec, result: dict[str, Any], source: str = "") -> dict[str, Any]:
    """One results-table row (also what `record_result` stores)."""
    return {
        "method": method,
        "dataset": spec.dataset,
        "mask": spec.mask,
        "spec": spec.label(),
        "missing_rate": result.get("missing_rate"),
        "fid": result.get("imputation_fid"),
        "fid_label": result.get("label"),
        "rmse": result.get("rmse"),
        "n": result.get("n_imputed"),
        "seconds": result.get("seconds"),
        "source": source,
        "time": time.time(),
    }


def sweep_closed_form(
    dataset: str,
    rates: list[float],
    kinds: list[str],
    n: int,
    mask_seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, Any]]:
    """FID against missing rate for the closed-form baselines (mean, zero, MF) under independent dropout:
    each is fitted and evaluated on the first n examples at every rate; rows are recorded."""
    from misgan_core.baselines import build_baseline, fit_baseline

    rows = []
    total = max(1, len(rates) * len(kinds))
    done = 0
    for rate in rates:
        spec = DataSpec(dataset, "dropout", missing_rate=float(rate), mask_seed=mask_seed, limit=n)
        data = spec.load()
        for kind in kinds:
            if kind in TRAINABLE:
                raise ValueError(f"{kind} trains by gradient steps; sweep it by fitting it at each rate")
            if progress is not None:
                progress(done / total, f"{BASELINE_TITLES[kind]} at missing rate {rate:g}")
            model = build_baseline(kind, data.shape)
            fit_baseline(model, data.observed_only(), data.m, 1, 128, 0)
            row = evaluation_row(BASELINE_TITLES[kind], spec, evaluate_method(model, data), source="sweep")
            record_result(row)
            rows.append(row)
            done += 1
    if progress is not None:
        progress(1.0, "done")
    return rows
