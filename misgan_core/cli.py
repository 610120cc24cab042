"""Command line: `python -m misgan_core COMMAND --help` (installed as `misgan`).

Errors a user can cause (the project's own types in `errors`: bad options, unusable data, broken or busy run
folders, a full disk; and `OSError` on a path the user gave) print one readable line and exit with status 2;
nothing on disk is removed or overwritten by a failed command. Anything else is a bug: one line
`internal error: ...` names the file its traceback was saved to, and the command exits with status 1;
`--debug` (or the environment variable MISGAN_DEBUG=1) prints the traceback too.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed, options
from .catalog import delete_run, load_run_to_train, open_run
from .config import RECIPES, MisGANConfig
from .data import list_datasets, load_user_data
from .device import native_bf16
from .errors import CheckpointError, DatasetError, MisGANError, OptionError
from .evaluation import EVAL_SPLITS, evaluate_opened
from .methods import METHODS, MISGAN, Run, baselines, method
from .runs import RunDir
from .spec import DataSpec
from .training import TrainingInterrupted

USER_ERRORS = (MisGANError,)
# Options whose values are paths the user gave: an OSError on one of these (or inside it) is the user's to fix.
PATH_OPTIONS = ("out", "run", "input", "data_dir", "pretrained", "dataset")
DEBUG_FLAG = "--debug"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more; got {value}")
    return value


MAX_SEED = 2 ** 63 - 1  # torch's and numpy's generators take a signed 64-bit seed


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SEED}; got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SEED}; got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m misgan_core",
                                     description="MisGAN Workbench: learn from incomplete data.")
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="print the traceback of an internal error (also: MISGAN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("datasets", help="list datasets and whether each is present",
                       description="One line per dataset: name, status, shape, how to get it.")
    p.add_argument("--data-dir", default=None)

    p = sub.add_parser("train", help="train MisGAN (and optionally its imputer) into a run folder",
                       description="Train MisGAN; --steps counts generator updates (each follows n_critic "
                                   "critic updates).")
    DataSpec.add_arguments(p)
    g = p.add_argument_group("model and training (each option: docs/options.md)")
    options.add_arguments(g, MisGANConfig)
    g.add_argument("--out", required=True, help="new run folder")

    trained = [m for m in baselines() if m.trainable]
    closed_form = [m.name for m in baselines() if not m.trainable]
    p = sub.add_parser("baseline", help=f"train or fit another method ({', '.join(m.name for m in baselines())}) "
                                        f"into a run folder",
                       description="Fit a baseline into a run folder; the data options are those of `train`, "
                                   "so both see the same incomplete examples. Continue with `resume RUN`.")
    p.add_argument("kind", choices=sorted(m.name for m in baselines()))
    DataSpec.add_arguments(p)
    g = p.add_argument_group("model and training")
    g.add_argument("--steps", type=_positive, default=None,
                   help=f"train_step calls for {' / '.join(m.name for m in trained)} (default "
                        + ", ".join(f"{m.name} {m.default_steps}" for m in trained)
                        + f"); {_and(closed_form)} fit once in closed form")
    g.add_argument("--batch-size", type=_positive, default=None, help="default: the model's (128)")
    g.add_argument("--set", dest="options", action="append", default=[], metavar="NAME=VALUE",
                   help="a model option, e.g. adversarial=false (gain), lr=1e-4 (convac), rank=40 (mf)")
    g.add_argument("--seed", type=_seed, default=0)
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--threads", type=_positive, default=None)
    g.add_argument("--checkpoint-every", type=_non_negative, default=500)
    g.add_argument("--sample-every", type=_non_negative, default=500)
    g.add_argument("--out", required=True, help="new run folder")

    p = sub.add_parser("resume", help=f"continue a run ({_or([m.title for m in METHODS.values() if m.trainable])}) "
                                      f"for more steps",
                       description="Continue a run from its last checkpoint, bit-identical to having trained "
                                   "straight through.")
    p.add_argument("run")
    how_long = p.add_mutually_exclusive_group(required=True)
    how_long.add_argument("--steps", type=_positive, help="this many more steps")
    how_long.add_argument("--until", type=_positive, metavar="STEP",
                          help="until the run has trained STEP steps in all (nothing to do if it has)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=_positive, default=None)

    p = sub.add_parser("sample", help=f"write a grid of samples from a run that generates "
                                      f"({', '.join(m.title for m in METHODS.values() if m.generates)})",
                       description="Sample complete images from a run into a PNG grid (and .npy).")
    p.add_argument("run")
    p.add_argument("-n", type=_positive, default=64)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="output .png (a .npy with the raw samples is written beside it)")

    p = sub.add_parser("impute", help=f"impute incomplete data with any run "
                                      f"({', '.join(m.title for m in METHODS.values())})",
                       description="Impute an .npz (x, m) or a folder of PNGs with alpha, or the run's own data.")
    p.add_argument("run")
    p.add_argument("--input", default=None, help=".npz with x and m, or a PNG folder; default: the run's data")
    p.add_argument("-n", type=_positive, default=16, help="examples to impute when using the run's data")
    p.add_argument("--draws", type=_positive, default=4)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="output .npz (x_imputed of shape (draws, N, C, H, W), m) and .png")

    p = sub.add_parser("evaluate", help="generation FID, imputation FID and RMSE of a run",
                       description="FID, imputation FID and RMSE of a run of any kind; the last line printed is "
                                   "one JSON object.")
    p.add_argument("run", help="run folder")
    p.add_argument("--samples", type=int, default=None,
                   help="generated samples for FID (default: as many as the training set, as in the paper)")
    p.add_argument("--seed", type=_seed, default=0, help="noise seed for samples and imputations")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the run's)")
    p.add_argument("--threads", type=_positive, default=None, help="torch threads")
    p.add_argument("--batch-size", type=_positive, default=500)
    p.add_argument("--split", default=None, choices=EVAL_SPLITS,
                   help="train (default): the run's own training examples (the paper's protocol); test: examples "
                        "no run trained on (mnist-5k's 500 held-out digits, or the dataset's test set)")
    p.add_argument("--dataset", default=None,
                   help="impute another built-in dataset of the same image shape under the run's missingness "
                        "process (a data-dependent one has its threshold matched to the rate on those images), "
                        "e.g. uci-digits (1,797 digits by other writers) for a digit model; imputation only")

    p = sub.add_parser("sweep", help="the paper's comparison: methods x missing rates, one run folder per cell",
                       description="Train and evaluate every method at every missing rate (the paper's figures 5 "
                                   "and 9). Each cell is a run folder under OUT/cells; running the same command "
                                   "again skips finished cells and resumes unfinished ones. Writes "
                                   "OUT/results.jsonl, OUT/results.md (with the time each method took to reach "
                                   "each other's final figure), a figure per metric against missing rate and per "
                                   "missingness imputation FID against training time (HTML and PNG).")
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=_positive, default=None, help="use only the first N training examples")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated: " + ", ".join(METHODS))
    p.add_argument("--mask", default="dropout", choices=["dropout", "square"],
                   help="square: the observed square's side is chosen to give each missing rate")
    p.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.8, 0.9], help="missing rates")
    p.add_argument("--mask-seed", type=_seed, default=0)
    p.add_argument("--budget", default="quick", help="quick, paper, minutes=N (each method N minutes of "
                                                     "training) or steps=N")
    p.add_argument("--eval-split", default="both", choices=["train", "test", "both"],
                   help="train: impute the training set (the paper's protocol); test: held-out examples")
    p.add_argument("--eval-every", type=_positive, default=None, metavar="N",
                   help="steps between the evaluation points (each cell's curve of imputation FID against training "
                        "time) of the trainable cells this command makes (default: each method's own; GAIN's "
                        "points are also its best-FID selections)")
    p.add_argument("--arch", default="fc", choices=["fc", "conv"],
                   help="the networks of the methods that have a choice: MisGAN's, and MIWAE's and not-MIWAE's "
                        "(conv: P-VAE's)")
    p.add_argument("--recipe", default=None, choices=list(RECIPES),
                   help="MisGAN's recipe for its cells (default: recommended; docs/options.md)")
    p.add_argument("--misgan-set", dest="misgan_options", action="append", default=[], metavar="NAME=VALUE",
                   help="a MisGAN option for its cells (any field of docs/options.md but steps), e.g. "
                        "mask_activation=stretched or imputer_sees_mask=true")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=_positive, default=None)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="sweep folder (made if absent; reused to resume)")

    p = sub.add_parser("delete", help="delete a run folder (refused while a process trains it)",
                       description="Delete a run folder, holding its lock: refused, naming the process, while "
                                   "another process trains it.")
    p.add_argument("run")

    sub.add_parser("metrics", help="metrics tools (train-classifier)", add_help=False)
    return parser


def _or(words: list[str]) -> str:
    """'a, b or c'."""
    return " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _and(words: list[str]) -> str:
    """'a, b and c'."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _parse_set(items: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise OptionError(f"--set expects name=value; got {item!r}")
        try:
            options[name.replace("-", "_")] = json.loads(text)
        except json.JSONDecodeError:
            options[name.replace("-", "_")] = text
    return options


