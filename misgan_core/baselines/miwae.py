"""MIWAE (Mattei and Frellsen, ICML 2019): a variational autoencoder fitted to the observed entries only, with an
importance-weighted bound; with `arch="conv"` its networks are P-VAE's (Li and Marlin, ICML 2020).

Model: z ~ N(0, I) of `latent` dimensions; the pixels are independent given z, each with the likelihood
`likelihood` whose parameters the decoder outputs. The encoder q(z | x_o) is a diagonal Gaussian computed from the
zero-filled image and its mask (both as inputs, so that an observed black pixel and a missing one differ;
MIWAE's own encoder sees the zero-filled data alone, P-VAE's the masked image alone).

Training maximises the MIWAE bound of each example, with K draws z_k ~ q(z | x_o):

    L_K(x_o) = E[ log (1/K) sum_k w_k ],    w_k = p(x_o | z_k) p(z_k) / q(z_k | x_o),

where p(x_o | z) multiplies the likelihood of the observed pixels only. L_K is a lower bound of log p(x_o) that
tightens as K grows; with K = 1 it is the ELBO.

Imputation is self-normalised importance sampling from the same weights with S = `impute_samples` proposals:
sampling importance resampling (SIR) draws z_k with probability w_k / sum w, and each draw fills the missing
pixels with the decoder's mean at z_k (the per-pixel noise of the likelihood would only add salt and pepper);
`conditional_mean` is the weighted mean sum_k w_k E[x_m | z_k] / sum w, the estimate of E[x_m | x_o].

Likelihood (`likelihood`): grey images have values anywhere in [0, 1] and many exact 0s and 1s (MNIST: most of
the background). The default, `clipped_gaussian`, is x = clip(y, 0, 1) with y ~ N(mu, sigma^2): point masses at
0 and 1 and a Gaussian density between, so an exact 0 is a probability (not an unbounded density) and the
decoder's mean can reach 0. `continuous_bernoulli` (Loaiza-Ganem and Cunningham, 2019) is the normalised density
proportional to lambda^x (1 - lambda)^(1 - x); its mean stays near 1/2 unless the logit is very large, so its
imputed backgrounds come out grey (docs/likelihood-methods.md). `bernoulli` is P-VAE's cross-entropy, which is no
density on [0, 1].

Networks, fc (MIWAE's shape, sized for images): encoder 2D -> h -> h -> 2 x latent and decoder latent -> h -> h
-> D, tanh hidden layers (MIWAE's activation), h = `hidden`. conv: P-VAE's MNIST encoder (three 5x5 stride-2
convolutions of 64, 128, 256 channels, then a two-layer head with LayerNorm) and decoder (a linear layer to
4x4x256, two 5x5 transposed convolutions, one 8x8 stride-2 transposed convolution to 28x28: the same layout
as Conv-MisGAN's generator, models.ConvGenerator28, which it reuses), for 28x28 images;
its encoder takes the mask as a second channel, and P-VAE's inverse autoregressive flow in the encoder is left
out (q is a diagonal Gaussian).
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
from ..models import ConvGenerator28
from ._common import check_matches, check_shape, config_from_options, rand, randn

ARCHS = ("fc", "conv")
LIKELIHOODS = ("clipped_gaussian", "continuous_bernoulli", "bernoulli")
LOG_2PI = math.log(2 * math.pi)


@dataclass
class MIWAEConfig:
    arch: str = "fc"              # fc: MIWAE's MLPs; conv: P-VAE's networks (28x28 images)
    latent: int = 32              # dimensions of z
    hidden: int = 256             # units of each hidden layer (fc)
    k: int = 20                   # importance samples per example in training (MIWAE's and not-MIWAE's 20)
    likelihood: str = "clipped_gaussian"   # or continuous_bernoulli, or bernoulli (P-VAE's cross-entropy)
    min_std: float = 0.02         # floor of the clipped Gaussian's sigma (pixel values are multiples of 1/255)
    lr: float = 1e-3              # Adam, as in both papers' code
    batch_size: int = 64
    impute_samples: int = 200     # S: SIR proposals per example when imputing
    impute_chunk: int = 256       # examples per pass when imputing, to bound memory (S x chunk decoder outputs)


# -- the continuous Bernoulli, in terms of its logit eta (lambda = sigmoid(eta)) ---------------------------------
# Its normaliser is C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda), which is eta / tanh(eta / 2); near
# eta = 0 the closed forms are 0/0, and their Taylor series take over.

_SMALL = 1e-3


def cb_log_normaliser(eta: torch.Tensor) -> torch.Tensor:
    """log C(sigmoid(eta)) = log(eta / tanh(eta / 2)), which is log 2 at eta = 0."""
    a = eta.abs()
    small = a < _SMALL
    safe = torch.where(small, torch.ones_like(a), a)
    exact = torch.log(safe) - torch.log(torch.tanh(safe / 2))
    return torch.where(small, math.log(2.0) + eta * eta / 12, exact)


def cb_log_prob(x: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """log ContinuousBernoulli(x; sigmoid(eta)) = x eta - softplus(eta) + log C."""
    return x * eta - F.softplus(eta) + cb_log_normaliser(eta)


def cb_mean(eta: torch.Tensor) -> torch.Tensor:
    """E[x] = 1/2 + 1 / (2 tanh(eta / 2)) - 1 / eta (1/2 + eta/12 near 0)."""
    small = eta.abs() < _SMALL
    safe = torch.where(small, torch.ones_like(eta), eta)
    exact = 0.5 + 0.5 / torch.tanh(safe / 2) - 1 / safe
    return torch.where(small, 0.5 + eta / 12, exact)


def cb_sample(eta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The inverse CDF at u ~ U(0, 1), differentiable in eta: log(1 - u + u e^eta) / eta, computed as a
    log-sum-exp. Written for eta <= 0 and mirrored (x -> 1 - x, eta -> -eta, u -> 1 - u) for eta > 0."""
    negative = eta <= 0
    s = -eta.abs()
    v = torch.where(negative, u, 1 - u).clamp(1e-6, 1 - 1e-6)
    small = s > -_SMALL
    safe = torch.where(small, -torch.ones_like(s), s)
    exact = torch.logaddexp(torch.log1p(-v), torch.log(v) + safe) / safe
    near = v + s * v * (1 - v) / 2
    y = torch.where(small, near, exact).clamp(0, 1)
    return torch.where(negative, y, 1 - y)


