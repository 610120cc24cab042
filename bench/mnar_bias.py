"""How much missingness that depends on the data biases MisGAN, and how much a mask model that sees the image
removes: FC-MisGAN with its imputer, each mask model, on mnist-5k; beside it the likelihood family, MIWAE (which
assumes the data missing at random) and not-MIWAE (which models p(m | x) as a self-masking logistic).

    python bench/mnar_bias.py --out sweeps/mnar-bias [--steps 4000] [--threads 1] [--train-args '--precision bf16']
    python bench/mnar_bias.py --out sweeps/mnar-k5 --train-args '--mask-steepness 5' \
        --only self-masking50-independent self-masking50-self-masking     # a softer process (copy the controls)
    python bench/mnar_bias.py --out sweeps/mnar-bias --models miwae notmiwae --likelihood-steps 6000

Cells: self-masking (bright pixels missing) at 50% and 80% and mar at 50%, each with the independent,
self-masking and conditional mask models (and MIWAE and not-MIWAE, trained with `baseline`); MCAR dropout at 50%
and 80% with the same models as the controls.
Each cell is an ordinary run folder under OUT/cells (train, then evaluate on the held-out split). Running the
command again skips finished cells and resumes unfinished ones; a second copy of the command started beside
the first takes the cells the first is not training (each run folder has one writer), so `--jobs` is just
"start it twice". Results: OUT/results.jsonl, OUT/results.md (the table) and OUT/bias.png.

Reported against the complete held-out digits: generation FID (LeNet features) and the mean pixel intensity
of 2,000 Gx samples (the data's own mean beside it), imputation FID and RMSE of the imputer on the held-out
examples under the same missingness. Excess FID = a cell's generation FID minus the same mask model's FID
under MCAR dropout at the same rate (mar 50% is compared with dropout 50%).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MASK_MODELS = ("independent", "self-masking", "conditional")
LIKELIHOOD_METHODS = ("miwae", "notmiwae")  # their own methods (`baseline KIND`), in the mask-model column
MODELS = MASK_MODELS + LIKELIHOOD_METHODS
PROCESSES = [("self-masking", 0.5), ("self-masking", 0.8), ("mar", 0.5), ("dropout", 0.5), ("dropout", 0.8)]
CONTROL = {"self-masking": "dropout", "mar": "dropout", "dropout": "dropout"}


def cell_name(mask: str, rate: float, model: str) -> str:
    return f"{mask}{round(rate * 100)}-{model}"


def trained_step(run: Path) -> int:
    sys.path.insert(0, str(ROOT))
    from misgan_core.runs import RunDir

    return RunDir(run).saved_step() or 0


def cell_steps(model: str, args: argparse.Namespace) -> int:
    return args.likelihood_steps if model in LIKELIHOOD_METHODS else args.steps


def train_cell(run: Path, mask: str, rate: float, model: str, args: argparse.Namespace) -> bool:
    """Train or resume one cell; False when another process holds it (or it failed: the message is shown)."""
    base = [sys.executable, "-m", "misgan_core"]
    steps = cell_steps(model, args)
    if (run / "config.json").exists():
        done = trained_step(run)
        if done >= steps:
            return True
        # --until, not --steps: another copy of this command may train the cell on between here and the load
        cmd = base + ["resume", str(run), "--until", str(steps), "--threads", str(args.threads)]
    elif model in LIKELIHOOD_METHODS:
        cmd = base + ["baseline", model, "--dataset", "mnist-5k", "--split", "train", "--mask", mask,
                      "--missing-rate", str(rate), "--mask-direction", "high", "--steps", str(steps), "--threads",
                      str(args.threads), "--out", str(run)]
    else:
        cmd = base + ["train", "--dataset", "mnist-5k", "--split", "train", "--mask", mask, "--missing-rate",
                      str(rate), "--mask-direction", "high", "--mask-model", model, "--imputer",
                      "--mask-activation", args.mask_activation, "--steps", str(args.steps), "--threads",
                      str(args.threads), "--out", str(run), *shlex.split(args.train_args)]
    print(f"[{run.name}] {' '.join(cmd[2:])}", flush=True)
    out = subprocess.run(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
        print(f"[{run.name}] skipped for now: {last}", flush=True)
        return False
    return True


def evaluate_cell(run: Path, mask: str, rate: float, model: str, threads: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from misgan_core.catalog import open_run
    from misgan_core.evaluation import evaluate_opened

    torch.set_num_threads(threads)
    opened = open_run(run)
    result = evaluate_opened(opened, split="test")
    samples = opened.sampler(2000, torch.Generator().manual_seed(0)) if opened.sampler else None
    from misgan_core.evaluation import evaluation_data

    _, held_out = evaluation_data(opened, "test")
    row = {"cell": run.name, "mask": mask, "rate": rate, "mask_model": model, "split": "test",
           "steps": result.get("steps"), "epochs": result.get("epochs"), "seconds": result.get("seconds"),
           "generation_fid": result.get("fid"), "imputation_fid": result.get("imputation_fid"),
           "rmse": result.get("rmse"), "fid_label": result.get("fid_label", result.get("label")),
           "sample_intensity": float(samples.mean()) if samples is not None else None,
           "data_intensity": float(held_out.x.mean()),
           "missing_rate_measured": float(1 - held_out.m.float().mean())}
    config = json.loads((run / "config.json").read_text())
    if model in LIKELIHOOD_METHODS:
        row["data_critic"] = "-"
        row["mechanism"] = opened.trainer.model.mechanism()
        return row
    model = config.get("mask_model", "independent")
    row["data_critic"] = {"independent": f"f_tau, tau {config['tau']:g}", "self-masking": "(x*m, g m), g by slope"
                          }.get(model, "(x*m, m)")
    row["precision"] = config.get("precision", "fp32")
    row["temperature"] = config.get("temperature")
    if mask == "self-masking":
        row["steepness"] = config["data"].get("mask_steepness", 20.0)
    return row


def write_table(out: Path, rows: list[dict]) -> None:
    by = {(r["mask"], r["rate"], r["mask_model"]): r for r in rows}
    lines = ["| missingness | mask model | Dx sees | steps | generation FID | excess FID | sample intensity (data) | "
             "intensity bias | imputation FID | RMSE |", "|---|---|---|---|---|---|---|---|---|---|"]
    for mask, rate in PROCESSES:
        for model in MODELS:
            r = by.get((mask, rate, model))
            if r is None:
                continue
            control = by.get((CONTROL[mask], rate, model))
            excess = (f"{r['generation_fid'] - control['generation_fid']:+.1f}"
                      if control and mask != "dropout" else "-")
            bias = r["sample_intensity"] - r["data_intensity"]
            k = f", k {r['steepness']:g}" if r.get("steepness", 20.0) != 20.0 else ""
            lam = r.get("temperature")
            lam = "" if lam is None else f" (lambda {lam:g})"
            if r.get("mechanism"):
                learnt = r["mechanism"]
                lam = f" (learnt slope {learnt['mask_slope']:+.2f}, offset {learnt['mask_offset']:+.2f})"
            lines.append(f"| {mask} {rate:.0%}{k} (measured {r['missing_rate_measured']:.1%}) | {model}{lam} | "
                         f"{r.get('data_critic', '-')} | {r['steps']:,} | {r['generation_fid']:.1f} | {excess} | "
                         f"{r['sample_intensity']:.4f} ({r['data_intensity']:.4f}) | {bias:+.4f} | "
                         f"{r['imputation_fid']:.1f} | {r['rmse']:.4f} |")
    label = rows[0].get("fid_label") if rows else ""
    cuts = []
    for mask, rate in PROCESSES:  # the target: the self-masking model against the independent one
        ind, own = by.get((mask, rate, "independent")), by.get((mask, rate, "self-masking"))
        c_ind, c_own = by.get((CONTROL[mask], rate, "independent")), by.get((CONTROL[mask], rate, "self-masking"))
        if mask != "self-masking" or not (ind and own and c_ind and c_own):
            continue
        ex_ind = ind["generation_fid"] - c_ind["generation_fid"]
        ex_own = own["generation_fid"] - c_own["generation_fid"]
        b_ind, b_own = (abs(ind["sample_intensity"] - ind["data_intensity"]),
                        abs(own["sample_intensity"] - own["data_intensity"]))
        cuts.append(f"{mask} {rate:.0%}: the self-masking model cuts the excess FID by {1 - ex_own / ex_ind:.1%} "
                    f"and the intensity bias by {1 - b_own / b_ind:.1%} (target: 50% each)")
    precisions = sorted({r.get("precision", "fp32") for r in rows if r["mask_model"] not in LIKELIHOOD_METHODS})
    lines.append("")
    lines.extend(f"{line}." for line in cuts)
    if cuts:
        lines.append("")
    lines.append(f"FC-MisGAN with imputer (steps: generator steps), MIWAE and not-MIWAE (steps: batches of 64, "
                 f"each with 20 importance samples), mnist-5k (4,500 training digits), evaluated on the 500 held-out "
                 f"digits with the same missingness; FID: {label}. Excess FID: minus the same model under MCAR "
                 f"dropout at the same rate. MisGAN's precision: {', '.join(precisions)}.")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def plot(out: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{m} {r:.0%}" for m, r in PROCESSES]
    present = [m for m in MODELS if any(r["mask_model"] == m for r in rows)]
    width = 0.8 / len(present)
    by = {(r["mask"], r["rate"], r["mask_model"]): r for r in rows}
    for j, model in enumerate(present):
        fids = [by[(m, r, model)]["generation_fid"] if (m, r, model) in by else float("nan") for m, r in PROCESSES]
        bias = [by[(m, r, model)]["sample_intensity"] - by[(m, r, model)]["data_intensity"]
                if (m, r, model) in by else float("nan") for m, r in PROCESSES]
        xs = [i + (j - (len(present) - 1) / 2) * width for i in range(len(PROCESSES))]
        axes[0].bar(xs, fids, width, label=model)
        axes[1].bar(xs, bias, width, label=model)
    for ax, title in zip(axes, ("generation FID (held-out digits)", "mean intensity of samples minus data's"),
                         strict=True):
        ax.set_xticks(range(len(PROCESSES)), labels, rotation=20)
        ax.set_title(title)
        ax.legend(title="mask model")
    axes[1].axhline(0, color="black", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(out / "bias.png", dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=4000, help="generator steps per MisGAN cell")
    p.add_argument("--likelihood-steps", type=int, default=6000, help="steps per MIWAE / not-MIWAE cell")
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS,
                   help="mask models and likelihood methods to run (default: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", help="cell names to run (default: all)")
    p.add_argument("--mask-activation", default="stretched",
                   help="Gm's output activation for new cells (train --mask-activation; default stretched)")
    p.add_argument("--train-args", default="", help="more `train` options for new cells, e.g. '--precision bf16'")
    args = p.parse_args()
    cells = [(mask, rate, model) for mask, rate in PROCESSES for model in args.models]
    order = [c for c in cells if c[2] != "conditional"] + [c for c in cells if c[2] == "conditional"]
    if args.only:
        order = [c for c in order if cell_name(*c) in args.only]
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.jsonl"
    for _ in range(2):  # a second pass picks up cells another process held the first time
        for mask, rate, model in order:
            run = args.out / "cells" / cell_name(mask, rate, model)
            done = {json.loads(line)["cell"] for line in results_file.read_text().splitlines()} \
                if results_file.exists() else set()
            if run.name in done or not train_cell(run, mask, rate, model, args):
                continue
            if trained_step(run) < cell_steps(model, args):
                continue
            row = evaluate_cell(run, mask, rate, model, args.threads)
            with results_file.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[{run.name}] generation FID {row['generation_fid']:.1f}, sample intensity "
                  f"{row['sample_intensity']:.4f} (data {row['data_intensity']:.4f}), imputation FID "
                  f"{row['imputation_fid']:.1f}, RMSE {row['rmse']:.4f}", flush=True)
    rows = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    if rows:
        write_table(args.out, rows)
        plot(args.out, rows)
        print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
