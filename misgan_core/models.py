"""Networks: generators, critics and imputer nets for FC-, Conv- and DCGAN-style MisGAN.

Architectures follow the paper's appendix D: FC generators FC(128,256)-FC(256,512)-FC(512,D), FC critics
FC(D,512)-FC(512,256)-FC(256,128)-FC(128,1); Conv-MisGAN for 28x28 uses the WGAN-GP MNIST layout (a 4x4x256
projection, then transposed convolutions); 32x32 and 64x64 use the DCGAN layout scaled to the size.

Critics are piecewise linear (affine layers with ReLU or leaky ReLU); `critic_gradients.py` uses that to
write the WGAN-GP loss's gradients out explicitly. This file holds only the architectures.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import OptionError

LATENT = 128


# ---------------------------------------------------------------------------------------------
# Output activations


class TemperatureSigmoid(nn.Module):
    """sigma_lambda(x) = 1 / (1 + exp(-x / lambda)) (paper, section 2), and three variants that reach exact
    0 and 1.

    'stretched' is the released code's default ("fusion"): sigma_lambda rescaled to (-0.1, 1.1) and clipped to
    [0, 1], so masks can be exactly binary at finite logits while the middle keeps the sigmoid's gradient.
    Binary real masks are then within reach, which high missing rates need: with the plain sigmoid at 90%
    dropout the mask critic told real from generated masks apart throughout and Gx never learned
    (docs/experiments.md, "Closing the gap to the paper").
    """

    KINDS = ("sigmoid", "stretched", "hard-sigmoid", "straight-through")
    STRETCH = (-0.1, 1.1)

    def __init__(self, temperature: float = 0.66, kind: str = "sigmoid"):
        super().__init__()
        if kind not in self.KINDS:
            raise OptionError(f"unknown mask activation {kind!r}; choose one of {', '.join(self.KINDS)}")
        if temperature <= 0:
            raise OptionError(f"temperature must be positive; got {temperature}")
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
            raise OptionError(f"a {levels}-level U-Net needs a side divisible by {2 ** levels}; got {size}")
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


def check_shape(arch: str, shape: tuple[int, int, int]) -> None:
    """Refuse image shapes the architecture cannot model, saying what to do."""
    c, h, w = shape
    if c not in (1, 3):
        raise OptionError(f"images must have 1 or 3 channels; got {c}")
    if arch not in ARCHS:
        raise OptionError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch == "conv" and not (h == w and h in (28, 32, 64)):
        raise OptionError(f"arch 'conv' supports 28x28, 32x32 and 64x64 images; got {h}x{w}. Use --arch fc, "
                          f"or resize the images")


def generator(arch: str, shape: tuple[int, int, int], output: nn.Module, latent: int = LATENT) -> nn.Module:
    """A generator of `shape` outputs through `output` (appendix D): FC, the WGAN-GP 28x28 layout or DCGAN."""
    if arch == "fc":
        return FCGenerator(shape, output, latent)
    if shape[1] == 28:
        return ConvGenerator28(shape[0], output, latent)
    return DCGANGenerator(shape, output, latent)


def critic(arch: str, shape: tuple[int, int, int]) -> Critic:
    """A critic of `shape` inputs (appendix D): FC, the WGAN-GP 28x28 layout or DCGAN's."""
    if arch == "fc":
        return fc_critic(shape)
    return conv_critic28(shape) if shape[1] == 28 else dcgan_critic(shape)


def imputer_net(shape: tuple[int, int, int], width: int = 500, depth: int = 2, sees_mask: bool = False) -> nn.Module:
    """Ĝi of eq. 12: FC (section 5.1) up to 28x28, the U-Net above."""
    if shape[1] < 32:
        return FCImputerNet(shape, width, sees_mask, (1, *shape[1:]), depth)
    return UNetImputerNet(shape, sees_mask=sees_mask)
