"""GAIN (Yoon et al., 2018), the paper's first baseline: a generator completes the missing entries and a
discriminator, given hints, tells which entries were observed (network: misgan_core/baselines/gain.py).

As the paper evaluates it (appendix H), a GAIN run keeps the weights with the best imputation FID of a fixed
subset, measured every `eval_every` steps.
"""

from __future__ import annotations

import math
from typing import Any

from ..baselines import GAIN as GAINNetwork
from ..baselines import GAINConfig
from .baseline import BaselineMethod


class GAINMethod(BaselineMethod):
    def upgrade_options(self, config: dict[str, Any], options: dict[str, Any],
                        shape: tuple[int, int, int]) -> dict[str, Any]:
        if int(config.get("format", 1)) < 2:
            # Folders made before format 2: D-wide hidden layers for every data size, the MNIST example's hint.
            return {"hidden": min(math.prod(shape), 4096), "hint_form": "released", "alpha": 10.0, **options}
        return options


GAIN = GAINMethod("gain", "GAIN", GAINNetwork.build, options_class=GAINConfig, colour="#0072B2", default_steps=1000,
                  quick_steps=300, paper_epochs=300, eval_every=50, eval_every_epochs=1, select_best=True, gpu=True)
