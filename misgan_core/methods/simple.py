"""The two simplest imputations, as floors for every comparison: each pixel's observed mean, and a constant
(networks: misgan_core/baselines/simple.py)."""

from __future__ import annotations

from ..baselines import MeanConfig, MeanImputer, ZeroConfig, ZeroImputer
from .baseline import BaselineMethod

MEAN = BaselineMethod("mean", "Mean", MeanImputer.build, options_class=MeanConfig, colour="#E69F00", trainable=False,
                      step_unit="fit", eval_every=1)
ZERO = BaselineMethod("zero", "Zero", ZeroImputer.build, options_class=ZeroConfig, colour="#000000", trainable=False,
                      step_unit="fit", eval_every=1)
