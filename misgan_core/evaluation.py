"""Evaluating run folders of every kind, and the results log that Compare and the CLI share.

`evaluate_run` opens any run folder through the catalogue and measures, with misgan_core.metrics, the
generation FID of its samples (where it generates), the imputation FID of its completions and the RMSE on the
missing entries. Every result carries what produced it: the method, the run's budget (steps, epochs,
seconds), the data spec and the split, and the FID's feature extractor in `label`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .catalog import open_run, runs_root
from .data import IncompleteDataset
from .errors import OptionError
from .imputers import Imputer
from .methods import Run
from .metrics import evaluate
from .runs import append_jsonl, read_jsonl
from .spec import DataSpec

RESULTS_FILE = "compare-results.jsonl"


def evaluate_imputer(imputer: Imputer, data: IncompleteDataset, seed: int = 0) -> dict[str, Any]:
    """Imputation FID (its label says which features) and RMSE on missing entries of one imputer."""
    return evaluate(data.name, imputer=imputer, data=data, seed=seed)


EVAL_SPLITS = ("train", "test")


def evaluation_data(run: Run, split: str = "train", dataset: str | None = None
                    ) -> tuple[DataSpec, IncompleteDataset]:
    """The examples to evaluate a run on: 'train', the run's own incomplete training examples (the paper's
    protocol, section 5.2: impute the training set); 'test', examples the run never saw (DataSpec.held_out).
    With `dataset`, another built-in dataset of the same image shape under the run's missingness (its split
    'test'): e.g. uci-digits, digits by other writers, for a model trained on mnist-5k."""
    if dataset is not None:
        spec = run.spec.on_dataset(dataset, run.data.shape)
        return spec, spec.load().as_float()
    if split == "train":
        return run.spec, run.data.as_float()
    if split == "test":
        return run.spec.load_held_out()
    raise OptionError(f"split must be one of {', '.join(EVAL_SPLITS)}; got {split!r}")


def split_label(split: str, n: int, dataset: str | None = None) -> str:
    if dataset is not None:
        return f"{dataset}: {n:,} examples of another dataset, never trained on"
    return f"train: the run's own {n:,} examples" if split == "train" else f"test: {n:,} held-out examples"


def evaluate_opened(run: Run, n_samples: int | None = None, seed: int = 0, batch_size: int = 500,
                    split: str = "train", dataset: str | None = None) -> dict[str, Any]:
    """Generation FID (n_samples samples, default as many as the evaluated examples, as in the paper),
    imputation FID and RMSE (every example imputed once) of an opened run on `split`, with its budget.

    On another dataset (`dataset`) only the imputation is measured: a generation FID against data the model
    was not trained to generate would measure the gap between the datasets, not the model."""
    if dataset is not None and run.imputer is None:
        raise OptionError(f"on another dataset only imputation is measured, and run {run.path.name} has no "
                          f"imputer; evaluate a run trained with --imputer (or a baseline)")
    spec, data = evaluation_data(run, split, dataset)
    with torch.no_grad():
        result = evaluate(spec.dataset, data=data, sample_fn=None if dataset else run.sampler,
                          imputer=run.imputer, n_samples=n_samples if n_samples is not None else len(data),
                          seed=seed, batch_size=batch_size)
    result["eval_seconds"] = result.pop("seconds")  # "seconds" is the run's training time (its budget)
    split = "test" if dataset else split
    return {"run": str(run.path), "kind": run.kind, "method": run.method.title,
            "dataset": spec.dataset, "missingness": data.missingness, "split": split,
            "split_label": split_label(split, len(data), dataset), **run.info, **result, **run.budget()}


def evaluate_run(path: str | Path, n_samples: int | None = None, seed: int = 0, device: str | None = None,
                 batch_size: int = 500, split: str = "train", dataset: str | None = None) -> dict[str, Any]:
    """`evaluate_opened` of the run folder at `path` (any kind)."""
    return evaluate_opened(open_run(path, device=device), n_samples, seed, batch_size, split, dataset)


# ---------------------------------------------------------------------------------------------
# The results log


def results_path(root: Path | None = None) -> Path:
    return (root or runs_root()) / RESULTS_FILE


def result_row(method: str, spec: DataSpec, result: dict[str, Any], source: str = "",
               budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """One results-table row: the numbers with the method, budget, data and split that produced them."""
    budget = budget or {}
    return {
        "method": method,
        "dataset": spec.dataset,
        "mask": spec.mask,
        "spec": spec.label(),
        "missing_rate": result.get("missing_rate"),
        "fid": result.get("imputation_fid"),
        "fid_label": result.get("label"),
        "rmse": result.get("rmse"),
        "rmse_conditional_mean": result.get("rmse_conditional_mean"),
        "n": result.get("n_imputed"),
        "split": result.get("split", "train"),
        "steps": budget.get("steps"),
        "epochs": budget.get("epochs"),
        "train_seconds": budget.get("seconds"),
        "seconds": result.get("seconds"),
        "source": source,
        "time": time.time(),
    }


def record_result(row: dict[str, Any], root: Path | None = None) -> None:
    path = results_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(path, row)


def read_results(root: Path | None = None) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(results_path(root)) if isinstance(r, dict)]
