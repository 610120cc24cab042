"""Cost of the live FID during training, as a fraction of training time at the default cadence.

    python bench/live_fid_cost.py [--steps 40] [--threads 1] [--curve 0]

Times real FC-MisGAN generator steps (each with its n_critic critic steps) on mnist-5k with the engine's
trainer (misgan_core.MisGAN), then one live FID call (LIVE_FID_SAMPLES samples of Gx, LeNet features,
Fréchet distance against the reference statistics), and reports
    fraction = t_fid / (LIVE_FID_EVERY * t_step + t_fid).
If the trainer cannot be imported, a stand-in FC-MisGAN step (same networks, WGAN-GP on both critics)
is timed instead, and the output says so. --curve N also trains N generator steps and prints the live
FID points (they should fall as training goes on).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from misgan_core.data import load_complete  # noqa: E402
from misgan_core.metrics import LIVE_FID_EVERY, LIVE_FID_SAMPLES, LiveFID  # noqa: E402


def _mlp(sizes: list[int], out: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out is not None:
        layers.append(out)
    return nn.Sequential(*layers)


class StandIn:
    """FC-MisGAN's shapes and step structure (appendix D), for timing only when the trainer is absent."""

    def __init__(self, x: torch.Tensor, m: torch.Tensor, batch: int = 64, n_critic: int = 5) -> None:
        self.x, self.m, self.batch, self.n_critic = x.flatten(1), m.flatten(1), batch, n_critic
        self.gx = _mlp([128, 256, 512, 784], nn.Sigmoid())
        self.gm = _mlp([128, 256, 512, 784])
        self.dx = _mlp([784, 512, 256, 128, 1])
        self.dm = _mlp([784, 512, 256, 128, 1])
        adam = lambda p: torch.optim.Adam(p, lr=1e-4, betas=(0.5, 0.9))  # noqa: E731
        self.opt_g = adam([*self.gx.parameters(), *self.gm.parameters()])
        self.opt_d = adam([*self.dx.parameters(), *self.dm.parameters()])

    def _fake(self) -> tuple[torch.Tensor, torch.Tensor]:
        xg = self.gx(torch.randn(self.batch, 128))
        mg = torch.sigmoid(self.gm(torch.randn(self.batch, 128)) / 0.66)
        return xg * mg, mg

    @staticmethod
    def _gp(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        eps = torch.rand(len(real), 1)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
        return ((g.norm(dim=1) - 1) ** 2).mean()

    def step(self) -> None:
        for _ in range(self.n_critic):
            idx = torch.randint(0, len(self.x), (self.batch,))
            xr, mr = self.x[idx] * self.m[idx], self.m[idx]
            with torch.no_grad():
                xf, mf = self._fake()
            loss = (self.dx(xf).mean() - self.dx(xr).mean() + 10 * self._gp(self.dx, xr, xf)
                    + self.dm(mf).mean() - self.dm(mr).mean() + 10 * self._gp(self.dm, mr, mf))
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
        xf, mf = self._fake()
        lx, lm = -self.dx(xf).mean(), -self.dm(mf).mean()
        self.opt_g.zero_grad(set_to_none=True)
        (lx + lm + 0.2 * lx).backward()
        self.opt_g.step()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return self.gx(torch.randn(n, 128, generator=generator)).view(n, 1, 28, 28)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="generator steps to time (after 5 warm-up steps)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fid-calls", type=int, default=5)
    p.add_argument("--curve", type=int, default=0, help="also train N steps and print live FID points")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    try:
        from misgan_core import DataSpec, MisGAN, MisGANConfig

        gan = MisGAN(MisGANConfig(data=DataSpec(dataset="mnist-5k"), arch="fc", steps=args.steps, fid_every=0, seed=0,
                                  sample_every=10**9, log_every=10))
        workload = "misgan_core.MisGAN (FC, mnist-5k, square 14x14, batch 64, n_critic 5)"
        complete_x = gan.data.x

        def train(n: int) -> None:
            gan.train(n)

        def sample_fn(n: int, g: torch.Generator) -> torch.Tensor:
            return gan.sample(n, generator=g)
    except ImportError as err:
        data = load_complete("mnist-5k")
        m = torch.zeros_like(data.x)
        m[:, :, 7:21, 7:21] = 1
        stand_in = StandIn(data.x, m)
        workload = f"stand-in FC-MisGAN step (trainer not importable: {err})"
        complete_x = data.x

        def train(n: int) -> None:
            for _ in range(n):
                stand_in.step()

        sample_fn = stand_in.sample

    train(5)  # warm-up: allocator, first-call overheads
    t0 = time.perf_counter()
    train(args.steps)
    t_step = (time.perf_counter() - t0) / args.steps

    t0 = time.perf_counter()
    live = LiveFID("mnist-5k", complete_x)
    t_setup = time.perf_counter() - t0
    live(sample_fn)  # warm-up
    times, value = [], 0.0
    for _ in range(args.fid_calls):
        t0 = time.perf_counter()
        value = live(sample_fn)
        times.append(time.perf_counter() - t0)
    t_fid = statistics.median(times)
    between = LIVE_FID_EVERY * t_step
    print(f"workload        {workload}")
    print(f"threads         {torch.get_num_threads()}")
    print(f"generator step  {1000 * t_step:.1f} ms (incl. its critic steps; mean over {args.steps})")
    print(f"live FID        {1000 * t_fid:.1f} ms per call (median of {args.fid_calls}; "
          f"min {1000 * min(times):.1f}, max {1000 * max(times):.1f}); {LIVE_FID_SAMPLES} samples; "
          f"value {value:.2f} [{live.label}]")
    print(f"reference stats {1000 * t_setup:.1f} ms once per run (LiveFID construction)")
    print(f"cadence         every {LIVE_FID_EVERY} generator steps = {between:.2f} s of training")
    print(f"fraction        {100 * t_fid / (between + t_fid):.2f}% of training time")

    if args.curve:
        print(f"\nlive FID curve over {args.curve} more generator steps:")
        start = time.perf_counter()
        done = 0
        while done < args.curve:
            n = min(LIVE_FID_EVERY, args.curve - done)
            train(n)
            done += n
            print(f"  step {done + args.steps + 5:6d}  {time.perf_counter() - start:7.1f} s  "
                  f"{live.label} {live(sample_fn):8.2f}", flush=True)


if __name__ == "__main__":
    main()
