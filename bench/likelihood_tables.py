"""The likelihood methods' tables: MIWAE and not-MIWAE sweep cells beside every other method's figures.

    python -m misgan_core sweep --methods miwae,notmiwae --mask dropout --rates 0.8 0.9 --budget steps=3000 \
        --eval-split both --threads 1 --out sweeps/lik-dropout
    python -m misgan_core sweep --methods miwae,notmiwae --mask square --rates 0.75 --budget steps=3000 \
        --eval-split both --threads 1 --out sweeps/lik-square
    python bench/likelihood_tables.py --sweeps sweeps/lik-dropout sweeps/lik-square --out docs/likelihood-methods

For every cell of the given sweep folders it takes the sweep's own rows (split test) and runs
`evaluate CELL --dataset uci-digits` (kept in OUT/uci-digits.jsonl, so a second run only adds what is new). The
other methods' figures are read from the paper-budget sweeps in docs/reproduction/ (split test) and from
docs/unseen-digits/ (uci-digits, the CLI's default budgets), each with the budget that produced it.
Writes OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE_SWEEPS = (ROOT / "docs" / "reproduction" / "mnist-square", ROOT / "docs" / "reproduction" / "mnist-dropout")
UNSEEN = ROOT / "docs" / "unseen-digits" / "results.jsonl"
SQUARE_RATE = 0.75  # the sweep's square 14x14 (1 - 196 / 784)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def setting(row: dict) -> str:
    rate = float(row.get("rate") or row.get("missing_rate") or 0)
    return "square 14x14 (75%)" if row.get("mask") == "square" else f"dropout {rate:.0%}"


def budget(row: dict) -> str:
    steps, epochs = row.get("steps"), row.get("epochs")
    seconds = row.get("train_seconds", row.get("wall_seconds", row.get("seconds")))
    if steps in (None, 1) and (not epochs or float(epochs) == 1):
        return "closed form"
    parts = [f"{int(steps):,} steps" if steps else "", f"{float(epochs):.0f} epochs" if epochs else "",
             f"{float(seconds) / 60:.0f} min" if seconds else ""]
    return ", ".join(p for p in parts if p)


def uci_digits(cell: Path, cache: Path, threads: int) -> dict:
    """`evaluate CELL --dataset uci-digits` of the cell's latest checkpoint, once per (cell, step), kept in cache."""
    from misgan_core import RunDir

    saved = RunDir(cell).saved_step()
    for row in read_jsonl(cache):
        if row["cell"] == cell.name and row.get("steps") in (saved, None):
            return row
    out = subprocess.run([sys.executable, "-m", "misgan_core", "evaluate", str(cell), "--dataset", "uci-digits",
                          "--threads", str(threads)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"evaluate {cell} --dataset uci-digits failed: {out.stderr.strip().splitlines()[-1]}")
    row = {"cell": cell.name, **json.loads(out.stdout.splitlines()[-1])}
    with cache.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweeps", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    from misgan_core.sweep import latest_rows

    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "uci-digits.jsonl"

    test_rows: list[dict] = []
    uci_rows: list[dict] = []
    for sweep in args.sweeps:
        for row in latest_rows(read_jsonl(sweep / "results.jsonl")):  # a cell trained on: its newest row only
            if row.get("split") != "test":
                continue
            test_rows.append({**row, "source": "this page's sweeps"})
            unseen = uci_digits(sweep / "cells" / row["cell"], cache, args.threads)
            uci_rows.append({"setting": setting(row), "method": row["method"], "budget": budget(row),
                             "fid": unseen["imputation_fid"], "rmse": unseen["rmse"]})
    for folder in REFERENCE_SWEEPS:
        for row in read_jsonl(folder / "results.jsonl"):
            if row.get("split") == "test":
                test_rows.append({**row, "source": f"docs/reproduction/{folder.name} (paper budget)"})
    for row in read_jsonl(UNSEEN):
        if row["where"].startswith("uci-digits"):
            square = row["missingness"].startswith("square")
            uci_rows.append({"setting": "square 14x14 (75%)" if square else "dropout 80%", "method": row["method"],
                             "budget": budget(row), "fid": row["imputation_fid"], "rmse": row["rmse"]})

    lines = ["## mnist-5k, split test (500 held-out digits)", "",
             "| missingness | method | budget | imputation FID | RMSE (draws) | RMSE (weighted mean) | source |",
             "|---|---|---|---|---|---|---|"]
    key = lambda r: (setting(r), r["imputation_fid"])  # noqa: E731
    for row in sorted(test_rows, key=key):
        mean = row.get("rmse_conditional_mean")
        lines.append(f"| {setting(row)} | {row['method']} | {budget(row)} | {row['imputation_fid']:.1f} | "
                     f"{row['rmse']:.4f} | {'-' if mean is None else f'{mean:.4f}'} | {row['source']} |")
    lines += ["", "## uci-digits (1,797 digits by other writers, never trained on)", "",
              "| missingness | method | budget | imputation FID | RMSE |", "|---|---|---|---|---|"]
    for row in sorted(uci_rows, key=lambda r: (r["setting"], r["fid"])):
        lines.append(f"| {row['setting']} | {row['method']} | {row['budget']} | {row['fid']:.1f} | "
                     f"{row['rmse']:.4f} |")
    lines += ["", "Imputation FID: LeNet features, against the complete images of the same examples. Budgets: "
              "steps, epochs and minutes of training on one CPU thread of a shared 2-core machine."]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
