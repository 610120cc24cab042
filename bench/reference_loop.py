"""A stand-in for the paper's released training loop, to measure speed ratios on the same machine.

It does the same work per step as misgan_core (same networks, losses, n_critic, batch 64) the way the released
code is structured: a per-example Dataset behind a DataLoader, separate critic passes on real and fake data,
the gradient penalty through autograd's double backward, generator forwards with a graph during critic
steps, critic weight gradients computed (and thrown away) during generator steps, separate backward passes
for Gx and Gm, and per-parameter Adam. Used by bench/train_speed.py --reference; not part of the engine.
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader, Dataset

from misgan_core import MisGANConfig
from misgan_core.models import build_networks


class _Pairs(Dataset):
    def __init__(self, x: torch.Tensor, m: torch.Tensor):
        self.x, self.m = x, m

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.m[i]


def _gp(critic, real, fake):
    eps = torch.rand(len(real), 1, 1, 1)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return 10 * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def reference_critic_steps_per_s(arch: str, batches: int, warmup: int = 3) -> float:
    config = MisGANConfig(arch=arch)
    data = config.data.load()
    nets = build_networks(arch, data.shape)
    gx, gm, dx, dm = nets.gx, nets.gm, nets.dx, nets.dm
    adam = lambda mod: torch.optim.Adam(mod.parameters(), lr=1e-4, betas=(0.5, 0.9), foreach=False)  # noqa: E731
    opt = {k: adam(v) for k, v in dict(gx=gx, gm=gm, dx=dx, dm=dm).items()}
    loader = DataLoader(_Pairs(data.x * data.m, data.m), batch_size=64, shuffle=True, drop_last=True)
    done, start = 0, None
    while True:
        for x, m in loader:
            if done == warmup:
                start = time.perf_counter()
            if done == warmup + batches:
                return batches / (time.perf_counter() - start)
            z, e = torch.randn(64, 128), torch.randn(64, 128)
            fake_x, fake_m = gx(z), gm(e)
            fake = (fake_x * fake_m).detach()
            real = x * m
            loss_dx = dx(fake).mean() - dx(real).mean() + _gp(dx, real, fake)
            loss_dm = dm(fake_m.detach()).mean() - dm(m).mean() + _gp(dm, m, fake_m.detach())
            for k in ("dx", "dm"):
                opt[k].zero_grad()
            loss_dx.backward()
            loss_dm.backward()
            opt["dx"].step()
            opt["dm"].step()
            done += 1
            if done % 5 == 0:
                z, e = torch.randn(64, 128), torch.randn(64, 128)
                fake_m = gm(e)
                loss_x = -dx(gx(z) * fake_m).mean()
                for o in opt.values():
                    o.zero_grad()
                # Two backward passes through Dx (one per generator), critic weight gradients included.
                gx_grads = torch.autograd.grad(loss_x, list(gx.parameters()), retain_graph=True)
                (-dm(fake_m).mean() + 0.2 * loss_x).backward()
                for p, g in zip(gx.parameters(), gx_grads, strict=True):
                    p.grad = g
                opt["gx"].step()
                opt["gm"].step()
