"""Networks: generators, critics and imputer nets for FC-, Conv- and DCGAN-style MisGAN.

Architectures follow the paper's appendix D: FC generators FC(128,256)-FC(256,512)-FC(512,D), FC critics
FC(D,512)-FC(512,256)-FC(256,128)-FC(128,1); Conv-MisGAN for 28x28 uses the WGAN-GP MNIST layout (a 4x4x256
projection, then transposed convolutions); 32x32 and 64x64 use the DCGAN layout scaled to the size.

Critics are piecewise linear (affine layers with ReLU or leaky ReLU), which lets `Critic` write the gradient
of its output with respect to its input out explicitly; see `Critic.input_gradient`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LATENT = 128


# ---------------------------------------------------------------------------------------------
# Output activations


class TemperatureSigmoid(nn.Module):
    """sigma_lambda(x) = 1 / (1 + exp(-x / lambda)) (paper, section 2), and two hard variants."""

    KINDS = ("sigmoid", "hard-sigmoid", "straight-through")

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
    """A piecewise-linear critic: affine layers (Conv2d or Linear) with (leaky) ReLU in between.

    Because the activation's derivative is a 0/1 (or slope) pattern that is constant almost everywhere,
    the gradient of D with respect to its input is W_1^T S_1 W_2^T S_2 ... W_K^T, with S_k the activation
    slopes. `input_gradient` builds that product from the slopes alone, so the gradient penalty needs
    only a first-order backward, instead of autograd's double backward through the whole critic. The
    result is the same gradient (the second derivative of (leaky) ReLU is 0 almost everywhere).
    """

    def __init__(self, in_shape: tuple[int, int, int], layers: list[nn.Module], negative_slope: float = 0.0):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.layers = nn.ModuleList(layers)
        self.negative_slope = negative_slope
        self._flatten_at = next((i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)), len(layers))
        # An all-Linear critic (FC-MisGAN) gets its loss and weight gradients from `_MLPCriticLoss`.
        self._is_mlp = len(layers) >= 2 and all(isinstance(layer, nn.Linear) for layer in layers)

    def _act(self, u: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(u, self.negative_slope) if self.negative_slope else F.relu(u)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == self._flatten_at:
                h = h.flatten(1)
            h = layer(h)
            if i < last:
                h = self._act(h)
        return h.view(-1)

    @torch.no_grad()
    def preactivations(self, x: torch.Tensor, first: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Pre-activations of every hidden layer at x, without a graph. `first`, when given, is the first
        layer's pre-activation already computed elsewhere (see `loss_with_penalty`)."""
        out = []
        h = x
        for i, layer in enumerate(self.layers[:-1]):
            if i == self._flatten_at:
                h = h.flatten(1)
            u = first if i == 0 and first is not None else layer(h)
            out.append(u)
            h = self._act(u)
        return out

    def input_gradient(self, x: torch.Tensor, preacts: list[torch.Tensor] | None = None) -> torch.Tensor:
        """d D(x) / d x for every row of x, differentiable with respect to the weights (first order)."""
        preacts = self.preactivations(x) if preacts is None else preacts
        last = self.layers[-1]
        if not isinstance(last, nn.Linear):
            raise TypeError("the critic's last layer must be Linear")
        g = last.weight.expand(x.shape[0], -1)
        for i in range(len(self.layers) - 2, -1, -1):
            u = preacts[i]
            # The activation's backward at the stored pre-activation: one fused op, differentiable in g.
            g = g.reshape(u.shape)
            if self.negative_slope:
                g = torch.ops.aten.leaky_relu_backward(g, u, self.negative_slope, False)
            else:
                g = torch.ops.aten.threshold_backward(g, u, 0)
            layer = self.layers[i]
            if isinstance(layer, nn.Linear):
                g = g @ layer.weight
            else:
                in_size = self._in_size(i, x)
                out_size = g.shape[-2:]
                k, st, p = layer.kernel_size, layer.stride, layer.padding
                op = tuple(in_size[d] - ((out_size[d] - 1) * st[d] - 2 * p[d] + k[d]) for d in range(2))
                g = F.conv_transpose2d(g, layer.weight, stride=st, padding=p, output_padding=op)
        return g.reshape(x.shape)

    def loss_with_penalty(self, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                          gp_weight: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
        """WGAN-GP critic loss E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_hat)|| - 1)^2] with
        x_hat = eps * real + (1 - eps) * fake; returns (loss, E[D(real)] - E[D(fake)]).

        Real and fake rows share one forward pass (there is no batch norm). The first layer is affine, so
        its pre-activation at x_hat is eps * u(real) + (1 - eps) * u(fake): the interpolates skip the
        first (largest) layer of their forward pass.
        """
        if self._is_mlp and not (torch.is_grad_enabled() and (real.requires_grad or fake.requires_grad)):
            return _MLPCriticLoss.apply(real, fake, eps, gp_weight, self.negative_slope, *self.parameters())
        n = len(real)
        h = torch.cat([real, fake])
        last = len(self.layers) - 1
        first_u = None
        for i, layer in enumerate(self.layers):
            if i == self._flatten_at:
                h = h.flatten(1)
            h = layer(h)
            if i == 0:
                first_u = h
            if i < last:
                h = self._act(h)
        out = h.view(-1)
        with torch.no_grad():
            w = eps.reshape((n,) + (1,) * (first_u.dim() - 1))
            u_hat = torch.lerp(first_u[n:], first_u[:n], w)  # fake + w * (real - fake)
        x_hat = eps * real + (1 - eps) * fake
        g = self.input_gradient(x_hat, self.preactivations(x_hat, first=u_hat)).flatten(1)
        penalty = gp_weight * ((g.norm(2, dim=1) - 1) ** 2).mean()
        d_real, d_fake = out[:n].mean(), out[n:].mean()
        return d_fake - d_real + penalty, d_real - d_fake

    def _in_size(self, i: int, x: torch.Tensor) -> tuple[int, int]:
        size = tuple(x.shape[-2:])
        for layer in self.layers[:i]:
            if isinstance(layer, nn.Conv2d):
                k, st, p = layer.kernel_size, layer.stride, layer.padding
                size = tuple((size[d] + 2 * p[d] - k[d]) // st[d] + 1 for d in range(2))
        return size  # type: ignore[return-value]


def _act_backward(g: torch.Tensor, u: torch.Tensor, negative_slope: float,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """g times the activation's slope at pre-activation u (written into `out` when given)."""
    if out is None:
        out = torch.empty_like(g)
    if negative_slope:
        return torch.ops.aten.leaky_relu_backward.grad_input(g, u, negative_slope, False, grad_input=out)
    return torch.ops.aten.threshold_backward.grad_input(g, u, 0, grad_input=out)


class _MLPCriticLoss(torch.autograd.Function):
    """WGAN-GP loss of an all-Linear critic with its weight gradients written out (the same value and gradients
    as `Critic.loss_with_penalty`'s general path; tests compare both with autograd's double backward).

    Rows are stacked [real; fake; interpolates]. With S_k the activation slopes at layer k and c the loss's
    weight on each row's output (-1/n real, +1/n fake, 1 for the interpolates' input gradient):
      G_top = S_top * (c w_last),  G_{k-1} = S_{k-1} * (G_k W_k)
    For real and fake rows G_k is dLoss/dpre-activation; for interpolate rows it is the input gradient's partial
    product, and the input gradient is G_0 W_0. The penalty's backward runs the chain the other way. Each
    weight's two gradient terms (from the loss and from the penalty) share one matrix product over all rows:
    half as many matrix products as autograd's, each larger, which is what a CPU runs fastest.
    """

    @staticmethod
    def forward(ctx, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, gp_weight: float,  # type: ignore[override]
                negative_slope: float, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights, biases = params[0::2], params[1::2]
        n, last = len(real), len(weights) - 1
        # Each stacked buffer's interpolate rows are overwritten with the penalty's backward signal once the
        # forward pass is done with them, so every weight gradient is one product over the whole buffer.
        x = real.new_empty((3 * n, weights[0].shape[1]))
        x[:n], x[n:2 * n] = real.flatten(1), fake.flatten(1)
        u = x.new_empty((3 * n, weights[0].shape[0]))
        torch.addmm(biases[0], x[:2 * n], weights[0].t(), out=u[:2 * n])
        # The first layer is affine: the interpolates' pre-activation is a lerp of the real and fake ones.
        torch.lerp(u[n:2 * n], u[:n], eps.reshape(n, 1), out=u[2 * n:])
        pre, hidden = [u], []
        for k in range(1, last):
            h = F.leaky_relu(u, negative_slope) if negative_slope else F.relu(u)
            hidden.append(h)
            u = torch.addmm(biases[k], h, weights[k].t())
            pre.append(u)
        h = F.leaky_relu(u, negative_slope) if negative_slope else F.relu(u)
        hidden.append(h)
        out = torch.addmm(biases[last], h[:2 * n], weights[last].t()).view(-1)
        d_real, d_fake = out[:n].mean(), out[n:].mean()

        c = u.new_empty((3 * n, 1))
        c[:n], c[n:2 * n], c[2 * n:] = -1.0 / n, 1.0 / n, 1.0
        g = _act_backward(c * weights[last], pre[last - 1], negative_slope)
        chain = [g]
        for k in range(last - 1, 0, -1):
            g = _act_backward(g @ weights[k], pre[k - 1], negative_slope)
            chain.append(g)
        chain.reverse()  # chain[k] pairs with weights[k]
        grad_x = chain[0][2 * n:] @ weights[0]
        norm = grad_x.norm(2, dim=1, keepdim=True)
        penalty = gp_weight * ((norm - 1) ** 2).mean()
        # d penalty / d grad_x; a zero-norm row has a zero gradient, as autograd's norm backward gives.
        scale = torch.where(norm > 0, (norm - 1) / norm, torch.zeros((), dtype=norm.dtype, device=norm.device))
        torch.mul(grad_x, (2.0 * gp_weight / n) * scale, out=x[2 * n:])

        grads: list[torch.Tensor] = [torch.empty(0)] * len(params)
        inputs = x
        for k in range(last):
            grads[2 * k] = chain[k].t() @ inputs
            grads[2 * k + 1] = chain[k][:2 * n].sum(0)  # biases move only the loss, not the input gradient
            _act_backward(inputs[2 * n:] @ weights[k].t(), pre[k][2 * n:], negative_slope, out=hidden[k][2 * n:])
            inputs = hidden[k]
        grads[2 * last] = c.t() @ inputs
        grads[2 * last + 1] = c[:2 * n].sum(0)
        ctx.grads = grads
        w = (d_real - d_fake).detach()
        ctx.mark_non_differentiable(w)
        return d_fake - d_real + penalty, w

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_w: torch.Tensor):  # type: ignore[override]
        grads, ctx.grads = ctx.grads, None
        if grad_loss.device.type != "cpu" or grad_loss.item() != 1.0:  # 1 is the usual case; skip that pass
            grads = [g.mul_(grad_loss) for g in grads]
        return (None, None, None, None, None, *grads)


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
    """Three fully connected layers with 500 hidden units (paper, section 5.1)."""

    def __init__(self, shape: tuple[int, int, int], hidden: int = 500):
        super().__init__()
        d = math.prod(shape)
        self.shape = tuple(shape)
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, d), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).view(-1, *self.shape)


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

    def __init__(self, shape: tuple[int, int, int], levels: int = 5, width: int = 64):
        super().__init__()
        c, size, _ = shape
        if size % (2 ** levels):
            raise ValueError(f"a {levels}-level U-Net needs a side divisible by {2 ** levels}; got {size}")
        widths = [min(width * 2 ** i, width * 8) for i in range(levels)]
        block: nn.Module | None = None
        for i in range(levels - 1, 0, -1):
            block = _UNetLevel(widths[i - 1], widths[i], block)
        self.net = _UNetLevel(c, widths[0], block, outermost=True, out_channels=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


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
                   mask_activation: str = "sigmoid", latent: int = LATENT) -> Networks:
    """Gx, Gm, Dx, Dm (and Gi, Di when `imputer`) for data of `shape` (C, H, W)."""
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

    nets = Networks(gx=gen(shape, nn.Sigmoid()), gm=gen(mask_shape, TemperatureSigmoid(temperature, mask_activation)),
                    dx=critic(shape), dm=critic(mask_shape))
    if imputer:
        nets.gi = FCImputerNet(shape) if h < 32 else UNetImputerNet(shape)
        nets.di = critic(shape)
    return nets
