"""Training speed of MisGAN on mnist-5k, batch 64: critic and generator steps per second.

    python bench/train_speed.py [--steps 100] [--archs fc conv] [--threads 1 2] [--imputer] [--reference]
                                [--precision fp32 bf16] [--paths all channels_last plain] [--rounds 3]

Each (arch, threads) runs in its own process (torch's thread count is process-wide). A critic step is one
batch (Dx and Dm updates); a generator step follows every n_critic = 5 critic steps. The reference figures
are the paper's released implementation measured on this 2-core machine with 2 threads (docs/performance.md); Conv runs
an eighth of --steps. The rates are per window of 10 generator steps: the median window and the best
(quietest) one. On a shared machine they differ; the released code's figures were taken on a quiet one.
`--precision bf16` times MisGANConfig.precision 'bf16' (bfloat16 products; fast only where the CPU has
AVX512-BF16 or AMX, which the table's last column says). `--paths` times the training step with speed paths
turned off (misgan_core/fast.py SpeedPaths), and `--rounds` repeats every row round after round, each in
its own process, so that the shared machine's load falls on all; the ratio column compares each row with the
first of its arch and thread count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_CRITIC_STEPS_PER_S = {"fc": 25.0, "conv": 1.35}
TARGET_RATIO = {"fc": 3.0, "conv": 1.4}
WINDOW = 10  # generator steps per timing window


def measure(arch: str, threads: int, steps: int, imputer: bool, precision: str = "fp32", paths: str = "") -> dict:
    """Steady-state rates: the time of each generator step is taken in the training callback, and the steps
    are cut into windows of `WINDOW`. The median window is the typical rate; the best window is the rate on a
    quiet machine (this one is shared, and other tenants' load comes and goes within seconds). `paths`: speed
    paths to turn off (bench/speed_paths.py), comma-separated SpeedPaths fields, or "plain" for all."""
    import torch

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from misgan_core import MisGAN, MisGANConfig

    torch.set_num_threads(threads)
    # The paper's recipe (no weight averages, eq. 12's imputer), as the released code trains; engines from
    # before recipes have those defaults.
    recipe = {"recipe": "paper"} if "recipe" in MisGANConfig.__dataclass_fields__ else {}
    config = MisGANConfig(arch=arch, batch_size=64, steps=steps, imputer=imputer, fid_every=0,
                          sample_every=10**9, log_every=10**9, precision=precision, **recipe)
    if paths:
        from misgan_core.fast import SpeedPaths

        off = SpeedPaths.plain() if paths == "plain" else SpeedPaths(**{name: False for name in paths.split(",")})
        gan = MisGAN(config, speed=off)
    else:
        gan = MisGAN(config)
    gan.train(max(2, steps // 10))  # warm-up: allocator, first-call dispatch
    stamps: list[float] = []
    gan.train(steps, callback=lambda _: stamps.append(time.perf_counter()))
    window = min(WINDOW, max(1, (len(stamps) - 1) // 3))
    rates = sorted(window / (stamps[i + window] - stamps[i]) for i in range(0, len(stamps) - window, window))
    median, best = rates[len(rates) // 2], rates[-1]
    return {"arch": arch, "threads": threads, "imputer": imputer, "precision": precision, "windows": len(rates),
            "generator_steps_per_s": median, "critic_steps_per_s": median * config.n_critic,
            "best_generator_steps_per_s": best, "best_critic_steps_per_s": best * config.n_critic,
            "seconds": stamps[-1] - stamps[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100, help="generator steps timed per configuration")
    p.add_argument("--archs", nargs="+", default=["fc", "conv"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--imputer", action="store_true")
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32"],
                   help="MisGANConfig.precision values to time (each its own row)")
    p.add_argument("--paths", nargs="+", default=["all"], metavar="VARIANT",
                   help="speed paths to time: 'all' (every path on), 'plain' (every path off), or a SpeedPaths "
                        "field (misgan_core/fast.py) turned off, e.g. channels_last (each its own row)")
    p.add_argument("--rounds", type=int, default=1,
                   help="interleaved rounds: every row runs once per round, and the median over rounds counts")
    p.add_argument("--reference", action="store_true",
                   help="also time bench/reference_loop.py (the released code's structure) in the same conditions")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        arch, threads, kind, *rest = args.one.split(":")
        if kind == "reference":
            import torch

            sys.path.insert(0, str(ROOT))
            from bench.reference_loop import reference_critic_steps_per_s

            torch.set_num_threads(int(threads))
            rate = reference_critic_steps_per_s(arch, args.steps * 5)
            print(json.dumps({"critic_steps_per_s": rate, "generator_steps_per_s": rate / 5}))
        else:
            print(json.dumps(measure(arch, int(threads), args.steps, args.imputer, *rest)))
        return
    import torch

    sys.path.insert(0, str(ROOT))
    from misgan_core.device import native_bf16

    native = "yes" if native_bf16(torch.device("cpu")) else "no"
    print(f"critic/s and gen/s: median window (median over {args.rounds} interleaved round(s)); best: the "
          f"quietest window (the issue's figure is a quiet machine's); ratio: to the first row of its arch and "
          f"threads")
    print(f"{'arch':5s} {'threads':>7s} {'precision':>9s} {'paths':>22s} {'critic/s':>9s} {'gen/s':>7s} "
          f"{'best critic/s':>14s} {'ratio':>6s} {'vs issue figure':>16s} {'vs reference here':>18s} "
          f"{'target':>7s} {'native bf16':>11s}")
    rows = [(precision, variant) for precision in args.precision for variant in args.paths]
    for arch in args.archs:
        for threads in args.threads:
            steps = args.steps if arch == "fc" else max(4, args.steps // 8)

            def run(kind: str, arch: str = arch, threads: int = threads, steps: int = steps) -> dict:
                cmd = [sys.executable, __file__, "--one", f"{arch}:{threads}:{kind}", "--steps", str(steps)]
                if args.imputer and kind.startswith("ours"):
                    cmd.append("--imputer")
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                return json.loads(out.stdout.strip().splitlines()[-1])

            refs: list[float] = []
            results: dict[tuple[str, str], list[dict]] = {row: [] for row in rows}
            for _ in range(args.rounds):  # every configuration once per round, so load falls on all alike
                if args.reference:
                    refs.append(run("reference")["critic_steps_per_s"])
                for precision, variant in rows:
                    paths = "" if variant == "all" else variant
                    results[(precision, variant)].append(run(f"ours:{precision}:{paths}"))
            ref = statistics.median(refs) if refs else None
            first = None
            for (precision, variant), rs in results.items():
                rate = statistics.median(r["critic_steps_per_s"] for r in rs)
                best = max(r["best_critic_steps_per_s"] for r in rs)
                first = first or rate
                here = f"{rate / ref:17.2f}x" if ref else f"{'-':>18s}"
                print(f"{arch:5s} {threads:7d} {precision:>9s} {variant:>22s} {rate:9.2f} {rate / 5:7.2f} "
                      f"{best:14.2f} {rate / first:6.3f} {rate / REFERENCE_CRITIC_STEPS_PER_S[arch]:15.2f}x "
                      f"{here} {TARGET_RATIO[arch]:6.1f}x {native:>11s}", flush=True)


if __name__ == "__main__":
    main()
