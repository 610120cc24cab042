"""The training step's speed paths, each beside the plain version the tests compare it with.

MisGAN's step (misgan.py) calls what is here and does not know which version runs:
- `critic_loss`: the WGAN-GP critic loss with its gradients written out (critic_gradients.py), or autograd's
  double backward;
- look-ahead sampling: the critic steps up to the next generator step draw their Gx and Gm samples (and the
  imputations of their minibatches) in one forward pass, or one step at a time;
- channels-last: Conv-MisGAN's networks in the channels-last memory format (the same weights in another
  layout; the convolutions' activations follow it), or in the default contiguous format;
- `RankNoise`: the training noise, drawn for the global batch and sliced for this process under torchrun (so
  a run on N processes draws what one process would), or drawn directly in one process.
`SpeedPaths()` turns every fast path on; `SpeedPaths.plain()` turns them all off. The measurements that keep
each one are in docs/performance.md (`bench/speed_paths.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .critic_gradients import critic_loss as explicit_critic_loss
from .critic_gradients import gradient_penalty_autograd


@dataclass(frozen=True)
class SpeedPaths:
    explicit_critic_gradients: bool = True
    lookahead: bool = True
    channels_last: bool = True

    @classmethod
    def plain(cls) -> SpeedPaths:
        return cls(explicit_critic_gradients=False, lookahead=False, channels_last=False)

    def critic_loss(self, critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                    gp_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_hat)|| - 1)^2] and the Wasserstein estimate
        E[D(real)] - E[D(fake)] (Gulrajani et al. 2017)."""
        if self.explicit_critic_gradients:
            return explicit_critic_loss(critic, real, fake, eps, gp_weight)
        d_real, d_fake = _wide(critic(real)).mean(), _wide(critic(fake)).mean()
        penalty = _wide(gradient_penalty_autograd(critic, real, fake, eps, gp_weight))
        return d_fake - d_real + penalty, d_real - d_fake

    def lookahead_steps(self, n_critic: int, batches: int, batch_norm: bool) -> int:
        """How many critic steps' samples to draw at once: up to the next generator step, or one. Not with batch
        norm (DCGAN, the U-Net imputer), whose statistics are per minibatch."""
        if not self.lookahead or batch_norm:
            return 1
        return n_critic - batches % n_critic


def _wide(t: torch.Tensor) -> torch.Tensor:
    """t in float32 where autocast made it bfloat16 (the loss is summed in float32, as on the fast path)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class RankNoise:
    """The run's training noise (one seeded generator on the device), for this process's rows.

    Every draw is made for the global batch and each process keeps its part of every minibatch, so N
    processes draw exactly what one process would (distributed.py). In one process it is the plain draw."""

    def __init__(self, generator: torch.Generator, device: torch.device, latent: int, rank: int = 0,
                 world: int = 1, rows_per_rank: int = 1):
        self.generator, self.device, self.latent = generator, device, latent
        self.rank, self.world, self.b = rank, world, rows_per_rank

    def rows(self, draw: Callable[[int], torch.Tensor], n: int) -> torch.Tensor:
        """This rank's n rows of `draw(n * world)`: n / b minibatches of b rows, each rank keeping its part."""
        if self.world == 1:
            return draw(n)
        k, b = n // self.b, self.b
        full = draw(n * self.world)
        return full.view(k, self.world * b, *full.shape[1:])[:, self.rank * b:(self.rank + 1) * b].reshape(
            n, *full.shape[1:])

    def z(self, n: int) -> torch.Tensor:
        return self.rows(lambda k: torch.randn(k, self.latent, generator=self.generator, device=self.device), n)

    def uniform(self, n: int, *shape: int) -> torch.Tensor:
        return self.rows(lambda k: torch.rand(k, *shape, generator=self.generator, device=self.device), n)
