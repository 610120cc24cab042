"""MIWAE (Mattei and Frellsen, ICML 2019), a likelihood-based deep imputer: a VAE fitted to the observed pixels
with an importance-weighted bound, imputing by sampling importance resampling (network:
misgan_core/baselines/miwae.py). `arch=conv` gives it P-VAE's convolutional networks (Li and Marlin, 2020).

Its sweep budget `paper` is the released not-MIWAE code's training length, 100,000 iterations of 16 examples
(1.6 million examples), at this method's batch size. A run logs the imputation-FID curve every
`eval_every` steps, on split train and, where the dataset has one, split test, and is evaluated with its last
weights (no best-FID selection).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..baselines.miwae import MIWAE as MIWAENetwork
from ..baselines.miwae import MIWAEConfig
from ..data import DATASETS
from ..errors import OptionError
from ..spec import DataSpec
from .base import CellContext
from .baseline import BaselineMethod

PAPER_EXAMPLES = 100_000 * 16  # iterations x batch size of the released not-MIWAE code (its UCI task)


class LikelihoodMethod(BaselineMethod):
    """MIWAE and not-MIWAE: a choice of networks (the sweep's --arch) and a budget counted in examples."""

    def label(self, config: Mapping[str, Any]) -> str:
        arch = dict(config.get("options") or {}).get("arch", "fc")
        return f"{self.title} (P-VAE's conv networks)" if arch == "conv" else self.title

    def paper_steps(self, n_examples: int, batch_size: int, batches_per_step: int = 1, image_side: int = 28) -> int:
        return math.ceil(PAPER_EXAMPLES / batch_size)

    def cell_options(self, context: CellContext) -> dict[str, Any]:
        return {"arch": context.arch, **dict(context.options)}

    def check_cell_options(self, spec: DataSpec, context: CellContext) -> None:
        """P-VAE's conv networks take 28x28 images: refuse another built-in dataset before any cell trains."""
        super().check_cell_options(spec, context)
        known = DATASETS.get(spec.dataset)
        if context.arch == "conv" and known is not None and tuple(known.shape[1:]) != (28, 28):
            c, h, w = known.shape
            raise OptionError(f"{self.title}'s conv networks (P-VAE's) take 28x28 images; {spec.dataset} images are "
                              f"{h}x{w}: use --arch fc")


MIWAE = LikelihoodMethod("miwae", "MIWAE", MIWAENetwork.build, options_class=MIWAEConfig, colour="#7F3C8D",
                         live_fid=True, generates=True, default_steps=3000, quick_steps=500, eval_every=500, gpu=True)
