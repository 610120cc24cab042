"""MisGAN with the imputer: this project's training rate against the paper's released code, interleaved.

    python bench/released_imputer_speed.py --released PATH [--rounds 3] [--epochs 4] [--threads 1 2]
                                           [--precision fp32 bf16]

PATH is a checkout of github.com/steveli/misgan (it imports seaborn and matplotlib: `pip install seaborn`).
Its `mnist_misgan_impute.py` runs unchanged, with the FC
generators and critics (`--generator fc --critic fc`, its defaults otherwise), on mnist-5k written out in
torchvision's MNIST layout (5,000 digits, so 78 batches of 64 per epoch). Its rate is read from the
`log/epoch-time.txt` it writes: 78 critic steps per epoch, the first epoch dropped as warm-up. Its epoch time
includes its own per-epoch work (three loss plots at 300 dpi and a checkpoint), which is part of running it
unchanged; the `compute-only` column subtracts nothing but is the best epoch, for a quieter comparison.

This project's rate comes from bench/train_speed.py's measurement (median window of 10 generator steps, FC,
`--imputer`), once per `--precision` (MisGANConfig.precision; the released code is float32 throughout).
Each round runs the released code, then ours, per thread count: the ratio is per round, so slow periods of
a shared host hit both sides alike.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCHES_PER_EPOCH = 5000 // 64  # drop_last=True in the released DataLoader
TARGET = 3.0


def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (the MNIST format), uncompressed as torchvision keeps it under raw/."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def mnist_folder(root: Path) -> None:
    """root/mnist-data/MNIST/raw/*-ubyte from mnist-5k: the layout torchvision.datasets.MNIST finds without
    downloading (the 500 held-out digits stand in for t10k, which the released code never reads)."""
    sys.path.insert(0, str(ROOT))
    from misgan_core.data import load_complete

    raw = root / "mnist-data" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, split in (("train", "all"), ("t10k", "test")):
        data = load_complete("mnist-5k", split=split)
        images = np.rint(data.x.numpy()[:, 0] * 255).astype(np.uint8)
        labels = np.zeros(len(images), dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
            with gzip.open(raw / f"{name}.gz", "wb") as f:
                f.write((raw / name).read_bytes())


def released_rate(released: Path, work: Path, threads: int, epochs: int) -> dict:
    src = released / "src-torch1.6" if (released / "src-torch1.6").is_dir() else released / "src"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MPLBACKEND": "Agg"}
    before = set(work.glob("results/mnist/*"))
    cmd = [sys.executable, str(src / "mnist_misgan_impute.py"), "--generator", "fc", "--critic", "fc",
           "--epoch", str(epochs)]
    out = subprocess.run(cmd, cwd=work, env={**env, "PYTHONPATH": str(src)}, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the released code failed:\n{out.stderr[-2000:]}")
    (run,) = set(work.glob("results/mnist/*")) - before
    times = [float(line.split()[1]) for line in (run / "log" / "epoch-time.txt").read_text().splitlines()]
    steady = times[1:] or times
    return {"critic_steps_per_s": BATCHES_PER_EPOCH / statistics.median(steady),
            "best_critic_steps_per_s": BATCHES_PER_EPOCH / min(steady)}


def our_rate(threads: int, steps: int, precision: str = "fp32") -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "train_speed.py"), "--one", f"fc:{threads}:ours:{precision}", "--steps",
           str(steps), "--imputer"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--released", type=Path, required=True, help="a checkout of github.com/steveli/misgan")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4, help="released-code epochs per round (the first is warm-up)")
    p.add_argument("--steps", type=int, default=100, help="our generator steps per round")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32"],
                   help="our MisGANConfig.precision values, each timed against the same released-code run")
    args = p.parse_args()
    if not (args.released / "src" / "mnist_misgan_impute.py").is_file():
        raise SystemExit(f"{args.released} is not a checkout of steveli/misgan (no src/mnist_misgan_impute.py); "
                         f"git clone https://github.com/steveli/misgan")
    with tempfile.TemporaryDirectory(prefix="released-misgan-") as tmp:
        work = Path(tmp)
        mnist_folder(work)
        print(f"{'round':>5s} {'threads':>7s} {'precision':>9s} {'released critic/s':>18s} {'ours critic/s':>14s} "
              f"{'ratio':>7s} {'best/best':>10s} {'target':>7s}")
        ratios: dict[tuple[int, str], list[float]] = {(t, pr): [] for t in args.threads for pr in args.precision}
        for rnd in range(1, args.rounds + 1):
            for threads in args.threads:
                ref = released_rate(args.released, work, threads, args.epochs)
                for precision in args.precision:
                    ours = our_rate(threads, args.steps, precision)
                    ratio = ours["critic_steps_per_s"] / ref["critic_steps_per_s"]
                    best = ours["best_critic_steps_per_s"] / ref["best_critic_steps_per_s"]
                    ratios[threads, precision].append(ratio)
                    print(f"{rnd:5d} {threads:7d} {precision:>9s} {ref['critic_steps_per_s']:18.2f} "
                          f"{ours['critic_steps_per_s']:14.2f} {ratio:6.2f}x {best:9.2f}x {TARGET:6.1f}x", flush=True)
        for (threads, precision), values in ratios.items():
            print(f"threads {threads}, {precision}: median ratio {statistics.median(values):.2f}x over "
                  f"{len(values)} rounds")


if __name__ == "__main__":
    main()
