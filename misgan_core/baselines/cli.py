"""`python -m misgan_core baseline KIND ...` and `python -m misgan_core baseline resume RUN --steps N`.

KIND is gain, convac, mf, mean or zero; the data and missingness options are those of `train`, so a
baseline and a MisGAN run given the same options see exactly the same incomplete examples. Model
options go through `--set name=value` (e.g. `--set adversarial=false`, `--set rank=40`); values are
read as JSON where they parse (numbers, true/false, null), else as strings.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from . import BASELINES
from .runs import BaselineRun

DEFAULT_STEPS = {"gain": 1000, "convac": 1000}  # closed-form kinds ignore --steps


def _parse_set(items: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set expects name=value; got {item!r}")
        try:
            options[name.replace("-", "_")] = json.loads(text)
        except json.JSONDecodeError:
            options[name.replace("-", "_")] = text
    return options


def _parser() -> argparse.ArgumentParser:
    from ..cli import _add_data_options  # the same data and mask options as `train`

    p = argparse.ArgumentParser(prog="python -m misgan_core baseline",
                                description="Fit a baseline imputer into a run folder (or `resume RUN`). "
                                            "Evaluate it with `python -m misgan_core evaluate RUN`.")
    p.add_argument("kind", choices=sorted(BASELINES))
    _add_data_options(p)
    g = p.add_argument_group("model and training")
    g.add_argument("--steps", type=int, default=None,
                   help=f"train_step calls for gain / convac (default {DEFAULT_STEPS}); mf, mean and "
                        f"zero fit once in closed form")
    g.add_argument("--batch-size", type=int, default=None, help="default: the model's (128)")
    g.add_argument("--set", dest="options", action="append", default=[], metavar="NAME=VALUE",
                   help="a model option, e.g. adversarial=false (gain), lr=1e-4 (convac), rank=40 (mf)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--threads", type=int, default=None)
    g.add_argument("--checkpoint-every", type=int, default=500)
    g.add_argument("--sample-every", type=int, default=500)
    g.add_argument("--out", required=True, help="new run folder")
    return p


def _resume_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m misgan_core baseline resume",
                                description="Continue a trainable baseline run from its last checkpoint.")
    p.add_argument("run")
    p.add_argument("--steps", type=int, required=True, help="this many more train_step calls")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--sample-every", type=int, default=500)
    return p


def _report(br: BaselineRun) -> None:
    last = {k: v for r in br.history for k, v in r.items()}
    print(json.dumps({"run": str(br.run.path), "kind": br.kind, "step": br.step,
                      "seconds": round(br.train_time, 1),
                      **{k: round(v, 4) for k, v in last.items() if k not in ("step", "time")}}))


def baseline_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "resume":
        args = _resume_parser().parse_args(argv[1:])
        if args.steps < 1:
            raise ValueError("--steps must be at least 1")
        if args.threads:
            torch.set_num_threads(args.threads)
        br = BaselineRun.load(args.run, device=args.device)
        if br.trainer is None:
            raise ValueError(f"{args.run} is a {br.kind} run, fitted in closed form: nothing to resume")
        print(f"resuming {args.run} ({br.kind}) at step {br.step} for {args.steps} more", file=sys.stderr)
        br.train(args.steps, checkpoint_every=args.checkpoint_every, sample_every=args.sample_every,
                 progress=True)
        _report(br)
        return 0

    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps if args.steps is not None else DEFAULT_STEPS.get(args.kind, 1)
    if steps < 1:
        raise ValueError("--steps must be at least 1")
    data_config = {"dataset": args.dataset, "data_dir": args.data_dir, "limit": args.limit, "mask": args.mask,
                   "mask_size": args.mask_size, "missing_rate": args.missing_rate,
                   "missing_rate_range": args.missing_rate_range, "mask_seed": args.mask_seed}
    br = BaselineRun.create(args.out, args.kind, data_config, _parse_set(args.options), seed=args.seed,
                            batch_size=args.batch_size, device=args.device)
    print(f"run {args.out}: {args.kind} on {br.data.name} {tuple(br.data.shape)}, {len(br.data)} examples, "
          f"{br.data.missingness or 'given masks'}, missing {br.data.missing_rate:.1%}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    br.train(steps, checkpoint_every=args.checkpoint_every, sample_every=args.sample_every, progress=True)
    _report(br)
    return 0
