"""The one interface every imputer follows: MisGAN's Gi and each baseline.

Shapes used throughout the engine:
  x: float tensor (N, C, H, W), values in [0, 1]; entries where m == 0 are ignored.
  m: float tensor (N, 1, H, W) of 0/1, 1 = observed; broadcast over channels.

`impute(x, m, draws=K)` returns (K, N, C, H, W) with every observed entry of x kept bit-exact. An imputer may
also offer `conditional_mean(x, m, generator=None)`, its estimate of E[x_mis | x_obs] (N, C, H, W); evaluation
then reports that estimate's RMSE as well (`rmse_conditional_mean`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .errors import DatasetError, OptionError


@runtime_checkable
class Imputer(Protocol):
    """Anything that completes incomplete images. `name` is shown in tables and pages."""

    name: str

    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        ...


def paste_observed(x: torch.Tensor, m: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """Keep x where observed and `filled` elsewhere, exactly (torch.where, not arithmetic)."""
    return torch.where(m.bool(), x, filled)


def check_incomplete_batch(x: torch.Tensor, m: torch.Tensor) -> None:
    """Raise ValueError with a readable message when (x, m) cannot be an incomplete batch."""
    if x.dim() != 4:
        raise OptionError(f"x must have shape (N, C, H, W); got {tuple(x.shape)}")
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] != x.shape[0] or m.shape[2:] != x.shape[2:]:
        raise OptionError(
                          f"mask must have shape (N, 1, H, W) matching x {tuple(x.shape)}; got {tuple(m.shape)}")
    observed = torch.where(m.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
    if not torch.isfinite(observed).all():
        raise DatasetError("x has NaN or infinite values at observed entries; mark them missing in m")