class ContinuousBernoulli:
    """Pixels ~ ContinuousBernoulli(sigmoid(eta)): one decoder output per pixel."""

    params = 1

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return cb_log_prob(x, out[:, :, 0])

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return cb_mean(out[:, :, 0])

    def draw(self, out: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return cb_sample(out[:, :, 0], u)


class Bernoulli:
    """P-VAE's cross-entropy, -BCE(sigmoid(eta), x): no density on [0, 1], so its draw is its mean."""

    params = 1

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        eta = out[:, :, 0]
        return -F.binary_cross_entropy_with_logits(eta, x.expand_as(eta), reduction="none")

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out[:, :, 0])

    def draw(self, out: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.mean(out)


class ClippedGaussian:
    """x = clip(y, 0, 1) with y ~ N(mu, sigma^2): point masses P(y <= 0) at 0 and P(y >= 1) at 1, the Gaussian
    density between. Two decoder outputs per pixel, mu and sigma = min_std + softplus(raw)."""

    params = 2

    def __init__(self, min_std: float):
        self.min_std = min_std

    def _mu_sigma(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return out[:, :, 0], self.min_std + F.softplus(out[:, :, 1])

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        mu, sigma = self._mu_sigma(out)
        z = (x - mu) / sigma
        inside = -0.5 * z * z - torch.log(sigma) - 0.5 * LOG_2PI
        at_zero = torch.special.log_ndtr(-mu / sigma)
        at_one = torch.special.log_ndtr((mu - 1) / sigma)
        return torch.where(x <= 0, at_zero, torch.where(x >= 1, at_one, inside))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """E[clip(y)] = mu (Phi(b) - Phi(a)) + sigma (phi(a) - phi(b)) + 1 - Phi(b), a = -mu/sigma, b = (1-mu)/sigma."""
        mu, sigma = self._mu_sigma(out)
        a, b = -mu / sigma, (1 - mu) / sigma
        pdf = lambda t: torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)  # noqa: E731
        cdf_a, cdf_b = torch.special.ndtr(a), torch.special.ndtr(b)
        return (mu * (cdf_b - cdf_a) + sigma * (pdf(a) - pdf(b)) + 1 - cdf_b).clamp(0, 1)

    def draw(self, out: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        mu, sigma = self._mu_sigma(out)
        return (mu + sigma * torch.special.ndtri(u.clamp(1e-6, 1 - 1e-6))).clamp(0, 1)


def likelihood(name: str, min_std: float) -> ContinuousBernoulli | Bernoulli | ClippedGaussian:
    """The pixel likelihood `name` (one of LIKELIHOODS)."""
    choices = {"clipped_gaussian": lambda: ClippedGaussian(min_std), "continuous_bernoulli": ContinuousBernoulli,
               "bernoulli": Bernoulli}
    if name not in choices:
        raise OptionError(f"likelihood must be one of {', '.join(choices)}; got {name!r}")
    return choices[name]()


# -- networks ---------------------------------------------------------------------------------------------------


class FCEncoder(nn.Module):
    def __init__(self, dim: int, hidden: int, latent: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 2 * latent))

    def forward(self, x0: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x0.flatten(1), m.expand_as(x0).flatten(1).to(x0.dtype)], dim=1))


