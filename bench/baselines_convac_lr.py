"""How fast ConvAC's likelihood improves with Adam's learning rate on mnist-5k (square 14x14 observed).

Usage: python -m bench.baselines_convac_lr [--steps 300] [--lrs 1e-4,1e-3,3e-3,1e-2] [--threads 1]
Prints held-out nats per observed pixel (lower is better) at a few checkpoints per learning rate.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from misgan_core.baselines import ConvAC, ConvACConfig, fit_baseline
from misgan_core.data import load_complete
from misgan_core.masks import make_incomplete, make_mask_process


def _evaluate(model: ConvAC, x: torch.Tensor, m: torch.Tensor, observed: float, marks: set[int],
              curve: list[tuple[int, float]], step: int, _: dict) -> None:
    if step in marks:
        with torch.no_grad():
            curve.append((step, -float(model.log_prob(x, m).sum()) / observed))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lrs", default="1e-4,1e-3,3e-3,1e-2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = make_incomplete(load_complete("mnist-5k"), make_mask_process("square", 14), seed=0)
    train_x, train_m = data.x[:4000], data.m[:4000]
    test_x, test_m = data.x[4000:], data.m[4000:]
    observed = float(test_m.sum())
    marks = {args.steps // 4, args.steps // 2, args.steps}
    for lr in (float(s) for s in args.lrs.split(",")):
        torch.manual_seed(0)
        model = ConvAC(tuple(data.shape), ConvACConfig(lr=lr))
        curve: list[tuple[int, float]] = []
        start = time.time()
        fit_baseline(model, train_x, train_m, args.steps, 128, seed=0,
                     on_step=functools.partial(_evaluate, model, test_x, test_m, observed, marks, curve))
        text = "  ".join(f"step {s}: {v:.4f}" for s, v in curve)
        print(f"lr {lr:g}: {text}  ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
