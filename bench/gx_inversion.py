"""How good are the completions that a MisGAN run's Gx already contains? A diagnostic for
docs/reproduction.md: impute each held-out example with Gx(z*), z* fitted to its observed pixels by
gradient descent (best of R restarts), and score it like any imputer. Against the run's own imputer Gi at the
same step this separates "Gx cannot complete these digits" from "Gi has not learned what Gx knows".

    python bench/gx_inversion.py RUN [--split test] [--restarts 8] [--iters 300]

Prints one JSON line per imputer: Gi (the run's own) and Gx inversion, with imputation FID and RMSE, and for
a run with weight averages (--ema) the same for its live weights (what training without --ema would give).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from misgan_core import MisGAN  # noqa: E402
from misgan_core.catalog import open_run  # noqa: E402
from misgan_core.evaluation import evaluate_imputer, evaluate_opened, evaluation_data  # noqa: E402
from misgan_core.imputers import paste_observed  # noqa: E402


class GxInversion:
    """Completes (x, m) with Gx(z*), z* = argmin_z ||(Gx(z) - x) * m||^2 + |z|^2 / (2 D) over R restarts."""

    def __init__(self, gan: MisGAN, restarts: int, iters: int, lr: float = 0.05):
        self.gan, self.restarts, self.iters, self.lr = gan, restarts, iters, lr
        self.name = f"Gx inversion ({restarts} restarts x {iters} Adam steps)"

    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        gx = self.gan.inference_net("gx").eval()
        for p in gx.parameters():
            p.requires_grad_(False)
        gen = generator or torch.Generator().manual_seed(0)
        n, r, d = len(x), self.restarts, self.gan.config.latent
        out = []
        for _ in range(draws):
            z = torch.randn(n * r, d, generator=gen).requires_grad_(True)
            xs, ms = x.repeat_interleave(r, 0), m.repeat_interleave(r, 0)
            opt = torch.optim.Adam([z], lr=self.lr)
            with torch.enable_grad():
                for _ in range(self.iters):
                    err = ((gx(z) - xs) * ms).pow(2).flatten(1).sum(1)
                    loss = err.sum() + 0.5 * z.pow(2).sum() / d
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                fits = gx(z)
                err = ((fits - xs) * ms).pow(2).flatten(1).sum(1).view(n, r)
                best = fits.view(n, r, *x.shape[1:])[torch.arange(n), err.argmin(1)]
            out.append(paste_observed(x, m, best))
        return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    opened = open_run(args.run)
    gan = opened.model
    _, data = evaluation_data(opened, args.split)
    averaged = dict(gan.averaged)
    for weights in (["averaged", "live"] if averaged else ["live"]):
        gan.averaged = averaged if weights == "averaged" else {}
        full = evaluate_opened(opened, split=args.split)
        inverted = evaluate_imputer(GxInversion(gan, args.restarts, args.iters), data)
        for imputer, result in (("Gi", full), (f"Gx inversion ({args.restarts} x {args.iters})", inverted)):
            print(json.dumps({"run": args.run, "step": gan.step, "split": args.split, "weights": weights,
                              "imputer": imputer, "imputation_fid": round(result["imputation_fid"], 2),
                              "generation_fid": None if imputer != "Gi" else round(result["fid"], 2),
                              "rmse": round(result["rmse"], 4), "label": result["label"]}), flush=True)


if __name__ == "__main__":
    main()
