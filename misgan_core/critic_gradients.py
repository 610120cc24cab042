"""The WGAN-GP critic loss with its gradients written out, for the piecewise-linear critics of models.py.

A critic D is affine layers with (leaky) ReLU in between, so d D(x) / d x = W_1^T S_1 W_2^T S_2 ... W_K^T with
S_k the activation slopes, which are constant almost everywhere. `input_gradient` builds that product from the
slopes alone: the gradient penalty then needs only a first-order backward instead of autograd's double
backward through the whole critic, with the same result (the second derivative of (leaky) ReLU is 0 almost
everywhere). For an all-Linear critic (FC-MisGAN) `_MLPCriticLoss` goes further and writes out the weight
gradients too. Tests compare every path with autograd's double backward (`gradient_penalty_autograd`).

The losses (Gulrajani et al. 2017; paper, eq. 4-5 with f_tau):
  critic:  E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_hat)||_2 - 1)^2],  x_hat = eps*real + (1-eps)*fake
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import Critic


@torch.no_grad()
def preactivations(critic: Critic, x: torch.Tensor, first: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Pre-activations of every hidden layer at x, without a graph. `first`, when given, is the first layer's
    pre-activation already computed elsewhere (see `critic_loss`)."""
    out = []
    h = x
    for i, layer in enumerate(critic.layers[:-1]):
        if i == critic.flatten_at:
            h = h.flatten(1)
        u = first if i == 0 and first is not None else layer(h)
        out.append(u)
        h = critic.act(u)
    return out


