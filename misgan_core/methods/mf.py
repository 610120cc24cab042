"""Matrix factorisation, the paper's closed-form baseline: a low-rank fit of the observed entries by alternating
least squares (network: misgan_core/baselines/mf.py)."""

from __future__ import annotations

from ..baselines import MatrixFactorization, MFConfig
from .baseline import BaselineMethod

MF = BaselineMethod("mf", "MF", MatrixFactorization.build, options_class=MFConfig, colour="#CC79A7", trainable=False,
                   step_unit="fit", eval_every=1)
