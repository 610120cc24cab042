"""not-MIWAE (Ipsen, Mattei and Frellsen, ICLR 2021): MIWAE with a self-masking logistic model of the
missingness p(m | x) fitted jointly, for data missing not at random (network: misgan_core/baselines/notmiwae.py).
Its budgets are MIWAE's (methods/miwae.py)."""

from __future__ import annotations

from ..baselines.notmiwae import NotMIWAE, NotMIWAEConfig
from .miwae import LikelihoodMethod

NOTMIWAE = LikelihoodMethod("notmiwae", "not-MIWAE", NotMIWAE.build, options_class=NotMIWAEConfig, live_fid=True,
                            colour="#8C564B", generates=True, default_steps=3000, quick_steps=500, eval_every=500,
                            gpu=True)
