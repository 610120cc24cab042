"""Fréchet distance between Gaussians fitted to features, in float64.

d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

The trace term is computed from the symmetric form (S1^(1/2) S2 S1^(1/2))^(1/2), which has the same
eigenvalues as (S1 S2)^(1/2) but is symmetric positive semi-definite, so `eigh` gives real, stable
eigenvalues. scipy's sqrtm of the non-symmetric product S1 S2 can return complex parts or non-finite
values when a covariance is near-singular (fewer samples than feature dimensions, dead features); the
symmetric form only needs rounding-level negative eigenvalues clipped to zero.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import OptionError

# Eigenvalues below -NEG_TOL * (largest eigenvalue) mean the input was not a covariance at all; smaller
# negative ones are rounding and are clipped to zero.
NEG_TOL = 1e-6


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of (N, d) features."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, d); got shape {f.shape}")
    if len(f) < 2:
        raise OptionError(f"need at least 2 feature vectors for a covariance; got {len(f)}")
    if not np.isfinite(f).all():
        raise OptionError("features contain NaN or infinity (did the model produce non-finite images?)")
    mu = f.mean(axis=0)
    centred = f - mu
    sigma = centred.T @ centred / (len(f) - 1)
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix."""
    vals, vecs = np.linalg.eigh(sigma)
    _check_psd(vals, "a covariance")
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def _check_psd(vals: np.ndarray, what: str) -> None:
    top = max(float(np.max(np.abs(vals))), np.finfo(np.float64).tiny)
    low = float(np.min(vals))
    if low < -NEG_TOL * top:
        raise ValueError(f"{what} has eigenvalue {low:.3g} (largest {top:.3g}): not positive semi-definite")


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    root1 = _psd_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1
    inner = (inner + inner.T) / 2  # exact symmetry, so eigvalsh sees what it assumes
    vals = np.linalg.eigvalsh(inner)
    _check_psd(vals, "S1^1/2 S2 S1^1/2")
    return float(np.sqrt(np.clip(vals, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    Near-singular covariances are fine (tiny negative eigenvalues are rounding and are clipped). If the
    eigendecomposition still fails or is not finite, `eps * I` is added to both covariances, as the
    reference FID code does; a covariance that is clearly not positive semi-definite raises ValueError.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, "
                         f"sigma2 {s2.shape}")
    for name, a in (("mu1", mu1), ("mu2", mu2), ("sigma1", s1), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} has NaN or infinite entries")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        scale = max(float(np.max(np.abs(s))), 1e-300)
        if float(np.max(np.abs(s - s.T))) > 1e-8 * scale:
            raise ValueError(f"{name} is not symmetric")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2

    try:
        tr_covmean = _trace_sqrt_product(s1, s2)
        ok = np.isfinite(tr_covmean)
    except np.linalg.LinAlgError:
        ok = False
    if not ok:
        offset = np.eye(d) * eps
        tr_covmean = _trace_sqrt_product(s1 + offset, s2 + offset)
        if not np.isfinite(tr_covmean):
            raise ValueError("Fréchet distance is not finite even after regularising the covariances")

    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    # The exact value is >= 0; rounding can leave -1e-12 when the two Gaussians coincide.
    return max(value, 0.0)