def _report(run: Run) -> None:
    trainer = run.trainer
    last = {k: v for r in run.history for k, v in r.items()}
    print(json.dumps({"run": str(trainer.run.path) if trainer.run else None, "kind": run.kind, "step": run.step,
                      "epochs": round(run.epochs, 2), "seconds": round(run.seconds, 1),
                      **{k: round(v, 4) for k, v in last.items() if k not in ("step", "time")}}))


@contextlib.contextmanager
def _data_parallel(device: str) -> Iterator[int]:
    """Under torchrun, join the process group for the command's duration; yields this process's rank."""
    if not distributed.launched_by_torchrun():
        yield 0
        return
    group = distributed.start(device)
    finished = False
    try:
        yield group.rank
        finished = True
    finally:
        distributed.stop(finished)


@contextlib.contextmanager
def _removed_unless_trained(out: str) -> Iterator[None]:
    """A command that makes the run folder `out` and fails (or is interrupted) before its first checkpoint
    removes the folder again, so that the same --out works the next time."""
    folder = Path(out)
    was_there = folder.exists() and any(folder.iterdir()) if folder.is_dir() else folder.exists()
    try:
        yield
    except BaseException:
        run = RunDir(folder)
        if not was_there and (folder / "config.json").exists() and not run.has_checkpoint:
            with contextlib.suppress(CheckpointError, OSError):  # RunBusy: another process took it over
                run.delete()
        raise


