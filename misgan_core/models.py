"""Networks: generators, critics and imputer nets for FC-, Conv- and DCGAN-style MisGAN.

Architectures follow the paper's appendix D: FC generators FC(128,256)-FC(256,512)-FC(512,D), FC critics
FC(D,512)-FC(512,256)-FC(256,128)-FC(128,1); Conv-MisGAN for 28x28 uses the WGAN-GP MNIST layout (a 4x4x256
projection, then transposed convolutions); 32x32 and 64x64 use the DCGAN layout scaled to the size.

Critics are piecewise linear (affine layers with ReLU or leaky ReLU); `critic_gradients.py` uses that to
write the WGAN-GP loss's gradients out explicitly. This file holds only the architectures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LATENT = 128


# ---------------------------------------------------------------------------------------------
# Output activations


class TemperatureSigmoid(nn.Module):
    """sigma_lambda(x) = 1 / (1 + exp(-x / lambda)) (paper, section 2), and three variants that reach exact
    0 and 1.

    'stretched' is the released code's default ("fusion"): sigma_lambda rescaled to (-0.1, 1.1) and clipped to
    [0, 1], so masks can be exactly binary at finite logits while the middle keeps the sigmoid's gradient.
    Binary real masks are then within reach: with the plain sigmoid at 90% dropout the mask critic told
    real from generated masks apart throughout (its Wasserstein estimate rose to 5.5 by step 650, and Gx
    never learned: FID 1,257 at step 500); see README, "Reproducing the paper".
    """

    KINDS = ("sigmoid", "stretched", "hard-sigmoid", "straight-through")
    STRETCH = (-0.1, 1.1)

    def __init__(self, temperature: float = 0.66, kind: str = "sigmoid"):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"unknown mask activation {kind!r}; choose one of {', '.join(self.KINDS)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; got {temperature}")
        self.temperature, self.kind = temperature, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "hard-sigmoid":
            # Piecewise linear with sigma_lambda's slope at 0, saturating exactly at 0 and 1.
            return (0.5 + x / (4 * self.temperature)).clamp(0, 1)
        if self.kind == "straight-through":
            return _StraightThrough.apply(x, self.temperature)
        if self.kind == "stretched":
            low, high = self.STRETCH
            return (torch.sigmoid(x / self.temperature) * (high - low) + low).clamp(0, 1)
        return torch.sigmoid(x / self.temperature)


class _StraightThrough(torch.autograd.Function):
    """Exactly binary masks forward, sigma_lambda's gradient backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, temperature: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.temperature = temperature
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x / ctx.temperature)
        return grad * s * (1 - s) / ctx.temperature, None


# ---------------------------------------------------------------------------------------------
# Generators (latent -> image in [0, 1] or mask in [0, 1])


class FCGenerator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], output: nn.Module, latent: int = LATENT):
        super().__init__()
        self.shape = tuple(shape)
        self.net = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                 nn.Linear(512, math.prod(shape)))
        self.output = output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(z)).view(-1, *self.shape)


class ConvGenerator28(nn.Module):
    """28x28: Linear to 4x4x256, ConvT 5 -> 8x8 (cropped to 7x7), ConvT 5 -> 11x11, ConvT 8 stride 2 -> 28x28."""

    def __init__(self, channels: int, output: nn.Module, latent: int = LATENT, width: int = 64):
        super().__init__()
        self.width = width
        self.project = nn.Sequential(nn.Linear(latent, 4 * 4 * 4 * width), nn.ReLU())
        self.up1 = nn.Sequential(nn.ConvTranspose2d(4 * width, 2 * width, 5), nn.ReLU())
        self.up2 = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 5), nn.ReLU())
        self.out = nn.ConvTranspose2d(width, channels, 8, stride=2)
        self.output = output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(-1, 4 * self.width, 4, 4)
        h = self.up1(h)[:, :, :7, :7]
        return self.output(self.out(self.up2(h)))


