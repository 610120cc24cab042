"""Command line: `python -m misgan_core COMMAND --help`.

Errors a user can cause (bad options, missing datasets, broken run folders, wrong shapes) print one
readable line and exit with status 2; nothing on disk is removed or overwritten by a failed command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .data import DatasetError, list_datasets
from .masks import MASK_PROCESSES
from .metrics.fid import default_fid_every
from .misgan import IMPUTER_MODES, MisGAN, MisGANConfig
from .runs import CheckpointError

USER_ERRORS = (DatasetError, CheckpointError, ValueError, FileNotFoundError, RuntimeError)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and missingness")
    g.add_argument("--dataset", default="mnist-5k",
                   help="built-in name (see `datasets`), an .npz with x and m, or a folder of PNGs with alpha")
    g.add_argument("--data-dir", default=None, help="root folder of torchvision-layout datasets")
    g.add_argument("--limit", type=int, default=None, help="use only the first N examples")
    g.add_argument("--mask", default="square", choices=sorted(MASK_PROCESSES),
                   help="missingness process (ignored for your own incomplete data)")
    g.add_argument("--mask-size", type=int, default=14, help="side of the observed square (square)")
    g.add_argument("--missing-rate", type=float, default=0.5, help="missing probability per pixel (dropout)")
    g.add_argument("--missing-rate-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="draw each example's dropout rate uniformly from this range")
    g.add_argument("--mask-seed", type=int, default=0, help="seed of the fixed per-example masks")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m misgan_core",
                                     description="MisGAN Workbench: learn from incomplete data.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("datasets", help="list datasets and whether each is present",
                       description="One line per dataset: name, status, shape, how to get it.")
    p.add_argument("--data-dir", default=None)

    p = sub.add_parser("train", help="train MisGAN (and optionally its imputer) into a run folder",
                       description="Train MisGAN; --steps counts generator updates (each follows n_critic "
                                   "critic updates).")
    _add_data_options(p)
    g = p.add_argument_group("model and training")
    g.add_argument("--arch", default="fc", choices=["fc", "conv"])
    g.add_argument("--steps", type=int, default=300, help="generator updates")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--n-critic", type=int, default=5)
    g.add_argument("--alpha", type=float, default=0.2)
    g.add_argument("--lr", type=float, default=1e-4)
    g.add_argument("--tau", type=float, default=0.0, help="fill value of the masking operator f_tau")
    g.add_argument("--temperature", type=float, default=0.66)
    g.add_argument("--mask-activation", default="sigmoid", choices=["sigmoid", "hard-sigmoid", "straight-through"])
    g.add_argument("--no-mask-critic", action="store_true", help="the AmbientGAN ablation: no mask critic Dm")
    g.add_argument("--ambient-masks", default="learned", choices=["learned", "real"],
                   help="without Dm: learn Gm from L_x alone, or feed real masks")
    g.add_argument("--imputer", action="store_true", help="also train the imputer Gi")
    g.add_argument("--imputer-mode", default="joint", choices=IMPUTER_MODES,
                   help="joint (eq. 9-10), standalone (eq. 9 from --pretrained Gx), target (eq. 11)")
    g.add_argument("--pretrained", default=None, help="run folder with a trained Gx (standalone / target)")
    g.add_argument("--beta", type=float, default=0.1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--sample-every", type=int, default=100)
    g.add_argument("--checkpoint-every", type=int, default=500)
    g.add_argument("--fid-every", type=int, default=None,
                   help="live FID cadence in generator steps (default: on for datasets with a FID classifier)")
    g.add_argument("--out", required=True, help="new run folder")

    p = sub.add_parser("resume", help="continue a run for more steps",
                       description="Continue a run from its last checkpoint.")
    p.add_argument("run")
    p.add_argument("--steps", type=int, required=True, help="this many more generator updates")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)

    p = sub.add_parser("sample", help="write a grid of Gx samples",
                       description="Sample complete images from a run's Gx into a PNG grid (and .npy).")
    p.add_argument("run")
    p.add_argument("-n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .png (a .npy with the raw samples is written beside it)")

    p = sub.add_parser("impute", help="impute incomplete data with a run's imputer",
                       description="Impute an .npz (x, m) or a folder of PNGs with alpha, or the run's own data.")
    p.add_argument("run")
    p.add_argument("--input", default=None, help=".npz with x and m, or a PNG folder; default: the run's data")
    p.add_argument("-n", type=int, default=16, help="examples to impute when using the run's data")
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz (x_imputed of shape (draws, N, C, H, W), m) and .png")

    sub.add_parser("evaluate", help="FID, imputation FID and RMSE of a run", add_help=False)
    sub.add_parser("baseline", help="train a baseline imputer (gain, convac, mf, mean, zero)", add_help=False)
    sub.add_parser("metrics", help="metrics tools (train-classifier)", add_help=False)
    return parser


def _train(args: argparse.Namespace) -> None:
    config = MisGANConfig(
        dataset=args.dataset, data_dir=args.data_dir, limit=args.limit, mask=args.mask, mask_size=args.mask_size,
        missing_rate=args.missing_rate, missing_rate_range=args.missing_rate_range, mask_seed=args.mask_seed,
        arch=args.arch, steps=args.steps, batch_size=args.batch_size, n_critic=args.n_critic, alpha=args.alpha,
        lr=args.lr, tau=args.tau, temperature=args.temperature, mask_activation=args.mask_activation,
        mask_critic=not args.no_mask_critic, ambient_masks=args.ambient_masks, imputer=args.imputer,
        imputer_mode=args.imputer_mode, pretrained=args.pretrained, beta=args.beta, seed=args.seed,
        device=args.device, threads=args.threads, sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every,
        fid_every=default_fid_every(args.dataset) if args.fid_every is None else args.fid_every)
    config.validate()
    gan = MisGAN(config, run_dir=args.out)
    print(f"run {args.out}: {gan.data.name} {gan.shape}, {len(gan.data)} examples, "
          f"{gan.data.missingness or 'given masks'}, missing {gan.data.missing_rate:.1%}, device {gan.device}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    gan.train(progress=True)
    _report(gan)


def _report(gan: MisGAN) -> None:
    last = {k: v for r in gan.history for k, v in r.items()}
    print(json.dumps({"run": str(gan.run.path) if gan.run else None, "step": gan.step,
                      "seconds": round(gan.train_time, 1),
                      **{k: round(v, 4) for k, v in last.items() if k not in ("step", "time")}}))


def _resume(args: argparse.Namespace) -> None:
    gan = MisGAN.load(args.run, device=args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"resuming {args.run} at step {gan.step} for {args.steps} more", file=sys.stderr)
    gan.train(args.steps, progress=True)
    _report(gan)


def _sample(args: argparse.Namespace) -> None:
    from .grids import save_png

    gan = MisGAN.load(args.run)
    images = gan.sample(args.n, generator=torch.Generator().manual_seed(args.seed))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(images, out)
    np.save(out.with_suffix(".npy"), images.numpy())
    print(f"wrote {out} and {out.with_suffix('.npy')}")


def _impute(args: argparse.Namespace) -> None:
    from .data import load_user_data
    from .grids import save_png, show_missing

    gan = MisGAN.load(args.run)
    if args.input:
        data = load_user_data(args.input)
    else:
        data = gan.data.subset(slice(0, args.n))
    imputed = gan.impute(data.x, data.m, draws=args.draws, generator=torch.Generator().manual_seed(args.seed))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_suffix(".npz"), x_imputed=imputed.numpy(), m=data.m.numpy())
    rows = torch.cat([show_missing(data.x, data.m).unsqueeze(0), imputed]).transpose(0, 1).reshape(
        -1, *data.shape)
    save_png(rows, out.with_suffix(".png"), nrow=args.draws + 1)
    print(f"wrote {out.with_suffix('.npz')} and {out.with_suffix('.png')} (each row: input, then {args.draws} draws)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # These sub-commands own their argument parsing; route before argparse sees their options.
    if argv and argv[0] in ("evaluate", "baseline", "metrics"):
        return _delegate(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "datasets":
            for status in list_datasets(args.data_dir):
                print(status.line())
        elif args.command == "train":
            _train(args)
        elif args.command == "resume":
            _resume(args)
        elif args.command == "sample":
            _sample(args)
        elif args.command == "impute":
            _impute(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: a checkpoint was written at the last finished step; continue with `resume`",
              file=sys.stderr)
        return 130
    return 0


def _delegate(command: str, argv: list[str]) -> int:
    try:
        if command == "evaluate":
            from .metrics.cli import evaluate_main
            return evaluate_main(argv) or 0
        if command == "baseline":
            from .baselines.cli import baseline_main
            return baseline_main(argv) or 0
        from .metrics.__main__ import main as metrics_main
        return metrics_main(argv) or 0
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
