"""Conv-MisGAN's imputation FID while it trains under independent dropout, beside FC-MisGAN's curve and ConvAC's
final figure: one panel per missing rate, imputation FID against hours of training.

    python bench/conv_dropout_curves.py --conv sweeps/conv-dropout-0.8 sweeps/conv-dropout-0.9 \
        --fc docs/reproduction/mnist-dropout/cells/misgan-mnist-5k-dropout80 --out docs/reproduction/conv-dropout

Each --conv folder is a sweep folder (`sweep --methods misgan --arch conv --mask dropout --rates R`); its cell's
metrics.jsonl is copied to OUT/cells/ so the figure can be drawn again from the docs alone. ConvAC's figures are
the paper-budget sweep's (docs/reproduction/mnist-dropout/results.jsonl). Curves: `imputation_fid` is measured on
the first 1,000 training examples, `imputation_fid_test` (where logged) on 1,000 held-out ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONVAC_ROWS = ROOT / "docs" / "reproduction" / "mnist-dropout" / "results.jsonl"


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cell_of(sweep: Path) -> Path:
    cells = sorted((sweep / "cells").glob("*/metrics.jsonl"))
    if not cells:
        raise SystemExit(f"{sweep} has no cell with a metrics.jsonl yet")
    return cells[0].parent


def rate_of(cell: Path) -> float:
    config = json.loads((cell / "config.json").read_text()) if (cell / "config.json").exists() else {}
    data = config.get("data", config)
    return float(data.get("missing_rate", 0.0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conv", type=Path, nargs="+", required=True, help="Conv-MisGAN sweep folders, one per rate")
    p.add_argument("--fc", type=Path, nargs="*", default=[], help="FC-MisGAN cells (folders with metrics.jsonl)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    convac = {}
    for row in read_metrics(CONVAC_ROWS):
        if row.get("method") == "ConvAC":
            convac[(round(float(row["rate"]), 2), row["split"])] = row
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    fc_curves = {}
    for cell in args.fc:
        fc_curves[round(rate_of(cell) or 0.8, 2)] = (cell.name, read_metrics(cell / "metrics.jsonl"))
    summary = []
    fig, axes = plt.subplots(1, len(args.conv), figsize=(5.5 * len(args.conv), 4), squeeze=False)
    for ax, sweep in zip(axes[0], args.conv, strict=True):
        cell = cell_of(sweep)
        rate = round(rate_of(cell), 2)
        rows = read_metrics(cell / "metrics.jsonl")
        target = args.out / "cells" / cell.name
        target.mkdir(exist_ok=True)
        shutil.copyfile(cell / "metrics.jsonl", target / "metrics.jsonl")
        shutil.copyfile(cell / "config.json", target / "config.json")
        for key, style, label in (("imputation_fid", "-", "Conv-MisGAN, training examples"),
                                  ("imputation_fid_test", "--", "Conv-MisGAN, held-out examples")):
            points = [(r["time"] / 3600, r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), style, color="#D55E00", label=label)
        if rate in fc_curves:
            name, fc_rows = fc_curves[rate]
            points = [(r["time"] / 3600, r["imputation_fid"]) for r in fc_rows if r.get("imputation_fid") is not None]
            ax.plot(*zip(*points, strict=True), "-", color="#999999", label="FC-MisGAN, training examples")
        for split, style in (("train", ":"), ("test", "-.")):
            row = convac.get((rate, split))
            if row:
                ax.axhline(row["imputation_fid"], linestyle=style, color="#009E73",
                           label=f"ConvAC, split {split} ({row['steps']:,} steps)")
        last = rows[-1]
        steps = max((r["step"] for r in rows if "step" in r), default=0)
        hours = max((r.get("time", 0) for r in rows), default=0) / 3600
        fids = [r for r in rows if r.get("imputation_fid") is not None]
        summary.append({"cell": cell.name, "rate": rate, "steps": steps, "hours": round(hours, 2),
                        "last_imputation_fid": fids[-1]["imputation_fid"] if fids else None,
                        "best_imputation_fid": min((r["imputation_fid"] for r in fids), default=None),
                        "last_record": last})
        ax.set_yscale("log")
        ax.set_xlabel("hours of training (one CPU thread)")
        ax.set_ylabel("imputation FID (LeNet features)")
        ax.set_title(f"dropout {rate:.0%}: {steps:,} generator steps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=110)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
