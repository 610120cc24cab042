"""Generative convolutional arithmetic circuit (ConvAC; Sharir et al. 2016, "Tractable generative
convolutional arithmetic circuits"), the tractable mixture model MisGAN's paper compares against.

Structure (all in log space):
  leaves    for every 2x2 patch (stride 2, all channels) and each of M diagonal Gaussians d:
            log p(patch | d); a missing entry contributes 0, which is exact marginalisation.
  sum       a 1x1 convolution whose weights are non-negative and sum to one over the input channels
            (softmax of free logits), evaluated with a log-sum-exp.
  product   2x2 pooling that adds log-values over disjoint windows (children have disjoint scopes).
Sum and product layers alternate down to one location, and a last sum layer with one output gives
log p(x). Because every sum node is normalised and every product joins disjoint scopes, log p(x) is a
normalised density, and log p(x_obs) is the exact marginal of the observed pixels. Images are padded
to a power-of-two side (28 -> 32) and the padding is treated as missing.

Sampling is ancestral: from the root down, each sum node picks one child (with probability equal to its
weight, or for imputation weight x the child's likelihood of the evidence, which is the exact
posterior), product nodes pass the choice to all their children, and each leaf location ends with one
Gaussian from which the missing pixels are drawn.
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
from ._common import check_matches, check_shape, config_from_options, observed_zero, rand, randn

LOG_2PI = math.log(2 * math.pi)


@dataclass
class ConvACConfig:
    components: int = 32          # M Gaussians per patch (shared by all locations, like a conv filter bank)
    channels: int = 32            # outputs of each inner sum layer
    shared_weights: bool = False  # True: one 1x1 conv per layer; False: weights per location (locally
                                  # connected), so the mixture can depend on where in the image it is
    min_std: float = 0.03         # floor on leaf standard deviations: MNIST has many exact 0s, and an
                                  # unbounded Gaussian would collapse onto them with infinite likelihood
    init_std: float = 0.2
    # The paper trains with Adam lr 1e-4 for 1000 epochs (~40k steps). On CPU budgets of a few thousand
    # steps 1e-4 barely moves the model, and 1e-2 learns fastest (bench/baselines_convac_lr.py; figures in
    # docs/experiments.md, "Baselines and data"). Pass lr=1e-4 for the reference.
    lr: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    batch_size: int = 128
    clamp_samples: bool = True    # clip drawn pixels to [0, 1], the range every image in the engine has
    impute_chunk: int = 1024      # examples per upward pass when imputing, to bound memory


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class ConvAC(nn.Module):
    """Generative ConvAC over images of shape (C, H, W)."""

    name = "ConvAC"

    def __init__(self, shape: tuple[int, int, int], config: ConvACConfig | None = None):
        super().__init__()
        self.shape = check_shape(shape)
        self.config = config or ConvACConfig()
        cfg = self.config
        if cfg.components < 1 or cfg.channels < 1:
            raise OptionError("components and channels must be positive")
        if cfg.min_std <= 0 or cfg.init_std <= cfg.min_std:
            raise OptionError("need 0 < min_std < init_std")
        c, h, w = self.shape
        side = 2
        while side < max(h, w):
            side *= 2
        self.side = side                        # padded image side, a power of two >= 2
        self.pad_top = (side - h) // 2          # centre the image in the padding
        self.pad_left = (side - w) // 2
        self.grid = side // 2                   # leaf locations per side
        self.levels = int(round(math.log2(self.grid)))  # product-pooling steps down to one location
        self.patch_dim = c * 4
        m_comp = cfg.components

        self.leaf_mean = nn.Parameter(torch.rand(m_comp, self.patch_dim))
        self.leaf_std_raw = nn.Parameter(torch.full((m_comp, self.patch_dim),
                                                    _inverse_softplus(cfg.init_std - cfg.min_std)))
        # Sum layer l acts on a (grid / 2**l)-sided map; the last one (after the last pooling) has one output.
        self.sum_logits = nn.ParameterList()
        for level in range(self.levels + 1):
            k_in = m_comp if level == 0 else cfg.channels
            k_out = 1 if level == self.levels else cfg.channels
            size = self.grid >> level
            shape_l = (k_out, k_in) if cfg.shared_weights else (size, size, k_out, k_in)
            # Random logits break the symmetry between a layer's channels, which otherwise get equal
            # gradients forever.
            self.sum_logits.append(nn.Parameter(0.5 * torch.randn(shape_l)))
        # Leaf means start at data patches on the first training step (see _init_leaves).
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @classmethod
    def build(cls, shape: tuple[int, int, int], **options: Any) -> ConvAC:
        return cls(shape, config_from_options(ConvACConfig, options))


    # -- parameters in their constrained form ---------------------------------------------------

    def leaf_std(self) -> torch.Tensor:
        return self.config.min_std + F.softplus(self.leaf_std_raw)

    def sum_log_weights(self, level: int) -> torch.Tensor:
        """Log mixing weights of sum layer `level`; exp() sums to one over the last (input) axis."""
        return torch.log_softmax(self.sum_logits[level], dim=-1)

    # -- layout: images <-> padded images <-> patches ------------------------------------------

    def _pad(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded (x with missing set to 0, boolean mask over channels); padding is missing."""
        x0, mb = observed_zero(x, m)
        c, h, w = self.shape
        pads = (self.pad_left, self.side - w - self.pad_left, self.pad_top, self.side - h - self.pad_top)
        return F.pad(x0, pads), F.pad(mb, pads, value=False)

    def _to_patches(self, t: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) -> (N, g, g, C*4), one row per 2x2 patch, entries ordered (channel, dy, dx)."""
        n, c, g = t.shape[0], t.shape[1], self.grid
        return t.reshape(n, c, g, 2, g, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, g, g, c * 4)

    def _from_patches(self, p: torch.Tensor) -> torch.Tensor:
        """Inverse of _to_patches, then crop the padding away: (N, g, g, C*4) -> (N, C, H, W)."""
        n, g = p.shape[0], self.grid
        c, h, w = self.shape
        img = p.reshape(n, g, g, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, c, self.side, self.side)
        return img[:, :, self.pad_top:self.pad_top + h, self.pad_left:self.pad_left + w]

    # -- upward pass ----------------------------------------------------------------------------

    def _leaf_log_prob(self, xp: torch.Tensor, mp: torch.Tensor) -> torch.Tensor:
        """(N, M, g, g): log density of each patch's observed entries under each leaf Gaussian."""
        xq = self._to_patches(xp)                 # (N, g, g, D), zero where missing
        mq = self._to_patches(mp).to(xq.dtype)     # (N, g, g, D)
        mean, std = self.leaf_mean, self.leaf_std()
        inv_var = std.pow(-2)
        # sum_e m_e [(x_e - mu_e)^2 / s_e^2 + log s_e^2 + log 2pi], expanded so that it is three matmuls
        # over D rather than an (N, g, g, M, D) tensor (which is 200 MB for a 64x64 RGB batch).
        quad = (xq * xq) @ inv_var.T - 2 * xq @ (mean * inv_var).T
        const = mq @ (mean * mean * inv_var + 2 * torch.log(std) + LOG_2PI).T
        return (-0.5 * (quad + const)).permute(0, 3, 1, 2)

    def _sum_layer(self, level: int, v: torch.Tensor) -> torch.Tensor:
        """log sum_k w[o, k] exp(v[k]) at every location, stable: shift by the max over k."""
        weights = torch.softmax(self.sum_logits[level], dim=-1)
        shift = v.amax(dim=1, keepdim=True).detach()  # the shift cancels exactly, so no gradient needed
        e = torch.exp(v - shift)
        if self.config.shared_weights:
            s = torch.einsum("nkhw,ok->nohw", e, weights)
        else:
            s = torch.einsum("nkhw,hwok->nohw", e, weights)
        return torch.log(s.clamp_min(torch.finfo(s.dtype).tiny)) + shift

    @staticmethod
    def _product_pool(v: torch.Tensor) -> torch.Tensor:
        n, k, h, w = v.shape
        return v.reshape(n, k, h // 2, 2, w // 2, 2).sum(dim=(3, 5))

    def _upward(self, xp: torch.Tensor, mp: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """log p(x_obs) (N,) and the input of every sum layer (for the top-down pass)."""
        v = self._leaf_log_prob(xp, mp)
        inputs = []
        for level in range(self.levels + 1):
            inputs.append(v)
            v = self._sum_layer(level, v)
            if level < self.levels:
                v = self._product_pool(v)
        return v.reshape(-1), inputs

    def log_prob(self, x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x_obs) per example, (N,): exact marginal likelihood of the observed pixels (m = 1).

        With m None every pixel is observed. Missing entries of x are never read.
        """
        if m is None:
            m = torch.ones((x.shape[0], 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        check_incomplete_batch(x, m)
        check_matches(x, self.shape, self.name)
        param = self.leaf_mean
        return self._upward(*self._pad(x.to(param.device, param.dtype), m.to(param.device)))[0]

    # -- top-down pass --------------------------------------------------------------------------

    def _gumbel_argmax(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One categorical draw per row of the last axis, P(k) = softmax(logits)_k."""
        u = rand(tuple(logits.shape), generator, logits).clamp_min(torch.finfo(logits.dtype).tiny)
        return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)

    def _choose_leaves(self, n: int, inputs: list[torch.Tensor] | None, generator: torch.Generator | None,
                       like: torch.Tensor) -> torch.Tensor:
        """(N, g, g) index of the leaf Gaussian chosen at every location.

        With `inputs` (the sum layers' inputs from an upward pass on the evidence) a child k of a sum
        node with chosen output o is taken with probability w[o, k] p(evidence | k) / p(evidence | o):
        the exact posterior. Without, with probability w[o, k]: a draw from the prior.
        """
        chosen = torch.zeros((n, 1, 1), dtype=torch.long, device=like.device)  # the root's one output
        for level in range(self.levels, -1, -1):
            logw = self.sum_log_weights(level).to(like.dtype)
            size = self.grid >> level
            if self.config.shared_weights:
                lw = logw[chosen]                                   # (N, s, s, K)
            else:
                rows = torch.arange(size, device=like.device).view(1, size, 1)
                cols = torch.arange(size, device=like.device).view(1, 1, size)
                lw = logw[rows, cols, chosen]                       # (N, s, s, K)
            if inputs is not None:
                lw = lw + inputs[level].permute(0, 2, 3, 1)
            chosen = self._gumbel_argmax(lw, generator)
            if level > 0:  # a product node hands its choice to all four children
                chosen = chosen.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
        return chosen

    def _draw_leaves(self, comp: torch.Tensor, generator: torch.Generator | None,
                     like: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) pixels drawn from the chosen Gaussian of every patch (padding cropped)."""
        mean = self.leaf_mean.to(like.dtype)[comp]           # (N, g, g, D)
        std = self.leaf_std().to(like.dtype)[comp]
        values = mean + std * randn(tuple(mean.shape), generator, like)
        img = self._from_patches(values)
        if self.config.clamp_samples:
            img = img.clamp(0.0, 1.0)
        return img

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n unconditional samples (n, C, H, W)."""
        like = self.leaf_mean
        comp = self._choose_leaves(n, None, generator, like)
        return self._draw_leaves(comp, generator, like)

    @torch.no_grad()
    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(draws, N, C, H, W): exact conditional samples of the missing pixels, observed ones kept."""
        check_incomplete_batch(x, m)
        check_matches(x, self.shape, self.name)
        dev = self.leaf_mean.device
        out = []
        for start in range(0, x.shape[0], self.config.impute_chunk):
            xc = x[start:start + self.config.impute_chunk]
            mc = m[start:start + self.config.impute_chunk]
            xd, md = xc.to(dev, self.leaf_mean.dtype), mc.to(dev)
            _, inputs = self._upward(*self._pad(xd, md))
            chunk = []
            for _ in range(draws):
                comp = self._choose_leaves(xd.shape[0], inputs, generator, xd)
                filled = self._draw_leaves(comp, generator, xd).to(x.device, x.dtype)
                chunk.append(paste_observed(xc, mc, filled))
            out.append(torch.stack(chunk))
        return torch.cat(out, dim=1)

    # -- training -------------------------------------------------------------------------------

    @torch.no_grad()
    def _init_leaves(self, x: torch.Tensor, m: torch.Tensor, generator: torch.Generator) -> None:
        """Start the leaf means at observed patches of the first batch (fully observed ones if any),
        with a little noise so that repeats differ; far better than uniform noise for sparse images."""
        xp, mp = self._pad(x, m)
        xq = self._to_patches(xp).reshape(-1, self.patch_dim)
        mq = self._to_patches(mp).reshape(-1, self.patch_dim)
        full = mq.all(dim=1)
        pool = xq[full] if bool(full.any()) else torch.where(mq, xq, torch.full_like(xq, 0.5))
        pick = torch.randint(0, pool.shape[0], (self.config.components,), generator=generator,
                             device=generator.device).to(pool.device)
        noise = randn(tuple(self.leaf_mean.shape), generator, xq)
        self.leaf_mean.copy_(pool[pick] + 0.02 * noise)
        self.initialized.fill_(True)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {"model": torch.optim.Adam(self.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))}

    def train_step(self, x: torch.Tensor, m: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   generator: torch.Generator) -> dict[str, float]:
        """One Adam step on the negative log-likelihood of the batch's observed pixels."""
        if not bool(self.initialized):
            self._init_leaves(x, m, generator)
        xp, mp = self._pad(x, m)
        log_p, _ = self._upward(xp, mp)
        nll = -log_p.mean()
        opt = optimizers["model"]
        opt.zero_grad(set_to_none=True)
        nll.backward()
        opt.step()
        observed = mp.sum() / x.shape[0]  # observed entries per example, to report nats per entry
        values = torch.stack([nll.detach(), nll.detach() / observed.clamp_min(1)]).tolist()
        return {"nll": values[0], "nll_per_entry": values[1]}
