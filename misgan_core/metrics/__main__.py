"""Command line of the metrics package.

python -m misgan_core.metrics train-classifier --dataset mnist-5k --epochs 30 --seed 0
(`python -m misgan_core metrics ...` forwards its arguments to `main`.)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .lenet import ASSETS, SPLITS


def build_parser(prog: str = "python -m misgan_core metrics") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="FID classifiers and reference statistics")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train-classifier", help="train the LeNet whose features give FID (LeNet features); "
                                                "writes weights, a record and reference statistics")
    t.add_argument("--dataset", required=True, choices=sorted(SPLITS))
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, default=ASSETS, help="output folder (default: the shipped assets)")
    t.add_argument("--data-dir", type=Path, default=None, help="torchvision-layout data folder (for mnist)")
    # One thread by default: on small shared CPUs more threads ran this training far slower (docs/experiments.md).
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m misgan_core metrics") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    if args.command == "train-classifier":
        import torch

        from .lenet import train_classifier

        if args.epochs < 1:
            raise SystemExit("--epochs must be at least 1")
        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        command = " ".join([prog, *map(shlex.quote, argv)])
        try:
            record = train_classifier(args.dataset, args.epochs, args.seed, args.out, args.data_dir,
                                      command=command)
        finally:
            torch.set_num_threads(threads)  # process-wide: leave callers (tests, the UI) as they were
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m misgan_core.metrics"))
