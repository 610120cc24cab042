"""not-MIWAE (Ipsen, Mattei and Frellsen, ICLR 2021): MIWAE (miwae.py) with a model of the missingness p(m | x),
fitted jointly, for data missing not at random.

Each weight of the bound gains the mask's likelihood under the mask model, at a draw of the missing pixels:

    w_k = p(x_o | z_k) p(m | x_o, x_m^k) p(z_k) / q(z_k | x_o),    x_m^k ~ p(x_m | z_k),

where x_m^k is drawn by the continuous Bernoulli's inverse CDF, so the bound is differentiable in the decoder
through the draw (the paper's reparameterisation in data space).

The mask model is the paper's self-masking logistic: pixel d is observed with probability

    p(m_d = 1 | x_d) = sigmoid(slope_d x_d + offset_d)

(the paper writes the logit as -W (x - b); slope = -W, offset = W b), one slope and offset per pixel
(`missingness="self-masking"`) or one pair for the whole image (`"self-masking-shared"`). This is the same
family as MisGAN's self-masking mask model and the workbench's self-masking process, so a slope below zero
means bright pixels go missing. Under MCAR the slope that fits is 0.

Imputing, the weights w_k include p(m | x_o, x_m^k) at the drawn x_m^k, and each draw (and the weighted mean) is
the decoder's mean at the resampled z_k, as in the released not-MIWAE code; the paper's estimator weights the
draws x_m^k themselves, which also carries the dependence between a z_k's missing pixels and the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError
from .miwae import MIWAE, MIWAEConfig

MISSINGNESS = ("self-masking", "self-masking-shared")


@dataclass
class NotMIWAEConfig(MIWAEConfig):
    missingness: str = "self-masking"   # per-pixel slope and offset; self-masking-shared: one of each


class NotMIWAE(MIWAE):
    """MIWAE with a self-masking logistic model of p(m | x), trained jointly."""

    name = "not-MIWAE"
    config_class = NotMIWAEConfig

    def __init__(self, shape: tuple[int, int, int], config: NotMIWAEConfig | None = None):
        super().__init__(shape, config)
        cfg = self.config
        if cfg.missingness not in MISSINGNESS:
            raise OptionError(f"missingness must be one of {', '.join(MISSINGNESS)}; got {cfg.missingness!r}")
        size = (1, *self.shape[1:]) if cfg.missingness == "self-masking" else (1, 1, 1)
        self.mask_slope = nn.Parameter(torch.zeros(size))
        self.mask_offset = nn.Parameter(torch.zeros(size))

    def _extra_log_weight(self, x0: torch.Tensor, m: torch.Tensor, out: torch.Tensor,
                          generator: torch.Generator | None) -> torch.Tensor:
        """log p(m | x_o, x_m^k) of shape (K, N), with x_m^k drawn from p(x_m | z_k)."""
        drawn = self._draw_pixels(out, generator)
        mb = m.bool().expand_as(x0)
        x = torch.where(mb, x0, drawn)                               # (K, N, C, H, W): x_o with x_m^k filled in
        mask_logit = self.mask_slope * x.mean(dim=2, keepdim=True) + self.mask_offset
        observed = m.to(mask_logit.dtype).expand_as(mask_logit)
        return -F.binary_cross_entropy_with_logits(mask_logit, observed, reduction="none").flatten(2).sum(-1)

    def mechanism(self) -> dict[str, float]:
        """The learnt self-masking logistic, averaged over pixels: observed with probability
        sigmoid(slope x + offset)."""
        values = torch.stack([self.mask_slope.detach().mean(), self.mask_offset.detach().mean()]).tolist()
        return {"mask_slope": round(values[0], 4), "mask_offset": round(values[1], 4)}
