"""Mean and zero imputation: the floor every other imputer must beat (paper, figure 9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..imputers import check_incomplete_batch, paste_observed
from ._common import check_matches, check_shape, config_from_options, observed_zero


@dataclass
class MeanConfig:
    pass


@dataclass
class ZeroConfig:
    value: float = 0.0  # what missing entries become


class MeanImputer(nn.Module):
    """Fills each missing entry with that entry's (pixel and channel) mean over the examples observing it;
    an entry no example observes gets the mean of all observed values."""

    name = "Mean"

    def __init__(self, shape: tuple[int, int, int], config: MeanConfig | None = None):
        super().__init__()
        self.shape = check_shape(shape)
        self.config = config or MeanConfig()
        self.register_buffer("mean", torch.zeros(self.shape))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @classmethod
    def build(cls, shape: tuple[int, int, int], **options: Any) -> MeanImputer:
        return cls(shape, config_from_options(MeanConfig, options))


    @torch.no_grad()
    def fit(self, x: torch.Tensor, m: torch.Tensor) -> dict[str, float]:
        check_incomplete_batch(x, m)
        check_matches(x, self.shape, self.name)
        x0, mb = observed_zero(x.to(self.mean.device, self.mean.dtype), m.to(self.mean.device))
        count = mb.sum(0).to(x0.dtype)
        total = count.sum()
        overall = x0.sum() / total if total > 0 else x0.new_zeros(())
        self.mean.copy_(torch.where(count > 0, x0.sum(0) / count.clamp_min(1), overall))
        self.fitted.fill_(True)
        return {"never_observed": float((count == 0).sum())}

    @torch.no_grad()
    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        check_incomplete_batch(x, m)
        check_matches(x, self.shape, self.name)
        if not bool(self.fitted):
            raise RuntimeError("MeanImputer must be fitted (fit or fit_baseline) before imputing")
        filled = self.mean.to(x.device, x.dtype).expand_as(x)
        return paste_observed(x, m, filled).unsqueeze(0).repeat(draws, 1, 1, 1, 1)


class ZeroImputer(nn.Module):
    """Fills every missing entry with 0 (or `value`); needs no fitting."""

    name = "Zero"

    def __init__(self, shape: tuple[int, int, int], config: ZeroConfig | None = None):
        super().__init__()
        self.shape = check_shape(shape)
        self.config = config or ZeroConfig()

    @classmethod
    def build(cls, shape: tuple[int, int, int], **options: Any) -> ZeroImputer:
        return cls(shape, config_from_options(ZeroConfig, options))


    def fit(self, x: torch.Tensor, m: torch.Tensor) -> dict[str, float]:
        return {}

    @torch.no_grad()
    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        check_incomplete_batch(x, m)
        check_matches(x, self.shape, self.name)
        filled = torch.full_like(x, self.config.value)
        return paste_observed(x, m, filled).unsqueeze(0).repeat(draws, 1, 1, 1, 1)
