"""Baseline imputers the paper compares MisGAN against, behind the one Imputer interface.

Every class is built as `Cls(shape, config)` or `Cls.build(shape, **options)` and has
`impute(x, m, draws=1, generator=None) -> (draws, N, C, H, W)` keeping observed entries bit-exact.
GAIN and ConvAC train by gradient steps (`make_optimizers`, `train_step`, driven by `fit_baseline`);
MF, mean and zero have a closed-form `fit(x, m)` (which `fit_baseline` also calls). ConvAC can `sample`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import OptionError
from .convac import ConvAC, ConvACConfig
from .fit import BaselineTrainer, fit_baseline, is_trainable
from .gain import GAIN, GAINConfig, hint_matrix, hint_vector
from .mf import MatrixFactorization, MFConfig
from .miwae import MIWAE, MIWAEConfig
from .notmiwae import NotMIWAE, NotMIWAEConfig
from .simple import MeanConfig, MeanImputer, ZeroConfig, ZeroImputer

BASELINES: dict[str, Callable[..., nn.Module]] = {
    "gain": GAIN.build,
    "convac": ConvAC.build,
    "mf": MatrixFactorization.build,
    "miwae": MIWAE.build,
    "notmiwae": NotMIWAE.build,
    "mean": MeanImputer.build,
    "zero": ZeroImputer.build,
}


def build_baseline(kind: str, shape: tuple[int, int, int], **options: Any) -> nn.Module:
    """BASELINES[kind](shape, **options), with a readable error for an unknown kind."""
    if kind not in BASELINES:
        raise OptionError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    return BASELINES[kind](shape, **options)


__all__ = [
    "BASELINES", "BaselineTrainer", "ConvAC", "ConvACConfig", "GAIN", "GAINConfig", "MFConfig",
    "MIWAE", "MIWAEConfig",
    "MatrixFactorization", "NotMIWAE", "NotMIWAEConfig", "MeanConfig", "MeanImputer", "ZeroConfig",
    "ZeroImputer", "build_baseline",
    "fit_baseline", "hint_matrix", "hint_vector", "is_trainable",
]
