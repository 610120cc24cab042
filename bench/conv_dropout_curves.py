"""Conv-MisGAN's imputation FID while it trains under independent dropout, beside FC-MisGAN's and ConvAC's: one
panel per missing rate, imputation FID against hours of training, and a table of each cell's latest figures.

    python bench/conv_dropout_curves.py --conv sweeps/conv-dropout-0.8 sweeps/conv-dropout-0.9 \
        --convac sweeps/convac-dropout-0.8 sweeps/convac-dropout-0.9 \
        --fc docs/reproduction/mnist-dropout/cells/misgan-mnist-5k-dropout80 --uci-digits \
        --out docs/reproduction/conv-dropout

Each --conv folder is a sweep folder (`sweep --methods misgan --arch conv --mask dropout --rates R`) and may still
be training: the figures are its latest. --convac names ConvAC sweeps over the same rates (their curves are
drawn); ConvAC's final figures at the paper budget, from the sweep in docs/reproduction/mnist-dropout, are
drawn as lines. Every cell's metrics.jsonl and config.json are copied to OUT/cells/, so the
figure can be drawn again from the docs alone. --uci-digits also scores each cell's latest checkpoint on the
1,797 UCI digits (`evaluate CELL --dataset uci-digits`), cached in OUT/uci-digits.jsonl by cell and step.
Curves: `imputation_fid` is the first 1,000 training examples, `imputation_fid_test` up to 1,000 held-out ones
(split test; mnist-5k holds 500).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.likelihood_tables import read_jsonl, uci_digits  # noqa: E402
from misgan_core.sweep import training_seconds  # noqa: E402

DOCS_ROWS = ROOT / "docs" / "reproduction" / "mnist-dropout" / "results.jsonl"
COLOURS = {"Conv-MisGAN": "#D55E00", "FC-MisGAN": "#999999", "ConvAC": "#009E73"}
SPLIT_KEYS = {"train": "imputation_fid", "test": "imputation_fid_test"}


def cells_of(sweep: Path) -> list[Path]:
    cells = sorted(p.parent for p in (sweep / "cells").glob("*/metrics.jsonl"))
    if not cells:
        raise SystemExit(f"{sweep} has no cell with a metrics.jsonl yet: start its sweep first")
    return cells


def rate_of(cell: Path) -> float | None:
    if not (cell / "config.json").exists():
        return None
    config = json.loads((cell / "config.json").read_text())
    return float(config.get("data", config).get("missing_rate", 0.0))


def curve(rows: list[dict], key: str) -> list[tuple[int, float, float]]:
    """(step, hours, imputation FID) of every logged point of one split."""
    return [(r["step"], r["time"] / 3600, r[key]) for r in rows if r.get(key) is not None]


def summarise(method: str, cell: Path, rows: list[dict], rate: float) -> dict:
    steps = max((r["step"] for r in rows if "step" in r), default=0)
    hours = max((r.get("time", 0.0) for r in rows), default=0.0) / 3600
    out: dict = {"method": method, "cell": cell.name, "rate": rate, "steps": steps, "hours": round(hours, 2)}
    for split, key in SPLIT_KEYS.items():
        points = curve(rows, key)
        out[f"latest_{split}"] = round(points[-1][2], 2) if points else None
        out[f"latest_{split}_step"] = points[-1][0] if points else None
        best = min(points, key=lambda p: p[2]) if points else None
        out[f"best_{split}"] = round(best[2], 2) if best else None
        out[f"best_{split}_step"] = best[0] if best else None
    return out


def table(summary: list[dict], docs_convac: dict) -> str:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = ["| rate | method | steps trained | hours | latest, split test (step) | best, split test (step) "
             "| latest, split train (step) | uci-digits (1,797) at the latest checkpoint |",
             "|---|---|---|---|---|---|---|---|"]
    for s in sorted(summary, key=lambda s: (s["rate"], s["method"])):
        uci = s.get("uci_digits")
        uci_text = f"{num(uci['imputation_fid'])} / RMSE {uci['rmse']:.3f} (step {uci['steps']:,})" if uci else "-"
        best = "-" if s["best_test"] is None else f"{num(s['best_test'])} ({s['best_test_step']:,})"
        latest = {split: "-" if s[f"latest_{split}"] is None else
                  f"{num(s[f'latest_{split}'])} ({s[f'latest_{split}_step']:,})" for split in SPLIT_KEYS}
        lines.append(f"| {s['rate']:.0%} | {s['method']} | {s['steps']:,} | {s['hours']:.2f} | "
                     f"{latest['test']} | {best} | {latest['train']} | {uci_text} |")
    for (rate, split), row in sorted(docs_convac.items()):
        hours = (training_seconds(row) or 0) / 3600
        test = num(row["imputation_fid"]) if split == "test" else "-"
        lines.append(f"| {rate:.0%} | ConvAC, paper-budget sweep (split {split}) | {row['steps']:,} | {hours:.2f} | "
                     f"{test} "
                     f"| - | {num(row['imputation_fid']) if split == 'train' else '-'} | - |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conv", type=Path, nargs="+", required=True, help="Conv-MisGAN sweep folders, one per rate")
    p.add_argument("--convac", type=Path, nargs="*", default=[],
                   help="ConvAC sweep folders over the same rates (their curves are drawn)")
    p.add_argument("--fc", type=Path, nargs="*", default=[], help="FC-MisGAN cells (folders with metrics.jsonl)")
    p.add_argument("--imputer-runs", type=Path, nargs="*", default=[],
                   help="stand-alone imputers (train --imputer-mode standalone --pretrained CELL) of a Conv cell's Gx: "
                        "in the table, not the figure (their hours start at the imputer's first step)")
    p.add_argument("--uci-digits", action="store_true", help="also score each cell's latest checkpoint on uci-digits")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    by_rate: dict[float, list[tuple[str, Path]]] = {}
    for sweep in args.conv:
        for cell in cells_of(sweep):
            by_rate.setdefault(round(rate_of(cell) or 0.0, 2), []).append(("Conv-MisGAN", cell))
    for sweep in args.convac:
        for cell in cells_of(sweep):
            by_rate.setdefault(round(rate_of(cell) or 0.0, 2), []).append(("ConvAC", cell))
    for cell in args.fc:
        by_rate.setdefault(round(rate_of(cell) or 0.8, 2), []).append(("FC-MisGAN", cell))
    docs_convac = {(round(float(r["rate"]), 2), r["split"]): r for r in read_jsonl(DOCS_ROWS)
                   if r.get("method") == "ConvAC" and round(float(r["rate"]), 2) in by_rate}

    summary = []
    for run in args.imputer_runs:
        s = summarise("Conv-MisGAN's Gx + stand-alone imputer", run, read_jsonl(run / "metrics.jsonl"),
                      round(rate_of(run) or 0.0, 2))
        if args.uci_digits:
            unseen = uci_digits(run, args.out / "uci-digits.jsonl", args.threads)
            s["uci_digits"] = {k: unseen.get(k) for k in ("imputation_fid", "rmse", "steps")}
        target = args.out / "cells" / run.name
        target.mkdir(exist_ok=True)
        for name in ("metrics.jsonl", "config.json"):
            shutil.copyfile(run / name, target / name)
        summary.append(s)
    rates = sorted(r for r, cells in by_rate.items() if any(m == "Conv-MisGAN" for m, _ in cells))
    fig, axes = plt.subplots(1, len(rates), figsize=(5.5 * len(rates), 4.2), squeeze=False)
    for ax, rate in zip(axes[0], rates, strict=True):
        for method, cell in by_rate[rate]:
            rows = read_jsonl(cell / "metrics.jsonl")
            # Named by method and cell: the Conv and FC MisGAN cells of one rate share a cell name.
            prefix = {"Conv-MisGAN": "conv-", "FC-MisGAN": "fc-"}.get(method, "")
            target = args.out / "cells" / f"{prefix}{cell.name}"
            target.mkdir(exist_ok=True)
            for name in ("metrics.jsonl", "config.json"):
                if (cell / name).exists():
                    shutil.copyfile(cell / name, target / name)
            s = summarise(method, cell, rows, rate)
            if args.uci_digits and (cell / "config.json").exists():
                unseen = uci_digits(cell, args.out / "uci-digits.jsonl", args.threads)
                s["uci_digits"] = {k: unseen.get(k) for k in ("imputation_fid", "rmse", "steps")}
            summary.append(s)
            for split, style in (("train", "-"), ("test", "--")):
                points = curve(rows, SPLIT_KEYS[split])
                if points:
                    ax.plot([h for _, h, _ in points], [f for _, _, f in points], style, color=COLOURS[method],
                            label=f"{method}, split {split} ({s['steps']:,} steps)")
        for (r, split), row in docs_convac.items():
            if r == rate:
                ax.axhline(row["imputation_fid"], linestyle=":" if split == "train" else "-.", color=COLOURS["ConvAC"],
                           label=f"ConvAC final, split {split} ({row['steps']:,} steps)")
        conv = [s for s in summary if s["rate"] == rate and s["method"] == "Conv-MisGAN"]
        ax.set_yscale("log")
        ax.set_xlabel("hours of training, one CPU thread each, under each run's own load")
        ax.set_ylabel("imputation FID (LeNet features)")
        ax.set_title(f"dropout {rate:.0%}: Conv-MisGAN at {conv[-1]['steps']:,} generator steps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=110)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "summary.md").write_text(table(summary, docs_convac))
    print(table(summary, docs_convac))


if __name__ == "__main__":
    main()
