"""Conv-MisGAN's training step against this CPU's own peak: the FLOPs of one critic step and one generator step,
the GFLOP/s they achieve, and the machine's matrix-product peak for the same dtype.

    python bench/conv_peak.py [--threads 1 2] [--precision fp32 bf16] [--steps 3] [--no-imputer]

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode over a whole training step (5 critic updates, the
look-ahead samples they train on, one generator update; it counts matrix products and convolutions, forward
and backward, at 2 FLOPs a multiply-add), and over one critic update and the generator update alone. The
peak is the fastest square matrix product (float32, or bfloat16 where `--precision bf16`), best of several;
with the quietest of `--steps` timed generator steps this gives the share of peak. Each (threads, precision)
runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(dtype_name: str, repeats: int = 8) -> float:
    """GFLOP/s of the fastest n x n x n product in `dtype_name`, n in 1024, 2048 and 4096, best of `repeats`
    each (the best run is the least disturbed one on a shared machine)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    rates = []
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        rates.append(2 * n ** 3 / best / 1e9)
    return max(rates)


def conv_gan(precision: str, imputer: bool):
    """A Conv-MisGAN (the paper's recipe) on mnist-5k, batch 64, warmed up."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from misgan_core import MisGAN, MisGANConfig

    config = MisGANConfig(arch="conv", batch_size=64, steps=10, imputer=imputer, fid_every=0, sample_every=10**9,
                          log_every=10**9, precision=precision, recipe="paper")
    gan = MisGAN(config)
    gan.train(2)
    return gan


def step_flops(gan) -> dict[str, float]:
    """GFLOP of one training step, of one critic update (its samples drawn beforehand), of the generator
    update, and of the look-ahead sampling (Gx, Gm and the imputer's forward passes for the step's critic
    updates): the rest of the step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        gan.train(1)
    total = counter.get_total_flops()
    x, m = gan._batch()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=gan.config.precision == "bf16"):
        gan._samples_ahead = [gan._critic_samples(len(x))]
        with FlopCounterMode(display=False) as counter:
            gan._critic_update(x, m)
        critic = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            gan._generator_update(x, m)
        generator = counter.get_total_flops()
    n_critic = gan.config.n_critic
    return {"step_gflop": total / 1e9, "critic_update_gflop": critic / 1e9, "generator_update_gflop": generator / 1e9,
            "sampling_gflop": (total - n_critic * critic - generator) / 1e9}


def measure(threads: int, precision: str, steps: int, imputer: bool) -> dict:
    import torch

    torch.set_num_threads(threads)
    peak = matmul_peak(precision)
    gan = conv_gan(precision, imputer)
    flops = step_flops(gan)
    stamps: list[float] = [time.perf_counter()]
    gan.train(steps, callback=lambda _: stamps.append(time.perf_counter()))
    per_step = min(b - a for a, b in zip(stamps, stamps[1:], strict=False))  # the quietest step
    achieved = flops["step_gflop"] / per_step
    return {"threads": threads, "precision": precision, "imputer": imputer, **flops, "seconds_per_step": per_step,
            "achieved_gflops": achieved, "peak_gflops": peak, "share_of_peak": achieved / peak}


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
    print("GFLOP of one step (5 critic updates, their look-ahead samples, one generator update); s/step: the "
          "quietest step; peak: the fastest matrix product in the same dtype and threads")
    print(f"{'threads':>7s} {'precision':>9s} {'GFLOP/step':>10s} {'critic upd':>10s} {'samples':>8s} {'gen upd':>8s} "
          f"{'s/step':>7s} {'GFLOP/s':>8s} {'peak':>7s} {'share':>6s}")
    for threads in args.threads:
        for precision in args.precision:
            cmd = [sys.executable, __file__, "--one", f"{threads}:{precision}", "--steps", str(args.steps)]
            if args.no_imputer:
                cmd.append("--no-imputer")
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            print(f"{threads:7d} {precision:>9s} {r['step_gflop']:10.1f} {r['critic_update_gflop']:10.2f} "
                  f"{r['sampling_gflop']:8.2f} {r['generator_update_gflop']:8.2f} {r['seconds_per_step']:7.2f} "
                  f"{r['achieved_gflops']:8.1f} {r['peak_gflops']:7.1f} {r['share_of_peak']:6.1%}", flush=True)


if __name__ == "__main__":
    main()
