"""Which shipped demo suits Inpaint's free-hand painting: each demo's imputer on brush-like strokes.

    python bench/inpaint_strokes.py [--examples 200] [--draws 8]

Strokes are smooth random paths about 4-5 pixels wide (what a brush of Inpaint's default size hides on a 28x28
digit), one per example of the demo's own mnist-5k digits. For each demo it prints the RMSE on the stroked
pixels (per draw, and of the mean of the draws), the share of stroked ink pixels (truth > 0.5) that a draw
fills as ink, the share of stroked pixels a draw puts on the right side of 0.5, and the spread of the draws.
A demo that fills every stroke with background scores a low RMSE (most stroked pixels are background) but
restores no ink: read the RMSE beside the ink share.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from misgan_core import open_run  # noqa: E402
from misgan_core.demo import demo_dirs  # noqa: E402


def stroke_mask(gen: torch.Generator, size: int = 28, radius: float = 2.2, points: int = 60) -> torch.Tensor:
    """A (1, size, size) mask, 0 on a smooth random path that starts near the left edge."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    x = 2 + 6 * torch.rand(1, generator=gen).item()
    y = 4 + 20 * torch.rand(1, generator=gen).item()
    angle = torch.rand(1, generator=gen).item() - 0.5
    m = torch.ones(1, size, size)
    for _ in range(points):
        angle += 0.5 * (torch.rand(1, generator=gen).item() - 0.5)
        x, y = x + 0.45 * math.cos(angle), y + 0.45 * math.sin(angle)
        m[0][(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = 0
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--draws", type=int, default=8)
    args = parser.parse_args()
    print("| demo | stroked share | RMSE per draw | RMSE of the mean | ink drawn as ink | right side of 0.5 | "
          "draw std |\n|---|---|---|---|---|---|---|")
    for folder in demo_dirs():
        run = open_run(folder, device="cpu")
        x = run.data.x[: args.examples]
        gen = torch.Generator().manual_seed(1)
        m = torch.stack([stroke_mask(gen) for _ in range(len(x))])
        draws = run.require_imputer().impute(x, m, draws=args.draws, generator=torch.Generator().manual_seed(0))
        missing = (m == 0).expand_as(x)
        ink = missing & (x > 0.5)
        rmse = ((draws - x.unsqueeze(0)) ** 2)[:, missing].mean().sqrt()
        rmse_mean = ((draws.mean(0) - x) ** 2)[missing].mean().sqrt()
        inked = (draws > 0.5)[:, ink].float().mean()
        right = ((draws > 0.5) == (x > 0.5).unsqueeze(0))[:, missing].float().mean()
        spread = draws.std(0)[missing].mean()
        print(f"| {folder.name} | {float((m == 0).float().mean()):.2f} | {rmse:.3f} | {rmse_mean:.3f} | "
              f"{inked:.3f} | {right:.3f} | {spread:.3f} |")


if __name__ == "__main__":
    main()
