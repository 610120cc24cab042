"""`python -m misgan_core evaluate RUN`: full evaluation of a run, one JSON object on the last line.

A run kind plugs in with `register_run_loader(kind, loader)`; the loader turns a run folder into what
`evaluate` needs. MisGAN runs are built in; baseline runs register their own loader.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import IncompleteDataset
from ..imputers import Imputer
from .fid import SampleFn, evaluate


@dataclass
class LoadedRun:
    """What evaluation needs from a run folder."""

    dataset: str                      # the dataset name, which picks the feature extractor
    data: IncompleteDataset           # the run's incomplete data (with ground truth for built-in datasets)
    sample_fn: SampleFn | None = None  # Gx samples, for generation FID
    imputer: Imputer | None = None    # for imputation FID and RMSE
    info: dict | None = None          # extra fields for the JSON (step, kind, ...)


RunLoader = Callable[[Path, str | None], LoadedRun]
RUN_LOADERS: dict[str, RunLoader] = {}


def register_run_loader(kind: str, loader: RunLoader) -> None:
    """Make `evaluate` understand run folders whose config.json says {"kind": kind}."""
    RUN_LOADERS[kind] = loader


def _load_misgan(path: Path, device: str | None) -> LoadedRun:
    from ..misgan import MisGAN

    gan = MisGAN.load(path, device=device)
    return LoadedRun(
        dataset=gan.config.dataset, data=gan.data,
        sample_fn=lambda n, g: gan.sample(n, generator=g),
        imputer=gan if gan.nets.gi is not None else None,
        info={"kind": "misgan", "step": gan.step, "arch": gan.config.arch})


register_run_loader("misgan", _load_misgan)


def _run_kind(path: Path) -> str:
    from ..runs import RunDir

    return str(RunDir.open(path).read_config().get("kind", "misgan"))


def evaluate_run(path: str | Path, n_samples: int | None = None, seed: int = 0, device: str | None = None,
                 batch_size: int = 500) -> dict:
    """Generation FID (n_samples Gx samples, default: as many as the training set), imputation FID and
    RMSE (every training example imputed once) of a run folder."""
    path = Path(path)
    kind = _run_kind(path)
    if kind not in RUN_LOADERS:
        from ..baselines.runs import register_evaluate_loaders

        register_evaluate_loaders()
    if kind not in RUN_LOADERS:
        known = ", ".join(sorted(RUN_LOADERS))
        raise ValueError(f"cannot evaluate a {kind!r} run yet; evaluation knows {known}")
    run = RUN_LOADERS[kind](path, device)
    with torch.no_grad():
        result = evaluate(run.dataset, data=run.data, sample_fn=run.sample_fn, imputer=run.imputer,
                          n_samples=n_samples if n_samples is not None else len(run.data), seed=seed,
                          batch_size=batch_size)
    return {"run": str(path), "dataset": run.dataset, "missingness": run.data.missingness,
            **(run.info or {}), **result}


def evaluate_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m misgan_core evaluate",
                                description="FID, imputation FID and RMSE of a run; the last line printed is "
                                            "one JSON object")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("--samples", type=int, default=None,
                   help="generated samples for FID (default: as many as the training set, as in the paper)")
    p.add_argument("--seed", type=int, default=0, help="noise seed for samples and imputations")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the run's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.samples is not None and args.samples < 2:
        p.error("--samples must be at least 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = evaluate_run(args.run, args.samples, args.seed, args.device, args.batch_size)
    # Human-readable lines first, then the machine-readable JSON as the very last line.
    label = result["label"]
    for key in ("fid", "imputation_fid"):
        if result.get(key) is not None:
            print(f"{key:15s} {result[key]:.4f}  [{label}]", file=sys.stderr)
    if result.get("rmse") is not None:
        print(f"{'rmse':15s} {result['rmse']:.4f}  (missing entries only)", file=sys.stderr)
    print(json.dumps(result))
    return 0