def _input_size(critic: Critic, i: int, x: torch.Tensor) -> tuple[int, int]:
    """Spatial size of layer i's input for an input x."""
    size = tuple(x.shape[-2:])
    for layer in critic.layers[:i]:
        if isinstance(layer, nn.Conv2d):
            k, st, p = layer.kernel_size, layer.stride, layer.padding
            size = tuple((size[d] + 2 * p[d] - k[d]) // st[d] + 1 for d in range(2))
    return size  # type: ignore[return-value]


def input_gradient(critic: Critic, x: torch.Tensor, preacts: list[torch.Tensor] | None = None) -> torch.Tensor:
    """d D(x) / d x for every row of x, differentiable with respect to the weights (first order)."""
    preacts = preactivations(critic, x) if preacts is None else preacts
    last = critic.layers[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError("the critic's last layer must be Linear")
    g = last.weight.expand(x.shape[0], -1)
    for i in range(len(critic.layers) - 2, -1, -1):
        u = preacts[i]
        # The activation's backward at the stored pre-activation: one fused op, differentiable in g.
        g = g.reshape(u.shape)
        if critic.negative_slope:
            g = torch.ops.aten.leaky_relu_backward(g, u, critic.negative_slope, False)
        else:
            g = torch.ops.aten.threshold_backward(g, u, 0)
        layer = critic.layers[i]
        if isinstance(layer, nn.Linear):
            g = g @ layer.weight
        else:
            in_size = _input_size(critic, i, x)
            out_size = g.shape[-2:]
            k, st, p = layer.kernel_size, layer.stride, layer.padding
            op = tuple(in_size[d] - ((out_size[d] - 1) * st[d] - 2 * p[d] + k[d]) for d in range(2))
            g = F.conv_transpose2d(g, layer.weight, stride=st, padding=p, output_padding=op)
    return g.reshape(x.shape)


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                     weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP: weight * E[(||grad D(x_hat)||_2 - 1)^2] at x_hat = eps * real + (1 - eps) * fake, through the
    explicit input gradient (first-order backward)."""
    x_hat = eps * real + (1 - eps) * fake
    g = input_gradient(critic, x_hat).flatten(1)
    return weight * ((g.norm(2, dim=1) - 1) ** 2).mean()


def gradient_penalty_autograd(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                              weight: float = 10.0) -> torch.Tensor:
    """The textbook form through autograd's double backward; the reference the tests compare against."""
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    out = critic(x_hat)
    (g,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return weight * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def _wide(t: torch.Tensor) -> torch.Tensor:
    """t in float32 when autocast made it bfloat16 or float16 (float32 and float64 pass unchanged)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def critic_loss(critic: Critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                gp_weight: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's WGAN-GP loss; returns (loss, E[D(real)] - E[D(fake)], the Wasserstein estimate).

    Real and fake rows share one forward pass (there is no batch norm). The first layer is affine, so its
    pre-activation at x_hat is eps * u(real) + (1 - eps) * u(fake): the interpolates skip the first (largest)
    layer of their forward pass. All-Linear critics whose inputs need no gradient take `_MLPCriticLoss`.
    """
    if critic.is_mlp and not (torch.is_grad_enabled() and (real.requires_grad or fake.requires_grad)):
        device = real.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        return _MLPCriticLoss.apply(real, fake, eps, gp_weight, critic.negative_slope, dtype, *critic.parameters())
    n = len(real)
    h = torch.cat([real, fake])
    last = len(critic.layers) - 1
    first_u = None
    for i, layer in enumerate(critic.layers):
        if i == critic.flatten_at:
            h = h.flatten(1)
        h = layer(h)
        if i == 0:
            first_u = h
        if i < last:
            h = critic.act(h)
    out = _wide(h.view(-1))  # the scores, the norms and the loss in float32 under autocast too
    with torch.no_grad():
        w = eps.reshape((n,) + (1,) * (first_u.dim() - 1)).to(first_u.dtype)  # bfloat16 under autocast
        u_hat = torch.lerp(first_u[n:], first_u[:n], w)  # fake + w * (real - fake)
    x_hat = eps * real + (1 - eps) * fake
    g = _wide(input_gradient(critic, x_hat, preactivations(critic, x_hat, first=u_hat)).flatten(1))
    penalty = gp_weight * ((g.norm(2, dim=1) - 1) ** 2).mean()
    d_real, d_fake = out[:n].mean(), out[n:].mean()
    return d_fake - d_real + penalty, d_real - d_fake


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
    as `critic_loss`'s general path; tests compare both with autograd's double backward).

    Rows are stacked [real; fake; interpolates]. With S_k the activation slopes at layer k and c the loss's
    weight on each row's output (-1/n real, +1/n fake, 1 for the interpolates' input gradient):
      G_top = S_top * (c w_last),  G_{k-1} = S_{k-1} * (G_k W_k)
    For real and fake rows G_k is dLoss/dpre-activation; for interpolate rows it is the input gradient's partial
    product, and the input gradient is G_0 W_0. The penalty's backward runs the chain the other way. Each
    weight's two gradient terms (from the loss and from the penalty) share one matrix product over all rows:
    half as many matrix products as autograd's, each larger, which is what a CPU runs fastest.

    Under autocast (MisGANConfig.precision 'bf16') the products run in bfloat16 with float32 accumulation, as
    autocast would run them: the weights are cast once per call, the gradient norms, the penalty and the
    returned weight gradients are float32 (Adam keeps float32 weights).
    """

    @staticmethod
    def forward(ctx, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, gp_weight: float,  # type: ignore[override]
                negative_slope: float, dtype: torch.dtype | None, *params: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(real.device.type, enabled=False):  # the casts are explicit here
            return _MLPCriticLoss._forward(ctx, real, fake, eps, gp_weight, negative_slope,
                                           dtype or params[0].dtype, params)

    @staticmethod
    def _forward(ctx, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, gp_weight: float,
                 negative_slope: float, dtype: torch.dtype, params: tuple[torch.Tensor, ...]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        master = params[0].dtype
        params = tuple(p.to(dtype) for p in params)
        weights, biases = params[0::2], params[1::2]
        n, last = len(real), len(weights) - 1
        # Each stacked buffer's interpolate rows are overwritten with the penalty's backward signal once the
        # forward pass is done with them, so every weight gradient is one product over the whole buffer.
        x = real.new_empty((3 * n, weights[0].shape[1]), dtype=dtype)
        x[:n], x[n:2 * n] = real.flatten(1), fake.flatten(1)
        u = x.new_empty((3 * n, weights[0].shape[0]))
        torch.addmm(biases[0], x[:2 * n], weights[0].t(), out=u[:2 * n])
        # The first layer is affine: the interpolates' pre-activation is a lerp of the real and fake ones.
        torch.lerp(u[n:2 * n], u[:n], eps.reshape(n, 1).to(dtype), out=u[2 * n:])
        pre, hidden = [u], []
        for k in range(1, last):
            h = F.leaky_relu(u, negative_slope) if negative_slope else F.relu(u)
            hidden.append(h)
            u = torch.addmm(biases[k], h, weights[k].t())
            pre.append(u)
        h = F.leaky_relu(u, negative_slope) if negative_slope else F.relu(u)
        hidden.append(h)
        out = torch.addmm(biases[last], h[:2 * n], weights[last].t()).view(-1).to(master)
        d_real, d_fake = out[:n].mean(), out[n:].mean()

        c = u.new_empty((3 * n, 1))
        c[:n], c[n:2 * n], c[2 * n:] = -1.0 / n, 1.0 / n, 1.0
        g = _act_backward(c * weights[last], pre[last - 1], negative_slope)
        chain = [g]
        for k in range(last - 1, 0, -1):
            g = _act_backward(g @ weights[k], pre[k - 1], negative_slope)
            chain.append(g)
        chain.reverse()  # chain[k] pairs with weights[k]
        grad_x = (chain[0][2 * n:] @ weights[0]).to(master)
        norm = grad_x.norm(2, dim=1, keepdim=True)
        penalty = gp_weight * ((norm - 1) ** 2).mean()
        # d penalty / d grad_x; a zero-norm row has a zero gradient, as autograd's norm backward gives.
        scale = torch.where(norm > 0, (norm - 1) / norm, torch.zeros((), dtype=norm.dtype, device=norm.device))
        if dtype == master:
            torch.mul(grad_x, (2.0 * gp_weight / n) * scale, out=x[2 * n:])
        else:
            x[2 * n:] = grad_x * ((2.0 * gp_weight / n) * scale)

        grads: list[torch.Tensor] = [torch.empty(0)] * len(params)
        inputs = x
        for k in range(last):
            grads[2 * k] = chain[k].t() @ inputs
            grads[2 * k + 1] = chain[k][:2 * n].sum(0)  # biases move only the loss, not the input gradient
            _act_backward(inputs[2 * n:] @ weights[k].t(), pre[k][2 * n:], negative_slope, out=hidden[k][2 * n:])
            inputs = hidden[k]
        grads[2 * last] = c.t() @ inputs
        grads[2 * last + 1] = c[:2 * n].sum(0)
        ctx.grads = grads if dtype == master else [g.to(master) for g in grads]
        w = (d_real - d_fake).detach()
        ctx.mark_non_differentiable(w)
        return d_fake - d_real + penalty, w

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_w: torch.Tensor):  # type: ignore[override]
        grads, ctx.grads = ctx.grads, None
        if grad_loss.device.type != "cpu" or grad_loss.item() != 1.0:  # 1 is the usual case; skip that pass
            grads = [g.mul_(grad_loss) for g in grads]
        return (None, None, None, None, None, None, *grads)
