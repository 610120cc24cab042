"""Mask models: how Gm draws masks, and what each way asks of the critics and the losses.

The paper (section 2) factorises p(x, m) = p(x) p(m): missingness completely at random (MCAR). Gm(eps) draws
masks on its own, Dx judges f_tau(x, m) (eq. 3) and Dm judges masks (eq. 4-5), and
  min_Gx max_Dx L_x + L_m,   min_Gm max_Dm L_m + alpha * L_x                                    (eq. 6, 7)
That is `IndependentMaskModel`, the paper's.

Missingness that depends on the data (MNAR) draws the mask given the complete image, m ~ Gm(eps, x) with
x = Gx(z), so masks and values are no longer independent and the data critic judges them jointly, as the pair
g(x, m) = (x * m, m) in two channels:
  L_x(Dx, Gx, Gm) = E_(x,m)~p_data [Dx(g(x, m))] - E_z,eps [Dx(g(Gx(z), Gm(eps, Gx(z))))]     (cf. eq. 4)
  L_m(Dm, Gm)     = E_m~p_data [Dm(m)] - E_z,eps [Dm(Gm(eps, Gx(z)))]                          (cf. eq. 5)
  min_Gx max_Dx L_x + L_m;   min_Gm max_Dm L_m + alpha * L_x                                    (cf. eq. 6, 7)
L_x and L_m reach Gx through the pixels and through the masks they cause: the law of the masks
p(m) = E_x[p(m | x)] is Gx's to match as much as Gm's. Matching the law of g(x, m) matches the observed-data law
p(x_obs, m), which is all the data show; whether that fixes p(x) is the identifiability question, which the
self-masking model's restrictions answer (`SelfMaskingNet`). The measurements behind each rule below are in
docs/missing-not-at-random.md.

A mask model owns: its network, how it draws (`draw`), its default lambda and alpha, what the data critic sees
(`data_critic_input`), and the draws the generators' losses use (`generator_draws`). The training step asks it
and never branches on which one it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from torch.func import functional_call

from .data import as_float_images
from .models import LATENT, TemperatureSigmoid

# The lambda at which the self-masking model's mask critic judges draws of its own (the paper's Gm value).
MASK_CRITIC_TEMPERATURE = 0.66
# The lambda the self-masking model's data-critic draws fall to where its learnt slope is 0 (MCAR).
TEMPERATURE_FLOOR = 0.25


class Noise(Protocol):
    """The training noise: latent codes and uniforms, drawn for this process's rows (fast.RankNoise)."""

    def z(self, n: int) -> torch.Tensor: ...

    def uniform(self, n: int, *shape: int) -> torch.Tensor: ...


class SeededNoise:
    """Noise for sampling: drawn on the CPU from `generator` (so samples do not depend on the device), then moved."""

    def __init__(self, generator: torch.Generator, device: torch.device, latent: int):
        self.generator, self.device, self.latent = generator, device, latent

    def z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent, generator=self.generator).to(self.device)

    def uniform(self, n: int, *shape: int) -> torch.Tensor:
        return torch.rand(n, *shape, generator=self.generator).to(self.device)


def f_tau(x: torch.Tensor, m: torch.Tensor, tau: float = 0.0) -> torch.Tensor:
    """The masking operator of eq. 3: x where observed, tau where missing."""
    if tau == 0.0:
        return x * m
    return x * m + tau * (1 - m)


