"""ConvAC (Sharir et al., 2016), the paper's second baseline: a convolutional arithmetic circuit, a tractable
density over images that imputes and samples exactly (network: misgan_core/baselines/convac.py).

Under the sweep's paper budget it trains until the imputation FID of its selection subset has not improved for
`paper_patience` points and is evaluated with its best point's weights, capped at the paper's 1000 epochs; under
the other budgets it logs its curve every `eval_every` steps and is evaluated with its last weights.
"""

from __future__ import annotations

from ..baselines import ConvAC, ConvACConfig
from .baseline import BaselineMethod

CONVAC = BaselineMethod("convac", "ConvAC", ConvAC.build, options_class=ConvACConfig, colour="#009E73", generates=True,
                        default_steps=1000, quick_steps=100, paper_epochs=1000, eval_every=100,
                        eval_every_epochs=5, paper_patience=4, gpu=True)
