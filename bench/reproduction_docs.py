"""Assemble a docs/reproduction/NAME folder (results.jsonl, results.md, the figures) from sweep folders.

    python bench/reproduction_docs.py --out docs/reproduction/mnist-square \\
        --rows docs/reproduction/mnist-square/results.jsonl sweeps/mnist-square-v3

Rows are taken in order; a later row for the same (cell, budget, split) replaces an earlier one, except that
when a later source has MisGAN rows, the earlier MisGAN rows stay as method `--relabel` ("MisGAN (earlier)"),
so both protocols show and no line joins the two. The sweep folders' training logs are copied (their live-FID
lines only) so the imputation-FID-while-training curves can be drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from misgan_core.runs import read_jsonl  # noqa: E402
from misgan_core.sweep import RESULTS, write_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", nargs="+", required=True, help="results.jsonl files or sweep folders")
    parser.add_argument("--relabel", default="MisGAN (earlier)")
    args = parser.parse_args()
    out = Path(args.out)
    # "MisGAN (earlier)" -> cells "earlier-...": the relabelled rows' own curves, apart from the new ones.
    prefix = "-".join("".join(ch if ch.isalnum() else " " for ch in args.relabel.lower()).split()[1:]) or "earlier"
    rows: list[dict] = []
    for source in map(Path, args.rows):
        path = source / RESULTS if source.is_dir() else source
        new = [r for r in read_jsonl(path) if isinstance(r, dict)]
        if any(r.get("kind") == "misgan" for r in new):  # one protocol per line: the earlier ones step aside
            for r in rows:
                if r.get("kind") == "misgan" and r["method"] == "MisGAN":
                    log = out / "cells" / r["cell"]
                    r["method"], r["cell"] = args.relabel, f"{prefix}-{r['cell']}"
                    if log.is_dir() and not (out / "cells" / r["cell"]).exists():
                        log.rename(out / "cells" / r["cell"])  # its curve stays with its rows
        if source.is_dir():
            for cell in {r["cell"] for r in new}:
                log = source / "cells" / cell / "metrics.jsonl"
                if log.exists():
                    (out / "cells" / cell).mkdir(parents=True, exist_ok=True)
                    lines = [line for line in log.read_text().splitlines() if '"imputation_fid"' in line]
                    (out / "cells" / cell / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        rows += new
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    for written in write_report(out, rows):
        print(written)


if __name__ == "__main__":
    main()