class DCGANGenerator(nn.Module):
    """DCGAN: project to 4x4x(8w) then stride-2 transposed convolutions with batch norm up to the size."""

    def __init__(self, shape: tuple[int, int, int], output: nn.Module, latent: int = LATENT, width: int = 64):
        super().__init__()
        channels, size, _ = shape
        levels = int(math.log2(size // 4))
        top = width * 2 ** (levels - 1)
        self.top = top
        self.project = nn.Sequential(nn.Linear(latent, 4 * 4 * top), nn.BatchNorm1d(4 * 4 * top), nn.ReLU())
        layers: list[nn.Module] = []
        ch = top
        for _ in range(levels - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers.append(nn.ConvTranspose2d(ch, channels, 4, 2, 1))
        self.body = nn.Sequential(*layers)
        self.output = output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(self.body(self.project(z).view(-1, self.top, 4, 4)))


# ---------------------------------------------------------------------------------------------
# Mask models that see the image (MNAR): Gm(eps, x)

MASK_MODELS = ("independent", "self-masking", "conditional")


def logistic_noise(u: torch.Tensor) -> torch.Tensor:
    """Logistic(0, 1) noise from uniform u: log u - log(1 - u), clamped away from 0 and 1."""
    u = u.clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


class SelfMaskingMaskModel(nn.Module):
    """Each pixel observed with probability sigmoid(a * x_d + b): a learned slope a and offset b shared by all
    pixels, so the missingness of a pixel depends on its own value only (self-masking MNAR), through the same
    logistic family as the `self-masking` process (masks.SelfMasking). A draw is a relaxed Bernoulli (binary
    concrete: the output activation of logit + logistic noise, Maddison et al. 2017), so gradients reach a, b
    and the pixel values.

    The parameters are stored at 1/SCALE of their value: Adam moves each by about lr a step, and at lr 1e-4 a
    logit slope of 5 would take 50,000 steps to learn. The offset is shared: with one offset per pixel (the
    first version), Gm explained where digits go missing by position alone and Gx collapsed to black or white
    images (README "Missingness that depends on the data"). The slope starts at `initial_slope`: at 0, Gx and
    the slope deadlock (x = 0 gives the slope no gradient, a = 0 gives Gx none through the masks); MisGAN
    starts it from the sign the data suggest (`initial_self_masking_slope`). The data critic's draws are
    relaxed at temperature 3, not the paper's 0.66 (misgan.MASK_TEMPERATURE: at 0.66 the masks stop passing
    gradients to bright pixels and missing strokes stay dim); the mask critic's at 0.66 (`forward`'s
    `output`). A draw exceeds 1/2 with probability sigmoid(a x_d + b) at any temperature.

    Identifiable where a fully parametric mechanism like this one is combined with dependence between pixels:
    each other pixel is a "shadow variable" for x_d (associated with x_d, independent of m_d given x_d), the
    condition of Miao and Tchetgen Tchetgen (2016, Biometrika 103(2)) under completeness; a single variable
    with an unrestricted self-masking mechanism is not identifiable (Mohan and Pearl 2021, JASA 116(534)).
    The Theory page shows both on a two-pixel case.
    """

    SCALE = 50.0

    # |slope| (logit per unit of intensity) from which the data critic's draws are at the full temperature
    STEEP_SLOPE = 2.0

    def __init__(self, mask_shape: tuple[int, int, int], output: nn.Module, initial_slope: float = 0.0,
                 temperature_floor: float | None = None, initial_offset: float = 0.0):
        super().__init__()
        self.mask_shape = tuple(mask_shape)
        self.slope = nn.Parameter(torch.full((), initial_slope / self.SCALE))
        self.offset = nn.Parameter(torch.full((), initial_offset / self.SCALE))
        self.output = output
        self.temperature_floor = temperature_floor

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Runs made with the per-pixel offset (its first version) load with that offset, into the same Parameter
        # object, so an optimizer built before the load (MisGAN.load resumes that way) updates the loaded one.
        saved = state_dict.get(prefix + "offset")
        if saved is not None and saved.shape != self.offset.shape:
            self.offset.data = torch.zeros(saved.shape, dtype=self.offset.dtype, device=self.offset.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def observed_logit(self, x: torch.Tensor) -> torch.Tensor:
        # RGB: one mask per pixel, from its mean intensity.
        return self.SCALE * (self.slope * x.mean(1, keepdim=True) + self.offset)

    def dependence(self) -> float:
        """min(1, (a / STEEP_SLOPE) ** 2): 0 where the learnt masks do not depend on the values (a = 0), 1 where
        the mechanism is steep. Sets the data critic's lambda (below) and, with the pair critic, the weight of
        its mask channel (MisGANConfig.mask_channel_gate)."""
        a = self.SCALE * float(self.slope.detach())
        return min(1.0, (a / self.STEEP_SLOPE) ** 2)

    def data_critic_temperature(self) -> float:
        """lambda of the draws the data critic judges: the output's temperature where the learnt mechanism is
        steep (|a| >= STEEP_SLOPE), falling to `temperature_floor` as a goes to 0, as
        floor + (temperature - floor) * min(1, (a / STEEP_SLOPE) ** 2).

        The high temperature is there for the leak: it keeps a draw's slope in the pixel value, a m (1 - m) /
        lambda, alive at bright missing strokes (misgan.MASK_TEMPERATURE). Where a is near 0 (MCAR) there is
        nothing to leak, and a soft draw only costs: at 80% missing and lambda 3 nearly every pixel of a draw
        lies between 0.2 and 0.55 while the data's masks are binary, which the data critic sees at once.
        Measured on mnist-5k, dropout 80%, 4,000 steps, the mask channel ungated (README): generation FID 387.4
        at lambda 3 throughout, 283.0 with the floor at 0.66, 253.9, 243.5 and 236.0 (seeds 0-2) at 0.25 (the
        slope stayed within 0.01 of 0); under self-masking, where |a| passes 2 at once, nothing changes."""
        top = float(self.output.temperature)
        floor = self.temperature_floor
        if floor is None or floor == top:
            return top
        return floor + (top - floor) * self.dependence()

    def mechanism(self) -> dict[str, float]:
        """What the model has learnt, for the training log: slope a and offset b (logits; the mean offset of
        a run with one per pixel) and the data critic's lambda."""
        return {"slope": self.SCALE * float(self.slope.detach()),
                "offset": self.SCALE * float(self.offset.detach().mean()),
                "lambda_x": self.data_critic_temperature()}

    def forward(self, x: torch.Tensor, u: torch.Tensor, output: nn.Module | None = None) -> torch.Tensor:
        # output(l + noise) = sigma_lambda(l + noise): a binary-concrete draw at temperature lambda (or at
        # another output's, for the mask critic: MisGANConfig.mask_critic_temperature).
        logit = self.observed_logit(x) + logistic_noise(u)
        if output is None:
            lam = self.data_critic_temperature()
            top = float(self.output.temperature)
            if lam != top:  # output(l * top / lam) = output at lambda lam, for every activation kind
                logit = logit * (top / lam)
        return (output or self.output)(logit)


class NoisyMaskGenerator(nn.Module):
    """Gm(eps, u) = output(G(eps) + logistic(u)): the generator's per-pixel logits, then a relaxed Bernoulli draw
    per pixel (binary concrete, Maddison et al. 2017) from its own uniform noise u (`--mask-noise`).

    The paper's Gm = sigma_lambda(G(eps)) gets all its randomness from the 128 latent dimensions, so it cannot
    represent 784 independent Bernoulli pixels (MCAR dropout): on mnist-5k at dropout 80% the mask critic's
    Wasserstein estimate stayed near 4.7 through 14,000 steps with the sigmoid and the stretched activation
    alike. With per-pixel noise a constant logit gives exact independent dropout, and block masks (logits far
    from 0) are unchanged."""

    def __init__(self, net: nn.Module, output: nn.Module, mask_shape: tuple[int, int, int]):
        super().__init__()
        self.net, self.output, self.mask_shape = net, output, tuple(mask_shape)

    def forward(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(z) + logistic_noise(u))


class ConditionalMaskGenerator(nn.Module):
    """Gm(eps, x): an FC network fed the latent noise and the (generated) complete image, for missingness that
    may depend on the whole image (MAR or general MNAR): FC(latent + D, 256)-FC(256, 512)-FC(512, D_mask)."""

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
# Critics


class Critic(nn.Module):
    """A piecewise-linear critic: affine layers (Conv2d or Linear) with (leaky) ReLU in between, then a
    scalar per example. No batch norm: the gradient penalty is per example (WGAN-GP)."""

    def __init__(self, in_shape: tuple[int, int, int], layers: list[nn.Module], negative_slope: float = 0.0):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.layers = nn.ModuleList(layers)
        self.negative_slope = negative_slope
        # Inputs are flattened before the first Linear layer.
        self.flatten_at = next((i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)), len(layers))
        self.is_mlp = len(layers) >= 2 and all(isinstance(layer, nn.Linear) for layer in layers)

    def act(self, u: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(u, self.negative_slope) if self.negative_slope else F.relu(u)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == self.flatten_at:
                h = h.flatten(1)
            h = layer(h)
            if i < last:
                h = self.act(h)
        return h.view(-1)


def fc_critic(shape: tuple[int, int, int]) -> Critic:
    d = math.prod(shape)
    return Critic(shape, [nn.Linear(d, 512), nn.Linear(512, 256), nn.Linear(256, 128), nn.Linear(128, 1)])


def conv_critic28(shape: tuple[int, int, int], width: int = 64) -> Critic:
    """WGAN-GP MNIST critic: three 5x5 stride-2 convolutions (28 -> 14 -> 7 -> 4), then Linear."""
    c = shape[0]
    return Critic(shape, [nn.Conv2d(c, width, 5, 2, 2), nn.Conv2d(width, 2 * width, 5, 2, 2),
                          nn.Conv2d(2 * width, 4 * width, 5, 2, 2), nn.Linear(4 * 4 * 4 * width, 1)])


def dcgan_critic(shape: tuple[int, int, int], width: int = 64) -> Critic:
    """DCGAN critic without batch norm (the gradient penalty is per example): stride-2 4x4 convolutions
    down to 4x4, then Linear; leaky ReLU 0.2."""
    c, size, _ = shape
    layers: list[nn.Module] = []
    ch_in, ch = c, width
    while size > 4:
        layers.append(nn.Conv2d(ch_in, ch, 4, 2, 1))
        ch_in, ch, size = ch, ch * 2, size // 2
    layers.append(nn.Linear(ch_in * 4 * 4, 1))
    return Critic(shape, layers, negative_slope=0.2)


# ---------------------------------------------------------------------------------------------
# Imputer networks: Ĝi of eq. 12, image in, image out


class FCImputerNet(nn.Module):
    """Three fully connected layers with 500 hidden units (paper, section 5.1). With `sees_mask` the mask is a
    second input beside x*m + w*(1-m) (the released code's `--imputer mask`, MaskImputer): under dropout a
    noise value and an observed pixel of the same intensity are otherwise indistinguishable."""

    def __init__(self, shape: tuple[int, int, int], hidden: int = 500, sees_mask: bool = False,
                 mask_shape: tuple[int, int, int] | None = None, depth: int = 2):
        super().__init__()
        d = math.prod(shape)
        self.shape = tuple(shape)
        self.sees_mask = sees_mask
        extra = math.prod(mask_shape or (1, *shape[1:])) if sees_mask else 0
        layers: list[nn.Module] = []
        width = d + extra
        for _ in range(depth):  # depth hidden layers (the paper: 2 of 500; the released code: 3 of 784)
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, d), nn.Sigmoid())

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x.flatten(1), m.flatten(1).to(x.dtype)], 1) if self.sees_mask else x.flatten(1)
        return self.net(h).view(-1, *self.shape)


