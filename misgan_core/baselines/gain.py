"""GAIN: generative adversarial imputation nets (Yoon, Jordon and van der Schaar, ICML 2018).

Follows the authors' released code (github.com/jsyoon0823/GAIN, gain.py), which the MisGAN paper
adapted for its comparison:
  - the generator sees x~ = m * x + (1 - m) * z with z ~ U(0, 0.01) and the mask m, and outputs
    values in [0, 1] (sigmoid); x^ = m * x + (1 - m) * G(x~, m);
  - the discriminator sees x^ and a hint h and predicts m per entry. The default hint is the GAIN paper's
    (section 4): b is all ones but one entry k per example, h = b * m + 0.5 * (1 - b), and the D loss and
    G's adversarial loss are taken on entry k alone. The authors' MNIST example instead reveals each entry
    with probability hint_rate (h = m * b) and scores every entry (hint_form="released"). On block masks
    the released hint lets D read the whole mask off h, and G's adversarial loss then pulls every missing
    pixel to the most common observed value, black: on square observations its imputation FID never got
    below mean imputation's, while the paper's hint completes digits at its best epoch before GAIN degrades
    as the paper describes (appendix H; figures in docs/experiments.md, "Baselines and data");
  - D loss: cross-entropy of D(x^, h) against m on the scored entries;
    G loss: -mean over scored entries of (1 - m) log D(x^, h) + alpha * mean((m * x - m * G)^2) / mean(m),
    alpha = 100: with the MNIST example's 10 the adversarial term wins within two epochs (docs/experiments.md);
  - one D step then one G step on the same batch; both nets are three fully connected layers with ReLU;
    Adam with TensorFlow's defaults (lr 1e-3), batch 128. For MNIST-size data (up to 1024 entries) the
    hidden widths are those of the authors' MNIST example, 2D-256-128-D (1568-256-128-784 on MNIST); for
    larger data, their gain.py's D-wide hidden layers (capped at `max_hidden`).
The released code min-max scales each column; our pixels are already in [0, 1], so it is skipped.
Images are flattened to C*H*W entries and the per-pixel mask is repeated over channels, so every
entry has its own mask value as GAIN's formulation expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError
from ..imputers import check_incomplete_batch, paste_observed
from ._common import check_matches, check_shape, config_from_options, observed_zero, rand


@dataclass
class GAINConfig:
    hint_rate: float = 0.9         # P(b = 1) for the Bernoulli hints ("released", "bernoulli-half")
    hint_form: str = "published"   # see hint_matrix; "published" is the GAIN paper's section 4
    alpha: float = 100.0           # weight of the reconstruction loss on observed entries (see above)
    noise_high: float = 0.01       # missing entries of the generator's input ~ U(0, noise_high)
    hidden: list[int] | int | None = None  # widths of the two hidden layers (an int: both); None: see above
    max_hidden: int = 4096         # cap on the D-wide layers, so that 64x64x3 (12288) fits in CPU memory
    adversarial: bool = True       # False drops the discriminator and trains G on the MSE term alone
    lr: float = 1e-3               # tf.train.AdamOptimizer's default, used by the released code
    beta1: float = 0.9
    beta2: float = 0.999
    batch_size: int = 128


HINT_FORMS = ("published", "released", "bernoulli-half")


def hint_vector(m: torch.Tensor, hint_rate: float, generator: torch.Generator | None = None,
                form: str = "published") -> tuple[torch.Tensor, torch.Tensor]:
    """GAIN's hint h and the entries b = 0 that it hides from the discriminator. m is (N, D) of 0/1.

    published (the GAIN paper, section 4): b is all ones but one entry k per example, k uniform; h = b * m
      + 0.5 * (1 - b). The discriminator is told every entry's mask but entry k's and is scored on entry k
      alone, and so is the generator's adversarial loss (L_D and L_G sum over {i : b_i = 0}).
    released (the authors' MNIST example): b ~ Bernoulli(hint_rate) per entry, h = m * b; every entry is
      scored. The discriminator cannot tell an unrevealed observed entry from a missing one.
    bernoulli-half: b ~ Bernoulli(hint_rate) per entry, h = b * m + 0.5 * (1 - b); every entry is scored.
    Returns (h, scored), scored a 0/1 float of m's shape.
    """
    if form not in HINT_FORMS:
        raise OptionError(f"hint form must be one of {', '.join(HINT_FORMS)}; got {form!r}")
    ones = torch.ones_like(m)
    if form == "published":
        k = (rand((m.shape[0], 1), generator, m) * m.shape[1]).long().clamp_max(m.shape[1] - 1)
        hidden = torch.zeros_like(m).scatter_(1, k, 1.0)
        return m * (1 - hidden) + 0.5 * hidden, hidden
    b = rand(tuple(m.shape), generator, m) < hint_rate
    other = 0.0 if form == "released" else 0.5
    return torch.where(b, m, torch.full((), other, dtype=m.dtype, device=m.device)), ones


def hint_matrix(m: torch.Tensor, hint_rate: float, generator: torch.Generator | None = None,
                form: str = "released") -> torch.Tensor:
    """The hint h alone (see hint_vector); "paper" is the older name of "bernoulli-half"."""
    return hint_vector(m, hint_rate, generator, "bernoulli-half" if form == "paper" else form)[0]


MNIST_EXAMPLE_HIDDEN = [256, 128]  # the authors' GAIN MNIST example: H_Dim1 = 256, H_Dim2 = 128


def hidden_widths(config: GAINConfig, dim: int) -> list[int]:
    """The two hidden widths of G and D for data of `dim` entries."""
    if config.hidden is None:
        return list(MNIST_EXAMPLE_HIDDEN) if dim <= 1024 else [min(dim, config.max_hidden)] * 2
    widths = [config.hidden] * 2 if isinstance(config.hidden, int) else list(config.hidden)
    if len(widths) != 2 or any(not isinstance(w, int) or w < 1 for w in widths):
        raise OptionError(f"hidden must be a positive width or two of them; got {config.hidden!r}")
    return widths


def _mlp(d_in: int, hidden: list[int], d_out: int) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(d_in, hidden[0]), nn.ReLU(), nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
                        nn.Linear(hidden[1], d_out))
    for layer in net:
        if isinstance(layer, nn.Linear):
            # The released code's "xavier_init" draws N(0, 1 / (fan_in / 2)), i.e. He-normal; biases zero.
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / layer.in_features))
            nn.init.zeros_(layer.bias)
    return net


class GAIN(nn.Module):
    """GAIN imputer for images of shape (C, H, W)."""

    name = "GAIN"

    def __init__(self, shape: tuple[int, int, int], config: GAINConfig | None = None):
        super().__init__()
        self.shape = check_shape(shape)
        self.config = config or GAINConfig()
        cfg = self.config
        if not 0.0 <= cfg.hint_rate <= 1.0:
            raise OptionError(f"hint_rate must be in [0, 1]; got {cfg.hint_rate}")
        if cfg.hint_form == "paper":  # the older name
            cfg.hint_form = "bernoulli-half"
        if cfg.hint_form not in HINT_FORMS:
            raise OptionError(f"hint_form must be one of {', '.join(HINT_FORMS)}; got {cfg.hint_form!r}")
        self.dim = self.shape[0] * self.shape[1] * self.shape[2]
        hidden = hidden_widths(cfg, self.dim)
        self.generator_net = _mlp(2 * self.dim, hidden, self.dim)       # input [x~, m]
        # Built even when adversarial=False so that checkpoints keep one layout; it is then never trained.
        self.discriminator_net = _mlp(2 * self.dim, hidden, self.dim)   # input [x^, h], output logits

    @classmethod
    def build(cls, shape: tuple[int, int, int], **options: Any) -> GAIN:
        return cls(shape, config_from_options(GAINConfig, options))


    def _flat(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x flattened with missing entries exactly 0, mask expanded over channels as 0/1 floats)."""
        x0, mb = observed_zero(x, m)
        return x0.reshape(x.shape[0], -1), mb.reshape(x.shape[0], -1).to(x.dtype)

    def _generate(self, xf: torch.Tensor, mf: torch.Tensor,
                  generator: torch.Generator | None) -> torch.Tensor:
        """G(x~, m) in [0, 1] for flattened x (missing = 0) and mask, with fresh U(0, noise_high) noise."""
        z = self.config.noise_high * rand(tuple(xf.shape), generator, xf)
        x_tilde = torch.where(mf.bool(), xf, z)
        return torch.sigmoid(self.generator_net(torch.cat([x_tilde, mf], dim=1)))

    def _discriminate(self, x_hat: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
        return self.discriminator_net(torch.cat([x_hat, hint], dim=1))

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        betas = (cfg.beta1, cfg.beta2)
        opts = {"generator": torch.optim.Adam(self.generator_net.parameters(), lr=cfg.lr, betas=betas)}
        if cfg.adversarial:
            opts["discriminator"] = torch.optim.Adam(self.discriminator_net.parameters(), lr=cfg.lr,
                                                     betas=betas)
        return opts

    def train_step(self, x: torch.Tensor, m: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   generator: torch.Generator) -> dict[str, float]:
        """One discriminator step then one generator step on the batch (as the released code)."""
        cfg = self.config
        xf, mf = self._flat(x, m)
        observed = mf.bool()
        # The same noise and hint serve both steps, as in the released code (one feed_dict per iteration).
        z = cfg.noise_high * rand(tuple(xf.shape), generator, xf)
        net_in = torch.cat([torch.where(observed, xf, z), mf], dim=1)
        logs: dict[str, torch.Tensor] = {}

        if cfg.adversarial:
            hint, scored = hint_vector(mf, cfg.hint_rate, generator, cfg.hint_form)
            n_scored = scored.sum().clamp_min(1.0)
            with torch.no_grad():
                g = torch.sigmoid(self.generator_net(net_in))
            d_logits = self._discriminate(torch.where(observed, xf, g), hint)
            bce = F.binary_cross_entropy_with_logits(d_logits, mf, reduction="none")
            d_loss = (bce * scored).sum() / n_scored
            opt_d = optimizers["discriminator"]
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            logs["d_loss"] = d_loss.detach()

        g = torch.sigmoid(self.generator_net(net_in))
        mse = ((mf * xf - mf * g) ** 2).mean() / mf.mean().clamp_min(1e-8)
        g_loss = cfg.alpha * mse
        if cfg.adversarial:
            self.discriminator_net.requires_grad_(False)  # G's step needs gradients through D, not for it
            try:
                d_logits = self._discriminate(torch.where(observed, xf, g), hint)
                # log D = logsigmoid(logit): the released code's log(D + 1e-8) without the epsilon.
                g_adv = -((1 - mf) * scored * F.logsigmoid(d_logits)).sum() / n_scored
            finally:
                self.discriminator_net.requires_grad_(True)
            g_loss = g_loss + g_adv
            logs["g_adv"] = g_adv.detach()
        opt_g = optimizers["generator"]
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        logs["mse"] = mse.detach()
        logs["g_loss"] = g_loss.detach()
        values = torch.stack(list(logs.values())).tolist()  # one device sync for all the numbers
        return dict(zip(logs, values, strict=True))

    @torch.no_grad()
    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(draws, N, C, H, W): G's output at missing entries, with fresh input noise for every draw."""
        check_incomplete_batch(x, m)
        check_matches(x, self.shape, self.name)
        param = next(self.parameters())
        xf, mf = self._flat(x.to(param.device, param.dtype), m.to(param.device, param.dtype))
        out = []
        for _ in range(draws):
            g = self._generate(xf, mf, generator).reshape(x.shape).to(x.device, x.dtype)
            out.append(paste_observed(x, m, g))
        return torch.stack(out)