def _train(args: argparse.Namespace) -> None:
    with _removed_unless_trained(args.out), _data_parallel(args.device) as rank:
        _train_in_group(args, rank)


def _train_in_group(args: argparse.Namespace, rank: int) -> None:
    if not 0 <= args.seed <= MAX_SEED:
        raise OptionError(f"--seed must be a whole number from 0 to {MAX_SEED}; got {args.seed}")
    config = options.from_namespace(MisGANConfig, args, data=DataSpec.from_args(args))
    config.validate()
    run = MISGAN.create_from_config(args.out, config)
    gan = run.trainer
    if config.precision == "bf16" and not native_bf16(gan.device) and not rank:
        print(f"note: {gan.device} has no native bfloat16 products (AVX512-BF16, AMX or a bf16 GPU); "
              f"--precision bf16 will train slower than fp32 here", file=sys.stderr)
    if rank:  # the other ranks train their shards quietly; rank 0 reports and writes the run folder
        run.train()
        return
    world = f", {gan.world} processes x {gan._b} rows" if gan.world > 1 else ""
    print(f"run {args.out}: {gan.data.name} {gan.shape}, {len(gan.data)} examples, {config.data.missingness()}, "
          f"missing {gan.data.missing_rate:.1%}, device {gan.device}, {torch.get_num_threads()} threads"
          f"{', bfloat16 products' if config.precision == 'bf16' else ''}; "
          f"{config.steps:,} generator steps = {config.steps * config.n_critic / gan._order.batches_per_epoch:.1f} "
          f"epochs; global batch {gan._order.batch_size}{world}", file=sys.stderr)
    run.train(progress=True)
    _report(run)


