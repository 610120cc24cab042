"""Data-parallel MisGAN on this machine: N processes x T threads (torchrun, gloo) against 1 process x N*T threads.

    python bench/ddp_speed.py [--steps 150] [--procs 2] [--threads 1] [--imputer] [--rounds 2]

Each configuration trains FC-MisGAN on mnist-5k (global batch 64) in a fresh run folder; the rate is read from
the run's own log (training time at each log line, every 10 generator steps), over the steps after the first
30. Rounds alternate the two configurations so slow periods of a shared host hit both. On a GPU machine,
`--device cuda --procs K` compares K GPUs (NCCL) with one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rate(run: Path, skip: int = 30) -> float:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    timed = [(r["step"], r["time"]) for r in lines if "loss_dx" in r and r["step"] >= skip]
    (s0, t0), (s1, t1) = timed[0], timed[-1]
    return 5 * (s1 - s0) / (t1 - t0)  # critic steps per second


def train(out: Path, procs: int, threads: int, args: argparse.Namespace) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    cmd = ["-m", "misgan_core", "train", "--dataset", "mnist-5k", "--steps", str(args.steps), "--fid-every", "0",
           "--sample-every", "0", "--device", args.device, "--out", str(out)]
    if args.imputer:
        cmd.append("--imputer")
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *cmd]
    else:
        cmd = [sys.executable, *cmd, "--threads", str(threads)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return rate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--imputer", action="store_true")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    print(f"{'round':>5s} {args.procs} procs x {args.threads} thr   1 proc x {args.procs * args.threads} thr   "
          f"ratio   (critic steps/s)")
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(1, args.rounds + 1):
            ddp = train(Path(tmp) / f"ddp{rnd}", args.procs, args.threads, args)
            one = train(Path(tmp) / f"one{rnd}", 1, args.procs * args.threads, args)
            print(f"{rnd:5d} {ddp:20.1f} {one:20.1f} {ddp / one:7.2f}x", flush=True)


if __name__ == "__main__":
    main()