def with_mask_channel(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x with the mask m appended as one more channel (the critics that judge (image, mask) pairs)."""
    return torch.cat([x, m.to(x.dtype).expand(len(x), 1, *x.shape[2:])], 1)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward, gradient times `scale` backward: routes Gm's alpha share of L_x (eq. 7) through the
    same backward pass that gives Gx all of it (eq. 6)."""
    return _ScaleGrad.apply(x, scale)


def logistic_noise(u: torch.Tensor) -> torch.Tensor:
    """Logistic(0, 1) noise from uniform u: log u - log(1 - u), clamped away from 0 and 1."""
    u = u.clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


# ---------------------------------------------------------------------------------------------
# The mask models


class MaskModel:
    """One way of drawing masks. Subclasses set `name`, `temperature` (the default lambda of Gm's relaxed
    masks), `alpha` (the default weight of L_x in Gm's objective, eq. 7) and `sees_image`."""

    name: ClassVar[str]
    temperature: ClassVar[float]
    alpha: ClassVar[float]
    sees_image: ClassVar[bool]
    # What the data critic adds to the image's channels: 0 for f_tau(x, m), 1 for the pair (x * m, m).
    data_critic_extra_channels: ClassVar[int]

    def __init__(self, net: nn.Module, mask_critic_output: nn.Module | None = None):
        self.net = net
        self.mask_critic_output = mask_critic_output

    @classmethod
    def build(cls, generator: Callable[[tuple[int, int, int], nn.Module], nn.Module], shape: tuple[int, int, int],
              output: TemperatureSigmoid, latent: int, data: tuple[torch.Tensor, torch.Tensor] | None,
              mask_critic: bool) -> MaskModel:
        """The model with a new network for images of `shape`; `generator(out_shape, output)` makes the
        architecture's generator, `data` (x, m) is the incomplete training data (None when a run is loaded)."""
        raise NotImplementedError

    def draw(self, x: torch.Tensor, noise: Noise, net: nn.Module | None = None,
             for_mask_critic: bool = False) -> torch.Tensor:
        """Masks for the complete images x (only their number matters to the independent model). `net`: the
        network to draw with (default `self.net`; its weight average samples)."""
        raise NotImplementedError

    def data_critic_input(self, x: torch.Tensor, m: torch.Tensor, tau: float) -> torch.Tensor:
        """What Dx judges of (x, m)."""
        raise NotImplementedError

    def generator_draws(self, x: torch.Tensor, noise: Noise, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The masks the generators' step shows Dx and Dm, (m_x, m_m), wired so that one backward pass of
        L_x + L_m gives Gm alpha * dL_x + dL_m (eq. 7) and Gx dL_x, plus dL_m where the masks depend on Gx."""
        raise NotImplementedError

    def mechanism(self) -> dict[str, float]:
        """What the model has learnt that the training log shows (nothing for a network of weights)."""
        return {}


class IndependentMaskModel(MaskModel):
    """The paper's Gm(eps) = sigma_lambda(G(eps)) (section 2, appendix D), independent of the image (MCAR)."""

    name, temperature, alpha, sees_image, data_critic_extra_channels = "independent", 0.66, 0.2, False, 0

    @classmethod
    def build(cls, generator, shape, output, latent, data, mask_critic) -> MaskModel:
        return cls(generator((1, *shape[1:]), output))

    def draw(self, x, noise, net=None, for_mask_critic=False) -> torch.Tensor:
        return (net or self.net)(noise.z(len(x)))

    def data_critic_input(self, x, m, tau) -> torch.Tensor:
        return f_tau(x, m, tau)

    def generator_draws(self, x, noise, alpha) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.draw(x, noise)
        return scale_grad(m, alpha), m  # L_x reaches Gm scaled by alpha; L_m in full; neither reaches Gx


class _ImageConditionedMaskModel(MaskModel):
    """Shared by the mask models that see the image: the pair critic, and alpha applied to Gm's parameters."""

    sees_image, data_critic_extra_channels = True, 1
    alpha = 1.0  # Gm's mechanism is learnt from L_x (docs/missing-not-at-random.md)

    def data_critic_input(self, x, m, tau) -> torch.Tensor:
        # tau stays 0 with the mask as a channel: Dx's first layer weighs the mask on its own.
        return with_mask_channel(f_tau(x, m, tau), m)

    def generator_draws(self, x, noise, alpha) -> tuple[torch.Tensor, torch.Tensor]:
        # Gm's parameters carry alpha into L_x's draw; the masks' path to Gx is not scaled (L_x in full for Gx).
        scaled = {k: scale_grad(p, alpha) for k, p in self.net.named_parameters()}
        m_x = self.draw(x, noise, net=_Bound(self.net, scaled))
        return m_x, self.draw(x, noise, for_mask_critic=True)


class _Bound(nn.Module):
    """`net` called with other parameter tensors (torch.func.functional_call), for generator_draws."""

    def __init__(self, net: nn.Module, params: dict[str, torch.Tensor]):
        super().__init__()
        self._call = lambda *args: functional_call(net, params, args)
        self.inner = net

    def forward(self, *args: Any) -> torch.Tensor:
        return self._call(*args)


class SelfMaskingMaskModel(_ImageConditionedMaskModel):
    """Each pixel observed with probability sigmoid(a * x_d + b) (`SelfMaskingNet`). Three rules of its own,
    each tied to the learnt dependence g = min(1, (a / 2)^2), so that where the data show dependence (|a| >= 2
    from the start) they change nothing (docs/missing-not-at-random.md):
    - lambda 3 for the draws Dx judges, falling to TEMPERATURE_FLOOR as g goes to 0: at the paper's 0.66 a
      draw's slope in x vanishes at bright missing strokes, which then stay dim; at 80% MCAR and lambda 3
      nearly every entry of a draw is soft while the data's masks are binary;
    - Dm judges draws of their own at MASK_CRITIC_TEMPERATURE: soft masks judged against binary ones bias
      the learnt mechanism;
    - Dx's mask channel weighed by g: with masks independent of the images (a = 0) the pair tells Dx nothing
      that x * m does not, and Dm judges m on its own (eq. 5)."""

    name, temperature = "self-masking", 3.0

    @classmethod
    def build(cls, generator, shape, output, latent, data, mask_critic) -> MaskModel:
        slope = offset = 0.0
        if data is not None:
            slope = initial_self_masking_slope(*data)
            offset = initial_self_masking_offset(data[1], slope)
        net = SelfMaskingNet((1, *shape[1:]), output, slope, min(TEMPERATURE_FLOOR, output.temperature), offset)
        own = mask_critic and MASK_CRITIC_TEMPERATURE != output.temperature
        return cls(net, TemperatureSigmoid(MASK_CRITIC_TEMPERATURE, output.kind) if own else None)

    def draw(self, x, noise, net=None, for_mask_critic=False) -> torch.Tensor:
        u = noise.uniform(len(x), 1, *x.shape[2:])
        return (net or self.net)(x, u, self.mask_critic_output if for_mask_critic else None)

    def data_critic_input(self, x, m, tau) -> torch.Tensor:
        return with_mask_channel(f_tau(x, m, tau), m * self.net.dependence())

    def mechanism(self) -> dict[str, float]:
        return self.net.mechanism()


class ConditionalMaskModel(_ImageConditionedMaskModel):
    """Gm(eps, x): a network of the noise and the whole complete image (MAR or general MNAR)."""

    name, temperature = "conditional", 0.66

    @classmethod
    def build(cls, generator, shape, output, latent, data, mask_critic) -> MaskModel:
        return cls(ConditionalMaskNet(shape, (1, *shape[1:]), output, latent))

    def draw(self, x, noise, net=None, for_mask_critic=False) -> torch.Tensor:
        return (net or self.net)(noise.z(len(x)), x)


MASK_MODELS: dict[str, type[MaskModel]] = {
    m.name: m for m in (IndependentMaskModel, SelfMaskingMaskModel, ConditionalMaskModel)}


# ---------------------------------------------------------------------------------------------
# Their networks


class SelfMaskingNet(nn.Module):
    """Each pixel observed with probability sigmoid(a * x_d + b): a learned slope a and offset b shared by all
    pixels, so a pixel's missingness depends on its own value only (self-masking MNAR), in the same logistic
    family as the `self-masking` process (masks.SelfMasking). A draw is a relaxed Bernoulli (binary concrete:
    the output activation of logit + logistic noise, Maddison et al. 2017), so gradients reach a, b and the
    pixel values; it exceeds 1/2 with probability sigmoid(a x_d + b) at any temperature.

    The parameters are stored at 1/SCALE of their value, so that Adam's steps of about lr move them at a useful
    pace. The offset is shared (one per pixel lets Gm explain missingness by position alone). The slope starts
    from the sign the data suggest (`initial_self_masking_slope`): at 0, Gx and the slope deadlock.

    Identifiable where a fully parametric mechanism like this one meets dependence between pixels: each other
    pixel is a "shadow variable" for x_d (Miao and Tchetgen Tchetgen 2016, Biometrika 103(2)); one variable
    with an unrestricted self-masking mechanism is not (Mohan and Pearl 2021, JASA 116(534)). The Theory page
    shows both on a two-pixel case.
    """

    SCALE = 50.0
    STEEP_SLOPE = 2.0  # |a| (logit per unit of intensity) from which the data critic's draws are at full lambda

    def __init__(self, mask_shape: tuple[int, int, int], output: TemperatureSigmoid, initial_slope: float = 0.0,
                 temperature_floor: float | None = None, initial_offset: float = 0.0):
        super().__init__()
        self.mask_shape = tuple(mask_shape)
        self.slope = nn.Parameter(torch.full((), initial_slope / self.SCALE))
        self.offset = nn.Parameter(torch.full((), initial_offset / self.SCALE))
        self.output = output
        self.temperature_floor = temperature_floor

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # A per-pixel offset (the first version) loads into the same Parameter object, so an optimizer built
        # before the load (MisGAN.load resumes that way) updates the loaded one.
        saved = state_dict.get(prefix + "offset")
        if saved is not None and saved.shape != self.offset.shape:
            self.offset.data = torch.zeros(saved.shape, dtype=self.offset.dtype, device=self.offset.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def observed_logit(self, x: torch.Tensor) -> torch.Tensor:
        # RGB: one mask per pixel, from its mean intensity.
        return self.SCALE * (self.slope * x.mean(1, keepdim=True) + self.offset)

    def dependence(self) -> float:
        """g = min(1, (a / STEEP_SLOPE)^2): 0 where the learnt masks do not depend on the values, 1 where the
        mechanism is steep."""
        a = self.SCALE * float(self.slope.detach())
        return min(1.0, (a / self.STEEP_SLOPE) ** 2)

    def data_critic_temperature(self) -> float:
        """floor + (lambda - floor) * g: the output's lambda where the mechanism is steep, the floor at a = 0."""
        top = float(self.output.temperature)
        floor = self.temperature_floor
        if floor is None or floor == top:
            return top
        return floor + (top - floor) * self.dependence()

    def mechanism(self) -> dict[str, float]:
        """Slope a and offset b (logits; the mean offset of a per-pixel one) and the data critic's lambda."""
        return {"slope": self.SCALE * float(self.slope.detach()),
                "offset": self.SCALE * float(self.offset.detach().mean()),
                "lambda_x": self.data_critic_temperature()}

    def forward(self, x: torch.Tensor, u: torch.Tensor, output: nn.Module | None = None) -> torch.Tensor:
        # output(l + noise): a binary-concrete draw at the output's lambda, or at the data critic's lambda, or
        # at another output's (the mask critic's draws).
        logit = self.observed_logit(x) + logistic_noise(u)
        if output is None:
            lam, top = self.data_critic_temperature(), float(self.output.temperature)
            if lam != top:  # output(l * top / lam) is the output at lambda lam, for every activation kind
                logit = logit * (top / lam)
        return (output or self.output)(logit)


class ConditionalMaskNet(nn.Module):
    """Gm(eps, x): FC(latent + D, 256)-FC(256, 512)-FC(512, D_mask) of the noise and the complete image."""

    def __init__(self, shape: tuple[int, int, int], mask_shape: tuple[int, int, int], output: nn.Module,
                 latent: int = LATENT):
        super().__init__()
        self.mask_shape = tuple(mask_shape)
        self.net = nn.Sequential(nn.Linear(latent + math.prod(shape), 256), nn.ReLU(), nn.Linear(256, 512),
                                 nn.ReLU(), nn.Linear(512, math.prod(mask_shape)))
        self.output = output

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(torch.cat([z, x.flatten(1)], 1))).view(-1, *self.mask_shape)


# ---------------------------------------------------------------------------------------------
# Where the self-masking model starts


def initial_self_masking_slope(x: torch.Tensor, m: torch.Tensor, magnitude: float = 4.0,
                               deadband: float = 0.02) -> float:
    """The self-masking model's starting slope, from the sign the incomplete data suggest.

    A pixel's observed neighbours stand in (as a shadow variable) for its own hidden value: if pixels go
    missing where their observed neighbours are bright, bright values are the ones missing. Returns -magnitude
    (bright pixels less often observed), +magnitude, or 0 where the correlation of "missing" with the
    neighbours' mean observed intensity is within the deadband (no evidence: MCAR, where 0 is the truth).
    """
    every = max(1, len(x) // 2000)
    x, m = x[::every], m[::every]  # 2,000 examples or so: plenty for a sign
    x = as_float_images(x) if not x.is_floating_point() else x
    mf = m.float()
    xo = x.float().mean(1, keepdim=True) * mf
    kernel = torch.ones(1, 1, 3, 3, dtype=xo.dtype)
    kernel[0, 0, 1, 1] = 0
    total = torch.nn.functional.conv2d(xo, kernel, padding=1)
    count = torch.nn.functional.conv2d(mf, kernel, padding=1)
    has = count > 0
    if int(has.sum()) < 2:
        return 0.0
    neighbour = (total / count.clamp(min=1))[has]
    missing = (1 - mf)[has]
    if float(neighbour.std()) == 0 or float(missing.std()) == 0:
        return 0.0
    r = float(torch.corrcoef(torch.stack([neighbour, missing]))[0, 1])
    if not math.isfinite(r) or abs(r) < deadband:
        return 0.0
    return -magnitude if r > 0 else magnitude


def initial_self_masking_offset(m: torch.Tensor, slope: float) -> float:
    """The starting offset: with no sign of dependence (slope 0), the MCAR fit, logit of the observed share;
    else 0."""
    if slope != 0.0:
        return 0.0
    observed = float(m.float().mean().clamp(1e-3, 1 - 1e-3))
    return math.log(observed / (1 - observed))
