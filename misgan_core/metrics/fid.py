"""Generation FID, imputation FID, RMSE on missing entries, and the cheap live FID for training curves.

Every FID here compares features of produced images with features of the *complete* data (ground truth),
as in the paper: generation FID uses Gx samples, imputation FID uses every incomplete example imputed with
its observed pixels pasted back. The same functions serve MisGAN and every baseline imputer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from ..data import IncompleteDataset, load_complete
from ..errors import DatasetError, MisGANError, OptionError
from ..imputers import Imputer, paste_observed
from ..spec import DataSpec
from .features import FeatureExtractor, feature_extractor, reference_statistics
from .frechet import feature_statistics, frechet_distance

SampleFn = Callable[[int, torch.Generator], torch.Tensor]

# Live FID during training: a small share of training time at this cadence (bench/live_fid_cost.py measures
# it; docs/performance.md, "CPU and GPU"). 1,000 samples keep the estimate's spread well below the
# differences that matter along a curve; the value is biased upward relative to the full-size FID
# (FID grows as the sample count shrinks), so live values compare only with live values.
LIVE_FID_EVERY = 100      # generator steps between live FID points
LIVE_FID_SAMPLES = 1000   # generated samples per live FID point
LIVE_FID_SEED = 1234      # the fixed noise seed: every call (and every run) uses the same latent draws
CURVE_EXAMPLES = 1000     # examples per imputation-FID point along training, on each split


def _as_images(x: torch.Tensor, n: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) != n:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"sample_fn({n}, generator) must return (n, C, H, W) images; got {shape}")
    return x.detach().float().cpu()


@torch.no_grad()
def generate(sample_fn: SampleFn, n: int, seed: int, batch_size: int = 500) -> torch.Tensor:
    """n images from sample_fn(batch, generator), drawn in batches from one generator seeded with seed."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        parts.append(_as_images(sample_fn(b, gen), b))
    return torch.cat(parts)


def generation_fid(sample_fn: SampleFn, complete_x: torch.Tensor, extractor: FeatureExtractor,
                   n_samples: int | None = None, seed: int = 0, batch_size: int = 500) -> float:
    """FID of generated samples against the complete data.

    sample_fn(n, generator) -> (n, C, H, W) images in [0, 1]; it should draw its noise from the given
    CPU generator so that a seed fixes the samples. n_samples defaults to the size of the complete data
    (the paper uses as many samples as the training set).
    """
    n = len(complete_x) if n_samples is None else int(n_samples)
    if n < 2:
        raise OptionError(f"need at least 2 samples for FID; got {n}")
    ref = reference_statistics(extractor, complete_x, batch_size)
    # Features batch by batch: full-size evaluations never hold all samples and features at once.
    gen = torch.Generator().manual_seed(seed)
    feats = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            feats.append(extractor.features(_as_images(sample_fn(b, gen), b), batch_size))
    return frechet_distance(*feature_statistics(np.concatenate(feats)), *ref)


@torch.no_grad()
def impute_dataset(imputer: Imputer, data: IncompleteDataset, n: int | None = None, seed: int = 0,
                   batch_size: int = 500) -> torch.Tensor:
    """One imputation draw of the first n examples (all by default), observed pixels pasted back.

    The imputer sees only the observed entries (missing ones zeroed), so it cannot read the ground truth
    that synthetic incomplete data carries; its output is pasted with paste_observed even when the
    imputer already keeps observed pixels, so an imputer cannot gain by altering them.
    """
    n = len(data) if n is None else min(int(n), len(data))
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        x = data.x[start:min(start + batch_size, n)]
        m = data.m[start:start + len(x)]
        visible = torch.where(m.bool(), x, torch.zeros((), dtype=x.dtype))
        filled = imputer.impute(visible, m, draws=1, generator=gen)
        if filled.dim() != 5 or filled.shape[0] != 1 or filled.shape[1:] != x.shape:
            raise ValueError(f"{getattr(imputer, 'name', imputer)!r}.impute returned {tuple(filled.shape)}; "
                             f"expected (1, {', '.join(map(str, x.shape))})")
        out.append(paste_observed(x, m, filled[0].detach().to(x.device, x.dtype)))
    return torch.cat(out)


