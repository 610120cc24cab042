"""Conv-MisGAN's training step against this CPU's own peak: the FLOPs of one critic step and one generator step,
the GFLOP/s they achieve, and the machine's matrix-product peak for the same dtype.

    python bench/conv_peak.py [--threads 1 2] [--precision fp32 bf16] [--steps 3] [--no-imputer]

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode over a whole training step (5 critic updates and
one generator update; it counts matrix products and convolutions, forward and backward, at 2 FLOPs a
multiply-add); the critic step's share is the count of one critic update alone. The peak is a 4096^3 matrix
product (float32, or bfloat16 where `--precision bf16`), best of a few; with the step's rate over `--steps`
timed generator steps this gives the share of peak. Each thread count runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(dtype_name: str, n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of the best of `repeats` n x n x n products in `dtype_name`."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def conv_gan(precision: str, imputer: bool, paths: str = ""):
    """A Conv-MisGAN (the paper's recipe) on mnist-5k, batch 64, warmed up."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from misgan_core import MisGAN, MisGANConfig
    from misgan_core.fast import SpeedPaths

    config = MisGANConfig(arch="conv", batch_size=64, steps=10, imputer=imputer, fid_every=0, sample_every=10**9,
                          log_every=10**9, precision=precision, recipe="paper")
    speed = None
    if paths:
        speed = SpeedPaths.plain() if paths == "plain" else SpeedPaths(**{k: False for k in paths.split(",")})
    gan = MisGAN(config, speed=speed)
    gan.train(2)
    return gan


def step_flops(gan) -> tuple[int, int]:
    """(FLOPs of one training step, FLOPs of its last critic update alone)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        gan.train(1)
    total = counter.get_total_flops()
    import torch

    x, m = gan._batch()
    gan._samples_ahead = []
    with FlopCounterMode(display=False) as counter, torch.autocast(
            "cpu", dtype=torch.bfloat16, enabled=gan.config.precision == "bf16"):
        gan._critic_update(x, m)
    return total, counter.get_total_flops()


def measure(threads: int, precision: str, steps: int, imputer: bool, paths: str = "") -> dict:
    import torch

    torch.set_num_threads(threads)
    peak = matmul_peak(precision)
    gan = conv_gan(precision, imputer, paths)
    total, critic = step_flops(gan)
    stamps: list[float] = [time.perf_counter()]
    gan.train(steps, callback=lambda _: stamps.append(time.perf_counter()))
    per_step = min(b - a for a, b in zip(stamps, stamps[1:], strict=False))  # the quietest step
    achieved = total / per_step / 1e9
    return {"threads": threads, "precision": precision, "imputer": imputer, "step_gflop": total / 1e9,
            "critic_update_gflop": critic / 1e9, "generator_update_gflop": (total - 5 * critic) / 1e9,
            "seconds_per_step": per_step, "achieved_gflops": achieved, "peak_gflops": peak,
            "share_of_peak": achieved / peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32"])
    p.add_argument("--steps", type=int, default=3, help="generator steps timed (the quietest one counts)")
    p.add_argument("--no-imputer", action="store_true")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        threads, precision = args.one.split(":")
        print(json.dumps(measure(int(threads), precision, args.steps, not args.no_imputer)))
        return
    print(f"{'threads':>7s} {'precision':>9s} {'GFLOP/step':>10s} {'critic upd':>10s} {'gen upd':>8s} "
          f"{'s/step':>7s} {'GFLOP/s':>8s} {'peak':>7s} {'share':>6s}")
    for threads in args.threads:
        for precision in args.precision:
            cmd = [sys.executable, __file__, "--one", f"{threads}:{precision}", "--steps", str(args.steps)]
            if args.no_imputer:
                cmd.append("--no-imputer")
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            print(f"{threads:7d} {precision:>9s} {r['step_gflop']:10.1f} {r['critic_update_gflop']:10.2f} "
                  f"{r['generator_update_gflop']:8.2f} {r['seconds_per_step']:7.2f} {r['achieved_gflops']:8.1f} "
                  f"{r['peak_gflops']:7.1f} {r['share_of_peak']:6.1%}", flush=True)


if __name__ == "__main__":
    main()
