"""Does each speed path of the training step pay? Interleaved rounds of MisGAN training with every fast path
on, and with each one (or all) turned off, and optionally with the engine of another checkout (before/after a
change), each configuration in its own process, round after round so that the machine's load falls on all.

    python bench/speed_paths.py [--archs fc conv] [--imputer] [--threads 1] [--steps 60] [--rounds 3]
                                [--variants all plain explicit_critic_gradients lookahead channels_last]
                                [--code LABEL=PATH ...]

A variant names the speed path turned off (misgan_core/fast.py SpeedPaths); `all` is every path on, `plain`
every path off. `--code before=/path/to/checkout` times that checkout's engine with its own defaults. Prints
the median rate over rounds (critic steps/s, each round's median window) and its ratio to `all`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(code: Path, arch: str, threads: int, steps: int, imputer: bool, variant: str) -> float:
    """One configuration in a fresh process: its median critic steps per second."""
    paths = "" if variant == "all" else variant
    program = (f"import sys, json; sys.path.insert(0, {str(code)!r}); sys.path.insert(1, {str(ROOT / 'bench')!r}); "
               f"import train_speed; train_speed.ROOT = __import__('pathlib').Path({str(code)!r}); "
               f"print(json.dumps(train_speed.measure({arch!r}, {threads}, {steps}, {imputer}, 'fp32', {paths!r})))")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, cwd=code)
    return json.loads(out.stdout.strip().splitlines()[-1])["critic_steps_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["fc", "conv"])
    p.add_argument("--imputer", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=60, help="generator steps timed per run (conv: an eighth)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=["all", "plain", "explicit_critic_gradients", "lookahead",
                                                    "channels_last"])
    p.add_argument("--code", nargs="*", default=[], metavar="LABEL=PATH",
                   help="also time another checkout's engine (its default paths)")
    args = p.parse_args()
    configs = [(v, ROOT, v) for v in args.variants] + [
        (label, Path(path).resolve(), "all") for label, path in (c.split("=", 1) for c in args.code)]
    print(f"threads {args.threads}, imputer {args.imputer}, {args.rounds} interleaved rounds; critic steps/s "
          f"(median over rounds) and the ratio to 'all' (every speed path on)")
    for arch in args.archs:
        steps = args.steps if arch == "fc" else max(4, args.steps // 8)
        rates: dict[str, list[float]] = {label: [] for label, _, _ in configs}
        for _ in range(args.rounds):
            for label, code, variant in configs:
                rates[label].append(one(code, arch, args.threads, steps, args.imputer, variant))
        base = statistics.median(rates["all"]) if "all" in rates else None
        for label, values in rates.items():
            rate = statistics.median(values)
            ratio = f"{rate / base:6.3f}" if base else "-"
            spread = ", ".join(f"{v:.2f}" for v in values)
            print(f"{arch:5s} {label:28s} {rate:8.2f} critic/s  x{ratio}   rounds: {spread}", flush=True)


if __name__ == "__main__":
    main()