class _UNetLevel(nn.Module):
    def __init__(self, outer: int, inner: int, child: nn.Module | None, outermost: bool = False,
                 out_channels: int | None = None):
        super().__init__()
        self.down = nn.Sequential(nn.LeakyReLU(0.2) if not outermost else nn.Identity(),
                                  nn.Conv2d(outer, inner, 4, 2, 1),
                                  nn.BatchNorm2d(inner) if child is not None and not outermost else nn.Identity())
        self.child = child
        up_in = inner * 2 if child is not None else inner
        self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(up_in, out_channels or outer, 4, 2, 1),
                                nn.Identity() if outermost else nn.BatchNorm2d(out_channels or outer))
        self.outermost = outermost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        if self.child is not None:
            h = self.child(h)
        y = self.up(h)
        return y if self.outermost else torch.cat([x, y], 1)


class UNetImputerNet(nn.Module):
    """A pix2pix-style U-Net with `levels` stride-2 levels (5 for 32x32 and 64x64, as in the paper)."""

    def __init__(self, shape: tuple[int, int, int], levels: int = 5, width: int = 64, sees_mask: bool = False):
        super().__init__()
        c, size, _ = shape
        self.sees_mask = sees_mask
        if size % (2 ** levels):
            raise ValueError(f"a {levels}-level U-Net needs a side divisible by {2 ** levels}; got {size}")
        widths = [min(width * 2 ** i, width * 8) for i in range(levels)]
        block: nn.Module | None = None
        for i in range(levels - 1, 0, -1):
            block = _UNetLevel(widths[i - 1], widths[i], block)
        self.net = _UNetLevel(c + int(sees_mask), widths[0], block, outermost=True, out_channels=c)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """x*m + w*(1-m), and the mask m (an extra input channel when `sees_mask`)."""
        return torch.sigmoid(self.net(torch.cat([x, m[:, :1].to(x.dtype)], 1) if self.sees_mask else x))