class FCDecoder(nn.Module):
    def __init__(self, latent: int, hidden: int, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = shape
        self.net = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, math.prod(shape)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


class ConvEncoder(nn.Module):
    """P-VAE's MNIST encoder (without its flow), with the mask as a second input channel."""

    def __init__(self, channels: int, latent: int, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4 * width, 2 * latent), nn.LayerNorm(2 * latent), nn.LeakyReLU(0.2),
            nn.Linear(2 * latent, 2 * latent))

    def forward(self, x0: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x0, m.to(x0.dtype)], dim=1))


class MIWAE(nn.Module):
    """MIWAE over images of shape (C, H, W): `train_step`, `bound`, `impute` (SIR), `conditional_mean`, `sample`."""

    name = "MIWAE"
    config_class: type = MIWAEConfig

    def __init__(self, shape: tuple[int, int, int], config: MIWAEConfig | None = None):
        super().__init__()
        self.shape = check_shape(shape)
        self.config = config if config is not None else self.config_class()
        cfg = self.config
        if cfg.arch not in ARCHS:
            raise OptionError(f"arch must be one of {', '.join(ARCHS)}; got {cfg.arch!r}")
        self.likelihood = likelihood(cfg.likelihood, cfg.min_std)
        if not cfg.min_std > 0:
            raise OptionError(f"min_std must be positive; got {cfg.min_std}")
        for field in ("latent", "hidden", "k", "batch_size", "impute_samples", "impute_chunk"):
            if int(getattr(cfg, field)) < 1:
                raise OptionError(f"{field} must be at least 1; got {getattr(cfg, field)}")
        if not cfg.lr > 0:
            raise OptionError(f"lr must be positive; got {cfg.lr}")
        c, h, w = self.shape
        if cfg.arch == "conv":
            if (h, w) != (28, 28):
                raise OptionError(f"arch conv is P-VAE's network for 28x28 images; these are {h}x{w} (use arch fc)")
            self.encoder: nn.Module = ConvEncoder(c, cfg.latent)
            self.decoder: nn.Module = ConvGenerator28(c * self.likelihood.params, nn.Identity(), latent=cfg.latent)
        else:
            self.encoder = FCEncoder(c * h * w, cfg.hidden, cfg.latent)
            self.decoder = FCDecoder(cfg.latent, cfg.hidden, (c * self.likelihood.params, h, w))

    @classmethod
    def build(cls, shape: tuple[int, int, int], **options: Any) -> MIWAE:
        return cls(shape, config_from_options(cls.config_class, options))

    # -- the model ------------------------------------------------------------------------------------------

    def _posterior(self, x0: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z | x_o), each (N, latent)."""
        mu, raw = self.encoder(x0, m).chunk(2, dim=1)
        return mu, F.softplus(raw) + 1e-4

    def _draw_pixels(self, out: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Pixels drawn from p(x | z), differentiable in the decoder's outputs (reparameterised)."""
        return self.likelihood.draw(out, rand(tuple(out[:, :, 0].shape), generator, out))

    def _extra_log_weight(self, x0: torch.Tensor, m: torch.Tensor, out: torch.Tensor,
                          generator: torch.Generator | None) -> torch.Tensor | None:
        """A further log-factor of each weight, (K, N) (not-MIWAE's log p(m | x)); None for MIWAE."""
        return None

    def log_weights(self, x: torch.Tensor, m: torch.Tensor, k: int, generator: torch.Generator | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log w of shape (K, N), decoder outputs of shape (K, N, P, C, H, W)) for K draws z_k ~ q(z | x_o), P
        the likelihood's parameters per pixel."""
        mb = m.bool().expand_as(x)
        x0 = torch.where(mb, x, torch.zeros((), dtype=x.dtype, device=x.device))
        mu, std = self._posterior(x0, m)
        eps = randn((k, *mu.shape), generator, mu)
        z = mu + std * eps                                                        # (K, N, latent)
        log_q = (-0.5 * eps * eps - torch.log(std) - 0.5 * LOG_2PI).sum(-1)
        log_prior = (-0.5 * z * z - 0.5 * LOG_2PI).sum(-1)
        out = self.decoder(z.reshape(-1, z.shape[-1])).view(k, x.shape[0], self.likelihood.params, *x.shape[1:])
        pixel = self.likelihood.log_prob(x0, out)
        log_px = torch.where(mb, pixel, torch.zeros((), dtype=pixel.dtype, device=pixel.device)).flatten(2).sum(-1)
        log_w = log_px + log_prior - log_q
        extra = self._extra_log_weight(x0, m, out, generator)
        if extra is not None:
            log_w = log_w + extra
        return log_w, out

    def bound(self, x: torch.Tensor, m: torch.Tensor, k: int | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """The importance-weighted bound of each example, (N,), in nats: log (1/K) sum_k w_k."""
        k = int(k or self.config.k)
        log_w, _ = self.log_weights(x, m, k, generator)
        return torch.logsumexp(log_w, dim=0) - math.log(k)

    # -- training -------------------------------------------------------------------------------------------

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=self.config.lr)}

    def train_step(self, x: torch.Tensor, m: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   generator: torch.Generator) -> dict[str, float]:
        """One Adam step up the batch's mean bound; reports the bound and the bound per observed entry."""
        bound = self.bound(x, m, generator=generator).mean()
        opt = optimizers["model"]
        opt.zero_grad(set_to_none=True)
        (-bound).backward()
        opt.step()
        observed = m.expand_as(x).sum() / x.shape[0]
        values = torch.stack([bound.detach(), bound.detach() / observed.clamp_min(1)]).tolist()
        return {"bound": values[0], "bound_per_entry": values[1], **self.mechanism()}

    def mechanism(self) -> dict[str, float]:
        """The learnt missingness mechanism's summary (not-MIWAE); MIWAE models none."""
        return {}

    # -- imputing and sampling ------------------------------------------------------------------------------

    def _weighted_proposals(self, x: torch.Tensor, m: torch.Tensor, generator: torch.Generator | None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised log weights (S, N), decoder means (S, N, C, H, W)) for S = impute_samples proposals."""
        log_w, out = self.log_weights(x, m, self.config.impute_samples, generator)
        return torch.log_softmax(log_w, dim=0), self.likelihood.mean(out)

    def _chunks(self, x: torch.Tensor, m: torch.Tensor):
        dev = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        for start in range(0, x.shape[0], self.config.impute_chunk):
            xc, mc = x[start:start + self.config.impute_chunk], m[start:start + self.config.impute_chunk]
            yield xc, mc, xc.to(dev, dtype), mc.to(dev)

    @torch.no_grad()
    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(draws, N, C, H, W): draws by sampling importance resampling, observed entries kept exactly."""
        check_incomplete_batch(x, m)
        check_matches(x, self.shape, self.name)
        out = []
        for xc, mc, xd, md in self._chunks(x, m):
            log_w, means = self._weighted_proposals(xd, md, generator)
            # Gumbel-max: one categorical draw per (draw, example) from the weights, on the generator's stream.
            gumbel = -torch.log(-torch.log(rand((draws, *log_w.shape), generator, log_w).clamp_min(1e-20)))
            pick = (log_w.unsqueeze(0) + gumbel).argmax(dim=1)                    # (draws, N)
            filled = means[pick, torch.arange(xd.shape[0], device=xd.device)]       # (draws, N, C, H, W)
            out.append(paste_observed(xc, mc, filled.to(x.device, x.dtype)))
        return torch.cat(out, dim=1)

    @torch.no_grad()
    def conditional_mean(self, x: torch.Tensor, m: torch.Tensor,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, C, H, W): the self-normalised estimate of E[x_m | x_o], observed entries kept exactly."""
        check_incomplete_batch(x, m)
        check_matches(x, self.shape, self.name)
        out = []
        for xc, mc, xd, md in self._chunks(x, m):
            log_w, means = self._weighted_proposals(xd, md, generator)
            weights = log_w.exp().view(*log_w.shape, 1, 1, 1)
            out.append(paste_observed(xc, mc, (weights * means).sum(0).to(x.device, x.dtype)))
        return torch.cat(out)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the model: the decoder's mean at z ~ N(0, I)."""
        like = next(self.parameters())
        z = randn((n, self.config.latent), generator, like)
        out = self.decoder(z).view(1, n, self.likelihood.params, *self.shape)
        return self.likelihood.mean(out)[0].clamp(0, 1)