def _require_ground_truth(data: IncompleteDataset) -> None:
    if not data.ground_truth:
        raise DatasetError(f"dataset {data.name!r} has no ground truth at its missing entries (it is the "
                           f"user's own incomplete data), so imputation FID and RMSE cannot be computed")


def imputation_fid(imputer: Imputer, data: IncompleteDataset, extractor: FeatureExtractor,
                   n: int | None = None, seed: int = 0, batch_size: int = 500) -> float:
    """FID of the imputed data (observed pixels pasted back) against the complete data data.x."""
    _require_ground_truth(data)
    imputed = impute_dataset(imputer, data, n, seed, batch_size)
    return _fid_against(imputed, data.x, extractor, batch_size)


def _fid_against(images: torch.Tensor, complete_x: torch.Tensor, extractor: FeatureExtractor,
                 batch_size: int) -> float:
    ref = reference_statistics(extractor, complete_x, batch_size)
    return frechet_distance(*feature_statistics(extractor.features(images, batch_size)), *ref)


def rmse_missing(imputed: torch.Tensor, x_true: torch.Tensor, m: torch.Tensor) -> float:
    """Root mean squared error over missing entries only (m == 0), pooled over all of them.

    imputed may carry leading draw dimensions, (..., N, C, H, W); m (N, 1, H, W) broadcasts over
    channels, so a missing pixel of an RGB image counts as three entries. NaN when nothing is missing.
    """
    missing = (m == 0).to(torch.float64).expand_as(x_true)
    err = (imputed.to(torch.float64) - x_true.to(torch.float64)) ** 2
    count = missing.sum() * (err.numel() // x_true.numel())
    if count == 0:
        return math.nan
    return float(torch.sqrt((err * missing).sum() / count))


def evaluate(dataset_name: str, complete_x: torch.Tensor | None = None, sample_fn: SampleFn | None = None,
             imputer: Imputer | None = None, data: IncompleteDataset | None = None,
             extractor: FeatureExtractor | None = None, n_samples: int | None = None, seed: int = 0,
             batch_size: int = 500) -> dict:
    """Full evaluation: generation FID (with sample_fn), imputation FID and RMSE (with imputer and data).

    complete_x defaults to data.x. Returns a JSON-ready dict whose keys are always present:
    label, fid, imputation_fid, rmse (None where not computed or undefined), n_samples (generated samples),
    n_imputed, missing_rate, seconds.
    """
    start = time.perf_counter()
    if complete_x is None:
        if data is None:
            raise ValueError("evaluate needs complete_x or an incomplete dataset with ground truth")
        _require_ground_truth(data)  # without it data.x holds zeros at missing entries, not the data
        complete_x = data.x
    extractor = extractor or feature_extractor(dataset_name)
    out: dict = {"label": extractor.label, "fid": None, "imputation_fid": None, "rmse": None,
                 "n_samples": None, "n_imputed": None, "missing_rate": None}
    if sample_fn is not None:
        n = len(complete_x) if n_samples is None else int(n_samples)
        out["fid"] = generation_fid(sample_fn, complete_x, extractor, n, seed, batch_size)
        out["n_samples"] = n
    if imputer is not None:
        if data is None:
            raise ValueError("an imputer needs the incomplete dataset to impute (data=...)")
        _require_ground_truth(data)
        imputed = impute_dataset(imputer, data, None, seed, batch_size)
        # Reference: the complete data (all of it), as for generation FID.
        out["imputation_fid"] = _fid_against(imputed, data.x, extractor, batch_size)
        r = rmse_missing(imputed, data.x, data.m)
        out["rmse"] = None if math.isnan(r) else r
        out["n_imputed"] = len(imputed)
        out["missing_rate"] = data.missing_rate
        conditional_mean = getattr(imputer, "conditional_mean", None)
        if conditional_mean is not None:  # an estimate of E[x_mis | x_obs] (MIWAE's weighted mean): its RMSE too
            gen = torch.Generator().manual_seed(seed)
            means = torch.cat([conditional_mean(data.x[i:i + batch_size], data.m[i:i + batch_size], generator=gen)
                               for i in range(0, len(data), batch_size)])
            r = rmse_missing(means, data.x, data.m)
            out["rmse_conditional_mean"] = None if math.isnan(r) else r
    out["seconds"] = round(time.perf_counter() - start, 3)
    return out


def default_fid_every(dataset: str) -> int:
    """Live FID cadence for a dataset: LIVE_FID_EVERY where a feature extractor for it is at hand, else 0."""
    try:
        feature_extractor(dataset)
    except Exception:  # no classifier for this data (user data, RGB without Inception): no live FID
        return 0
    return LIVE_FID_EVERY


class LiveFID:
    """Cheap FID for training curves: a fixed sample count and a fixed noise seed, so points along a run
    and across runs are comparable. Reference statistics are computed (or loaded) once, here.

    live = LiveFID("mnist-5k", complete_x); then every LIVE_FID_EVERY generator steps:
    log(step, wall_time, live(sample_fn)).
    """

    def __init__(self, dataset_name: str, complete_x: torch.Tensor | None, n_samples: int = LIVE_FID_SAMPLES,
                 seed: int = LIVE_FID_SEED, every: int = LIVE_FID_EVERY,
                 extractor: FeatureExtractor | None = None, batch_size: int = 500) -> None:
        self.extractor = extractor or feature_extractor(dataset_name)
        if complete_x is None:
            # No ground truth in hand (e.g. the trainer got only incomplete data): a built-in dataset's
            # complete training set is the reference, as in the paper.
            complete_x = load_complete(dataset_name, split="all").x
        self.label = self.extractor.label
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.every = int(every)
        self.batch_size = batch_size
        self.complete_x = complete_x
        self.reference = reference_statistics(self.extractor, complete_x, batch_size)
        self.last_seconds: float | None = None

    def due(self, step: int) -> bool:
        """Whether generator step `step` (counted from 1) gets a live FID point."""
        return self.every > 0 and step % self.every == 0

    def __call__(self, sample_fn: SampleFn) -> float:
        start = time.perf_counter()
        x = generate(sample_fn, self.n_samples, self.seed, self.batch_size)
        value = frechet_distance(*feature_statistics(self.extractor.features(x, self.batch_size)),
                                 *self.reference)
        self.last_seconds = time.perf_counter() - start
        return value


class HeldOutFID:
    """The imputation FID of a fixed held-out subset along a training run: the first CURVE_EXAMPLES examples of
    the dataset's test split under the run's own missingness process and mask seed (DataSpec.load_held_out, the
    examples `evaluate --split test` scores), one fixed imputation seed, the run's feature extractor. Points
    along a run, and across runs of the same data and missingness, compare.

    held = HeldOutFID.of(spec, extractor)    # None where there is no test split with ground truth
    value = held(imputer)
    """

    split = "test"

    def __init__(self, data: IncompleteDataset, extractor: FeatureExtractor, seed: int = 0) -> None:
        _require_ground_truth(data)
        self.data, self.extractor, self.seed = data, extractor, int(seed)

    @property
    def n(self) -> int:
        """Examples each point imputes."""
        return len(self.data)

    @classmethod
    def of(cls, spec: DataSpec, extractor: FeatureExtractor, n: int = CURVE_EXAMPLES) -> HeldOutFID | None:
        """The held-out curve of runs trained on `spec`; None where its dataset has no held-out split with ground
        truth (the user's own data, mnist-5k's split 'all', a test split that is not on disk)."""
        try:
            _, data = spec.load_held_out(n)
        except (MisGANError, OSError):
            return None
        if not data.ground_truth or len(data) < 2:
            return None
        return cls(data, extractor)

    def __call__(self, imputer: Imputer) -> float:
        return imputation_fid(imputer, self.data, self.extractor, seed=self.seed)