def _baseline(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    with _removed_unless_trained(args.out):
        _baseline_in(args)


def _baseline_in(args: argparse.Namespace) -> None:
    m = method(args.kind)
    steps = (args.steps or m.default_steps) if m.trainable else 1
    run = m.create(args.out, DataSpec.from_args(args), _parse_set(args.options), seed=args.seed,
                   batch_size=args.batch_size, device=args.device)
    print(f"run {args.out}: {m.title} on {run.data.name} {tuple(run.data.shape)}, {len(run.data)} examples, "
          f"{run.spec.missingness()}, missing {run.data.missing_rate:.1%}, {torch.get_num_threads()} threads",
          file=sys.stderr)
    run.cadence = {"checkpoint_every": args.checkpoint_every, "sample_every": args.sample_every}
    run.train(steps, progress=True)
    _report(run)


def _resume(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    with _data_parallel(args.device or "auto") as rank:
        _resume_in_group(args, rank)


def _resume_in_group(args: argparse.Namespace, rank: int) -> None:
    run = load_run_to_train(args.run, device=args.device)
    title = run.method.title
    if not run.method.data_parallel and distributed.launched_by_torchrun():
        parallel = " or ".join(m.title for m in METHODS.values() if m.data_parallel)
        raise OptionError(f"torchrun trains {parallel} runs; {args.run} is a {title} run: resume it "
                          f"in one process (python -m misgan_core resume RUN)")
    steps = args.steps if args.steps is not None else max(0, args.until - run.step)
    if rank:
        run.train(steps)
        return
    if not steps:
        print(f"{args.run} ({title}) has trained {run.step} steps already (--until "
              f"{args.until}); nothing to do", file=sys.stderr)
        return
    print(f"resuming {args.run} ({title}) at step {run.step} for {steps} more",
          file=sys.stderr)
    run.train(steps, progress=True)
    _report(run)


def _sample(args: argparse.Namespace) -> None:
    from .grids import save_png

    run = open_run(args.run)
    if run.sampler is None:
        *first, last = [m.title for m in METHODS.values() if m.generates]
        raise OptionError(f"{args.run} is a {run.method.title} run, which does not generate; sample from a "
                          f"{' or '.join([', '.join(first), last] if first else [last])} run")
    images = run.sample(args.n, torch.Generator().manual_seed(args.seed))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(images, out)
    np.save(out.with_suffix(".npy"), images.numpy())
    print(f"wrote {out} and {out.with_suffix('.npy')}")


def _impute(args: argparse.Namespace) -> None:
    from .grids import save_png, show_missing

    run = open_run(args.run)
    run.require_imputer()
    data = load_user_data(args.input) if args.input else run.data.subset(slice(0, args.n))
    if data.shape != run.shape:
        raise DatasetError(f"{args.run} imputes {run.shape} images; {args.input} holds {data.shape} images")
    imputed = run.impute(data.x, data.m, draws=args.draws, generator=torch.Generator().manual_seed(args.seed))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_suffix(".npz"), x_imputed=imputed.numpy(), m=data.m.numpy())
    rows = torch.cat([show_missing(data.x, data.m).unsqueeze(0), imputed]).transpose(0, 1).reshape(
        -1, *data.shape)
    save_png(rows, out.with_suffix(".png"), nrow=args.draws + 1)
    print(f"wrote {out.with_suffix('.npz')} and {out.with_suffix('.png')} ({run.title}; each row: input, then "
          f"{args.draws} draws)")


def _evaluate(args: argparse.Namespace) -> None:
    if args.samples is not None and args.samples < 2:
        raise OptionError("--samples must be at least 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset is not None and args.split is not None:
        raise OptionError(f"--dataset evaluates on {args.dataset}'s test images; drop --split {args.split}")
    if args.dataset is not None and args.samples is not None:
        raise OptionError("--dataset measures imputation only, which imputes every example once; drop --samples "
                          "(the number of generated samples for the generation FID)")
    run = open_run(args.run, device=args.device)
    result = evaluate_opened(run, args.samples, args.seed, args.batch_size, args.split or "train", args.dataset)
    # Human-readable lines first, then the machine-readable JSON as the very last line.
    label = result["label"]
    budget = f"{run.title}, {result['epochs']} epochs, {result['seconds']:.0f} s of training" \
        if result.get("epochs") is not None else run.title
    print(f"{budget}; evaluated on {result['split_label']}", file=sys.stderr)
    for key in ("fid", "imputation_fid"):
        if result.get(key) is not None:
            print(f"{key:15s} {result[key]:.4f}  [{label}]", file=sys.stderr)
    if result.get("rmse") is not None:
        print(f"{'rmse':15s} {result['rmse']:.4f}  (missing entries only)", file=sys.stderr)
    if result.get("rmse_conditional_mean") is not None:
        print(f"{'rmse (mean)':15s} {result['rmse_conditional_mean']:.4f}  (the imputer's estimate of "
              f"E[x_mis | x_obs])", file=sys.stderr)
    print(json.dumps(result))


def _datasets(args: argparse.Namespace) -> None:
    for status in list_datasets(args.data_dir):
        print(status.line())


def _sweep(args: argparse.Namespace) -> None:
    from .sweep import Budget, Sweep

    if args.threads:
        torch.set_num_threads(args.threads)
    splits = ("train", "test") if args.eval_split == "both" else (args.eval_split,)
    sweep = Sweep(args.out, args.dataset, [m.strip() for m in args.methods.split(",") if m.strip()], args.mask,
                  args.rates, Budget.parse(args.budget), arch=args.arch, device=args.device, eval_splits=splits,
                  seed=args.seed, data_dir=args.data_dir, limit=args.limit, mask_seed=args.mask_seed,
                  misgan_options={**({"recipe": args.recipe} if args.recipe else {}),
                                  **options.parse_assignments(MisGANConfig, args.misgan_options, "--misgan-set",
                                                              kind="MisGAN option", exclude=("steps",))},
                  eval_every=args.eval_every)
    sweep.run(progress=True)
    print((Path(args.out) / "results.md").read_text())


def _delete(args: argparse.Namespace) -> None:
    delete_run(args.run)
    print(f"deleted {args.run}", file=sys.stderr)


COMMANDS = {"sweep": _sweep, "datasets": _datasets, "train": _train, "baseline": _baseline, "resume": _resume,
            "sample": _sample, "impute": _impute, "evaluate": _evaluate, "delete": _delete}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get("MISGAN_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != DEBUG_FLAG]
    if argv[:1] == ["metrics"]:  # the metrics package owns its sub-commands
        from .metrics.__main__ import main as metrics_main

        return _guarded(lambda: metrics_main(argv[1:]) or 0, debug=debug)
    if argv[:2] == ["baseline", "resume"]:  # the older spelling of `resume` for baseline runs
        argv = ["resume", *argv[2:]]
    args = _parser().parse_args(argv)
    paths = [str(v) for name in PATH_OPTIONS if isinstance(v := getattr(args, name, None), (str, Path))]
    return _guarded(lambda: COMMANDS[args.command](args), paths, debug, _how_to_go_on(args))


def _how_to_go_on(args: argparse.Namespace) -> str:
    """What to run after Ctrl-C stopped a training: the same sweep command, or `resume` on the run folder."""
    if args.command == "sweep":
        return "run the same sweep command again to go on"
    folder = getattr(args, "run", None) or getattr(args, "out", None)
    return f"continue with `python -m misgan_core resume {folder}`" if folder else "continue with `resume`"


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # the training driver saves a checkpoint on the way out, as for Ctrl-C


def _guarded(run: Any, paths: list[str] | tuple[str, ...] = (), debug: bool = False,
             go_on: str = "continue with `resume`") -> int:
    """Run a command: 0 (or its code) on success, 2 with one line for an error the user can fix, 1 with one
    line and a saved traceback for anything else (a bug), 130 when interrupted."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        # Our own Ctrl-C handler: a process started with SIGINT ignored (from a script with `&`, under nohup,
        # by some CI runners) inherits the ignoring, and would otherwise train on through Ctrl-C and kill -INT.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return int(run() or 0)
    except USER_ERRORS as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        message = _user_os_error(err, paths)
        if message is None:
            return _internal_error(err, debug)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except MemoryError as err:
        print(f"error: out of memory ({_one_line(err)}); use a smaller --batch-size or --limit, or fewer "
              f"samples", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if isinstance(err, TrainingInterrupted) and err.saved_step is not None:
            print(f"interrupted: a checkpoint was written at step {err.saved_step}; {go_on}", file=sys.stderr)
        else:
            print("interrupted before training wrote anything", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: say so, and keep the traceback for the report
        return _internal_error(err, debug)


def _user_os_error(err: OSError, paths: list[str] | tuple[str, ...]) -> str | None:
    """The one-line message for an OSError the user can fix: a full disk, or a path they gave (or a file inside
    it) that cannot be read or written. None for any other OSError."""
    reason = err.strerror or _one_line(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {err.filename}" if err.filename else ""
        return f"the disk is full{where}; free some space and run the command again"
    for name in (err.filename, err.filename2):
        if name is None:
            continue
        failed = Path(os.fsdecode(name)).absolute()
        for given in paths:
            mine = Path(given).absolute()
            if failed == mine or mine in failed.parents or failed in mine.parents:
                return f"{failed}: {reason}; check the path {given}"
    return None


def _internal_error(err: BaseException, debug: bool) -> int:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    saved = _save_traceback(text)
    where = f"traceback saved to {saved}" if saved else "the traceback could not be saved"
    print(f"internal error: {type(err).__name__}: {_one_line(err)} ({where}; please report it)", file=sys.stderr)
    if debug or saved is None:
        print(text, file=sys.stderr, end="")
    return 1


def _save_traceback(text: str) -> Path | None:
    """Write a bug's traceback to a new file under the temporary folder (MISGAN_ERROR_DIR overrides)."""
    folder = Path(os.environ.get("MISGAN_ERROR_DIR") or Path(tempfile.gettempdir()) / "misgan_core-errors")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), suffix=".txt", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(f"python -m misgan_core {' '.join(sys.argv[1:])}\n\n{text}")
    except OSError:
        return None
    return Path(name)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def run() -> None:
    """The `misgan` console script: the same as `python -m misgan_core`."""
    sys.exit(main())
