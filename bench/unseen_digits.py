"""The shipped demo models against the baselines as the CLI fits them by default, on
mnist-5k's 500 held-out digits and on digits the project has never seen (uci-digits: 1,797 digits by other
writers, data.uci-digits).

    python bench/unseen_digits.py --out sweeps/unseen-digits [--threads 2]

For each demo's missingness (square 14x14 observed, 75% missing; dropout 80%) it fits `baseline KIND` with its
defaults on mnist-5k's split `train` (the demos' own training digits) into OUT/cells, then evaluates the demo
and every baseline with `evaluate RUN --split test` and `evaluate RUN --dataset uci-digits`. Running it again
reuses fitted cells and finishes what is missing. Writes OUT/results.jsonl and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from misgan_core.catalog import METHODS, open_run  # noqa: E402
from misgan_core.demo import ASSETS  # noqa: E402
from misgan_core.evaluation import evaluate_opened  # noqa: E402

BASELINES = ("convac", "gain", "mf", "mean", "zero")
SETTINGS = {  # demo folder -> the mask options its training used
    "demo-mnist-fc-square14": ["--mask", "square", "--mask-size", "14"],
    "demo-mnist-fc-dropout80": ["--mask", "dropout", "--missing-rate", "0.8"],
}
WHERE = (("test", None, "mnist-5k held-out (500)"), ("test", "uci-digits", "uci-digits (1,797)"))


def fit_baseline(kind: str, mask_args: list[str], out: Path, threads: int) -> None:
    """`python -m misgan_core baseline KIND` with its defaults, or `resume` where an earlier call stopped."""
    target = METHODS[kind].default_steps if METHODS[kind].trainable else 1
    if out.exists():
        done = open_run(out).budget().get("steps") or 0
        if done >= target:
            return
        cmd = ["resume", str(out), "--until", str(target)]
    else:
        cmd = ["baseline", kind, "--dataset", "mnist-5k", "--split", "train", *mask_args, "--out", str(out)]
    subprocess.run([sys.executable, "-m", "misgan_core", *cmd, "--threads", str(threads)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    rows = []
    for demo, mask_args in SETTINGS.items():
        runs = {"misgan": ASSETS / demo}
        for kind in BASELINES:
            runs[kind] = args.out / "cells" / f"{kind}-{demo.removeprefix('demo-mnist-fc-')}"
            fit_baseline(kind, mask_args, runs[kind], args.threads)
        for path in runs.values():
            run = open_run(path)
            for split, dataset, where in WHERE:
                result = evaluate_opened(run, split=split, dataset=dataset)
                row = {"demo": demo, "method": result["method"], "where": where, "split_label": result["split_label"],
                       "missingness": result["missingness"], "imputation_fid": result["imputation_fid"],
                       "rmse": result["rmse"], "steps": result.get("steps"), "epochs": result.get("epochs"),
                       "seconds": result.get("seconds"), "label": result["label"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    (args.out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (args.out / "results.md").write_text(table(rows))
    print(table(rows))


def table(rows: list[dict]) -> str:
    lines = ["| missingness | method | budget | " + " | ".join(f"{w}: imputation FID / RMSE" for *_, w in WHERE)
             + " |", "|---|---|---|" + "---|" * len(WHERE)]
    keys = list(dict.fromkeys((r["missingness"], r["method"]) for r in rows))
    for missingness, method in keys:
        cells = {r["where"]: r for r in rows if (r["missingness"], r["method"]) == (missingness, method)}
        first = next(iter(cells.values()))
        budget = "closed form" if not first["steps"] or first["steps"] <= 1 else (
            f"{first['steps']:,} steps, {first['epochs']:.0f} epochs, {first['seconds']:.0f} s")
        scores = []
        for *_, where in WHERE:
            r = cells.get(where)
            scores.append("-" if r is None else f"{r['imputation_fid']:.1f} / {r['rmse']:.3f}")
        lines.append(f"| {missingness} | {method} | {budget} | " + " | ".join(scores) + " |")
    lines.append("")
    lines.append(f"FID: {rows[0]['label']}, against each set's complete images. The baselines are `python -m "
                 f"misgan_core baseline KIND` with its defaults on mnist-5k split train; MisGAN is the shipped demo.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