# ---------------------------------------------------------------------------------------------
# Factory


ARCHS = ("fc", "conv")


@dataclass
class Networks:
    gx: nn.Module
    gm: nn.Module
    dx: Critic
    dm: Critic
    gi: nn.Module | None = None
    di: Critic | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {k: v for k, v in vars(self).items() if v is not None}


def _check_shape(arch: str, shape: tuple[int, int, int]) -> None:
    c, h, w = shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels; got {c}")
    if arch == "conv" and not (h == w and h in (28, 32, 64)):
        raise ValueError(f"arch 'conv' supports 28x28, 32x32 and 64x64 images; got {h}x{w}. Use --arch fc, "
                         f"or resize the images")
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")


def build_networks(arch: str, shape: tuple[int, int, int], imputer: bool = False, temperature: float = 0.66,
                   mask_activation: str = "sigmoid", latent: int = LATENT,
                   mask_model: str = "independent", imputer_sees_mask: bool = False,
                   mask_noise: bool = False, imputer_width: int = 500, imputer_depth: int = 2,
                   imputer_critic_sees_mask: bool = False, initial_slope: float = 0.0, initial_offset: float = 0.0,
                   data_critic_sees_mask: bool = False, temperature_floor: float | None = None) -> Networks:
    """Gx, Gm, Dx, Dm (and Gi, Di when `imputer`) for data of `shape` (C, H, W). `mask_model` picks Gm:
    independent Gm(eps) (the paper), self-masking or conditional Gm(eps, x) (see MASK_MODELS)."""
    if mask_model not in MASK_MODELS:
        raise ValueError(f"unknown mask model {mask_model!r}; choose one of {', '.join(MASK_MODELS)}")
    shape = tuple(shape)  # type: ignore[assignment]
    _check_shape(arch, shape)
    c, h, _ = shape
    mask_shape = (1, h, shape[2])

    def gen(out_shape: tuple[int, int, int], output: nn.Module) -> nn.Module:
        if arch == "fc":
            return FCGenerator(out_shape, output, latent)
        if h == 28:
            return ConvGenerator28(out_shape[0], output, latent)
        return DCGANGenerator(out_shape, output, latent)

    def critic(in_shape: tuple[int, int, int]) -> Critic:
        if arch == "fc":
            return fc_critic(in_shape)
        return conv_critic28(in_shape) if h == 28 else dcgan_critic(in_shape)

    mask_output = TemperatureSigmoid(temperature, mask_activation)
    if mask_model == "self-masking":
        gm: nn.Module = SelfMaskingMaskModel(mask_shape, mask_output, initial_slope, temperature_floor,
                                             initial_offset)
    elif mask_model == "conditional":
        gm = ConditionalMaskGenerator(shape, mask_shape, mask_output, latent)
    elif mask_noise:
        gm = NoisyMaskGenerator(gen(mask_shape, nn.Identity()), mask_output, mask_shape)
    else:
        gm = gen(mask_shape, mask_output)
    # Dx judges f_tau(x, m), or (x * m, m) as one more input channel (MisGAN._data_critic_input).
    paired = (shape[0] + 1, *shape[1:])
    nets = Networks(gx=gen(shape, nn.Sigmoid()), gm=gm, dx=critic(paired if data_critic_sees_mask else shape),
                    dm=critic(mask_shape))
    if imputer:
        nets.gi = (FCImputerNet(shape, imputer_width, imputer_sees_mask, mask_shape, imputer_depth) if h < 32
                   else UNetImputerNet(shape, sees_mask=imputer_sees_mask))
        # Di judges images, or (image, mask) pairs as one more input channel (MisGAN._imputer_critic_input).
        nets.di = critic(paired if imputer_critic_sees_mask else shape)
    return nets
