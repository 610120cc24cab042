"""The sweep command from a fresh folder: cells, results, table and figures; a rerun skips finished cells; a
killed sweep resumes its unfinished cell; budgets and square sides; evaluate on the held-out split."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from misgan_core.catalog import open_run
from misgan_core.cli import main
from misgan_core.runs import RunDir
from misgan_core.sweep import Budget, read_sweep, square_side_for

ROOT = Path(__file__).resolve().parents[1]
TINY = ["sweep", "--methods", "misgan,gain,mean", "--mask", "dropout", "--rates", "0.5", "0.8", "--limit", "128",
        "--budget", "steps=3", "--threads", "1"]


@pytest.mark.slow
def test_a_tiny_sweep_writes_cells_results_and_figures_and_a_rerun_finishes_at_once(tmp_path, capsys,
                                                                                   monkeypatch) -> None:
    out = tmp_path / "sweep"
    assert main([*TINY, "--out", str(out)]) == 0
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert cells == sorted(f"{m}-mnist-5k-dropout{r}" for m in ("misgan", "gain", "mean") for r in (50, 80))
    rows = read_sweep(out)
    assert len(rows) == 12 and {r["split"] for r in rows} == {"train", "test"}
    for r in rows:
        assert r["steps"] == (1 if r["kind"] == "mean" else 3) and r["budget"] == "steps=3"
        assert r["imputation_fid"] > 0 and r["train_seconds"] >= 0 and r["threads"] == 1 and r["device"] == "cpu"
        assert (r["fid"] is not None) == (r["kind"] == "misgan")  # generation FID where the method generates
        assert r["n"] == (128 if r["split"] == "train" else 500)  # test: mnist-5k's 500 held-out digits
    for name in ("imputation_fid-test", "imputation_fid-train", "rmse-test", "fid-train"):
        assert (out / f"{name}.html").stat().st_size > 1000 and (out / f"{name}.png").stat().st_size > 1000
    table = (out / "results.md").read_text()
    assert table.count("| MisGAN | steps=3 | 3 |") == 4 and "FID (LeNet features)" in table
    capsys.readouterr()

    started = time.perf_counter()
    assert main([*TINY, "--out", str(out)]) == 0
    assert time.perf_counter() - started < 20
    assert capsys.readouterr().err.count("done already, skipped") == 6
    assert len(read_sweep(out)) == 12

    # stopped between a cell's two evaluation splits: the rerun adds the missing split only
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    assert main([*TINY, "--out", str(out)]) == 0
    rows = read_sweep(out)
    assert len(rows) == 12 and len({(r["cell"], r["split"]) for r in rows}) == 12
    capsys.readouterr()

    # where plotly is not installed (only the engine's packages, as on a GPU box) the rerun still writes
    # the PNGs and the table, and says how to get the HTML figures
    for html in out.glob("*.html"):
        html.unlink()
    (out / "rmse-test.png").unlink()
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly now raises ImportError
    assert main([*TINY, "--out", str(out)]) == 0
    assert "plotly is not installed" in capsys.readouterr().err
    assert not list(out.glob("*.html")) and (out / "rmse-test.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_killed_sweep_resumes_its_unfinished_cell(tmp_path) -> None:
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "misgan_core", "sweep", "--methods", "misgan", "--mask", "square", "--rates",
           "0.75", "--limit", "128", "--budget", "steps=400", "--eval-split", "train", "--threads", "1",
           "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cell = out / "cells" / "misgan-mnist-5k-square14"
    deadline = time.time() + 120
    while time.time() < deadline and not (cell / "model.safetensors").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert (cell / "model.safetensors").exists(), "no checkpoint after the first step"
    made = (cell / "config.json").stat().st_mtime
    raw = (cell / "model.safetensors").read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # safetensors: length, then JSON
    assert int(header["__metadata__"]["step"]) < 400

    # Ctrl-C on the resumed sweep: a checkpoint, and the way on is the same command
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    before = len(RunDir(cell).read_metrics())
    deadline = time.time() + 120
    while time.time() < deadline and len(RunDir(cell).read_metrics()) <= before:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "checkpoint was written" in err and "run the same sweep command again" in err

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (cell / "config.json").stat().st_mtime == made  # the same run folder, resumed, not remade
    assert open_run(cell).step == 400
    assert [r["steps"] for r in read_sweep(out)] == [400]


def test_budgets_parse_and_plan() -> None:
    # MisGAN: 300 epochs alone + 1000 with its imputer, 70 batches an epoch, n_critic 5
    assert Budget.parse("paper").plan("misgan", 4500, 64) == (18200, None)
    assert Budget.parse("paper").imputer_start(4500, 64) == 4200
    assert Budget.parse("steps=9").imputer_start(4500, 64) == 0
    assert Budget.parse("paper").plan("gain", 4500, 128) == (300 * 35, None)
    assert Budget.parse("minutes=2.5").plan("convac", 4500, 128)[1] == 150.0
    assert Budget.parse("steps=7").plan("gain", 10, 128) == (7, None)
    assert Budget.parse("quick").plan("mean", 4500, 128) == (1, None)
    for bad in ("fast", "steps=0", "steps=1.5", "minutes=-1", "paper=3", "steps=", "minutes=inf", "minutes=nan",
                "steps=inf"):
        with pytest.raises(ValueError, match="budget must be"):
            Budget.parse(bad)


def test_square_sides_give_the_asked_missing_rates() -> None:
    assert square_side_for(0.75, 28, 28) == 14
    for rate in (0.1, 0.5, 0.8, 0.9):
        k = square_side_for(rate, 28, 28)
        assert abs((1 - k * k / 784) - rate) < 0.03


def test_bad_sweep_options_are_one_line_errors(tmp_path, capsys) -> None:
    for args, message in ((["--methods", "vae"], "unknown method 'vae'"), (["--rates", "1.0"], "strictly between"),
                          (["--budget", "forever"], "budget must be")):
        assert main(["sweep", *args, "--out", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_evaluate_on_the_held_out_split_for_misgan_and_a_baseline(tmp_path, capsys) -> None:
    data = ["--limit", "64", "--mask", "dropout", "--missing-rate", "0.5"]
    assert main(["train", *data, "--steps", "2", "--batch-size", "16", "--imputer", "--fid-every", "0",
                 "--out", str(tmp_path / "gan")]) == 0
    assert main(["baseline", "mf", *data, "--set", "rank=3", "--out", str(tmp_path / "mf")]) == 0
    capsys.readouterr()
    for run in ("gan", "mf"):
        assert main(["evaluate", str(tmp_path / run), "--split", "test", "--samples", "50"]) == 0
        captured = capsys.readouterr()
        result = json.loads(captured.out.strip().splitlines()[-1])
        assert result["split"] == "test" and result["n_imputed"] == 500 and result["imputation_fid"] > 0
        assert "500 held-out examples" in captured.err
    # a run that trained on every mnist-5k digit has nothing held out, and says so
    assert main(["baseline", "mean", "--split", "all", "--out", str(tmp_path / "all")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "all"), "--split", "test"]) == 2
    assert "trained on all 5,000 mnist-5k digits" in capsys.readouterr().err
    assert main(["baseline", "mean", "--split", "all", "--limit", "256", "--out", str(tmp_path / "some")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "some"), "--split", "test"]) == 2
    assert "this run trained on the first 256 mnist-5k digits of split 'all'" in capsys.readouterr().err


def test_evaluate_on_digits_no_run_trained_on(tmp_path, capsys) -> None:
    data = ["--limit", "64", "--mask", "square", "--mask-size", "14", "--split", "train"]
    assert main(["train", *data, "--steps", "2", "--batch-size", "16", "--imputer", "--fid-every", "0",
                 "--out", str(tmp_path / "gan")]) == 0
    assert main(["baseline", "mf", *data, "--set", "rank=3", "--out", str(tmp_path / "mf")]) == 0
    capsys.readouterr()
    for run in ("gan", "mf"):
        assert main(["evaluate", str(tmp_path / run), "--dataset", "uci-digits"]) == 0
        captured = capsys.readouterr()
        result = json.loads(captured.out.strip().splitlines()[-1])
        # every UCI digit imputed under the run's own missingness; no generation FID against another dataset
        assert result["dataset"] == "uci-digits" and result["n_imputed"] == 1797 and result["fid"] is None
        assert abs(result["missing_rate"] - 0.75) < 1e-6 and result["imputation_fid"] > 0
        assert "uci-digits: 1,797 examples of another dataset" in captured.err and "imputation_fid" in captured.err
    assert main(["train", *data, "--steps", "1", "--batch-size", "16", "--fid-every", "0",
                 "--out", str(tmp_path / "no-imputer")]) == 0
    np_data = tmp_path / "own.npz"
    import numpy as np
    np.savez(np_data, x=np.random.default_rng(0).random((32, 28, 28), dtype=np.float32),
             m=np.random.default_rng(1).random((32, 28, 28)) > 0.5)
    assert main(["baseline", "mean", "--dataset", str(np_data), "--out", str(tmp_path / "own")]) == 0
    capsys.readouterr()
    for run, args, message in (
            ("mf", ["--dataset", "cifar10"], "3x32x32 but this run's are 1x28x28"),
            ("mf", ["--dataset", "svhn"], "unknown dataset 'svhn'"),
            ("mf", ["--dataset", "uci-digits", "--split", "train"], "drop --split train"),
            ("mf", ["--dataset", "uci-digits", "--samples", "100"], "drop --samples"),
            ("mf", ["--dataset", "mnist-5k"], "is this run's own dataset; evaluate it with --split test"),
            ("no-imputer", ["--dataset", "uci-digits"], "has no imputer"),
            ("own", ["--dataset", "uci-digits"], "brings its own masks")):
        assert main(["evaluate", str(tmp_path / run), *args]) == 2, (run, args)
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_misgan_options_reach_its_cells_and_a_cell_made_with_others_is_not_reused(tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--methods", "misgan", "--rates", "0.8", "--limit", "64", "--budget", "steps=2",
            "--eval-split", "train", "--threads", "1", "--out", str(out)]
    assert main([*args, "--misgan-set", "mask_activation=stretched", "--misgan-set", "imputer_sees_mask=true",
                 "--misgan-set", "precision=bf16"]) == 0
    config = open_run(out / "cells" / "misgan-mnist-5k-dropout80").model.config
    assert config.mask_activation == "stretched" and config.imputer_sees_mask and config.imputer
    assert config.precision == "bf16"
    [row] = read_sweep(out)
    assert row["options"] == {"mask_activation": "stretched", "imputer_sees_mask": True, "precision": "bf16"}
    assert "mask_activation=stretched" in (out / "results.md").read_text()
    capsys.readouterr()

    assert main(args) == 2  # the defaults (sigmoid, no mask input) would reuse a cell trained otherwise
    err = capsys.readouterr().err.strip()
    assert "was trained with mask_activation='stretched'" in err and len(err.splitlines()) == 1
    assert main([*args, "--misgan-set", "mask_activation=stretched", "--misgan-set", "imputer_sees_mask=true"]) == 2
    assert "was trained with precision='bf16'" in capsys.readouterr().err  # nor a bf16 cell for fp32
    assert len(read_sweep(out)) == 1
    # a cell from before a default changed (a self-masking cell at the old lambda 0.66, one draw for both
    # critics) is compared with the defaults a new cell would store, not reused
    sm = [*args[:-1], str(tmp_path / "sm"), "--misgan-set", "mask_model=self-masking"]
    assert main(sm) == 0
    config_path = tmp_path / "sm" / "cells" / "misgan-mnist-5k-dropout80" / "config.json"
    raw = json.loads(config_path.read_text())
    assert raw["temperature"] == 3.0
    raw["temperature"] = 0.66
    config_path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert main(sm) == 2
    assert "was trained with temperature=0.66, not 3.0" in capsys.readouterr().err
    for option, message in (("bogus=1", "unknown MisGAN option 'bogus'"), ("imputer_sees_mask=3", "not a bool"),
                            ("mask_activation=soft", "mask activation must be one of")):
        assert main([*args[:-1], str(tmp_path / "other"), "--misgan-set", option]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_a_miwae_cell_made_with_other_networks_is_not_reused_and_conv_needs_28x28(tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--methods", "mean,miwae", "--rates", "0.8", "--limit", "64", "--budget", "steps=2",
            "--eval-split", "train", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    before = read_sweep(out)
    capsys.readouterr()
    assert main([*args, "--arch", "conv"]) == 2  # refused before any cell, the mean cell included, is touched
    err = capsys.readouterr().err.strip()
    assert "was made with arch='fc', not 'conv'" in err and "--arch fc" in err and len(err.splitlines()) == 1
    assert read_sweep(out) == before and open_run(out / "cells" / "miwae-mnist-5k-dropout80").config["options"] == {
        "arch": "fc"}
    assert main(["sweep", "--dataset", "cifar10", "--methods", "miwae", "--arch", "conv", "--rates", "0.8",
                 "--budget", "steps=2", "--out", str(tmp_path / "cifar")]) == 2
    err = capsys.readouterr().err.strip()
    assert "28x28" in err and "--arch fc" in err and not (tmp_path / "cifar" / "cells").exists()


@pytest.mark.slow
def test_the_prepared_gpu_script_runs_its_cells_and_stops_at_a_failed_smoke_run(tmp_path) -> None:
    """bench/gpu_conv_dropout.sh, run here on the CPU with a tiny budget: the smoke run, then both dropout
    cells, and at most 8 files in OUT (what the device tool brings back); with a device that does not exist
    it stops after the smoke run with its exit status."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"),
           "DEVICE": "cpu", "BUDGET": "steps=2", "SMOKE_STEPS": "1", "LIMIT": "128"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_conv_dropout.sh")], env=env, capture_output=True,
                          text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) <= 8 and "summary.txt" in files
    for rate in ("0.8", "0.9"):
        rows = [json.loads(x) for x in (tmp_path / "out" / f"results-dropout-{rate}.jsonl").read_text().splitlines()]
        assert {r["split"] for r in rows} == {"train", "test"} and all(r["steps"] == 2 for r in rows)
        assert {r["rate"] for r in rows} == {float(rate)}
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "misgan-mnist-5k-dropout80: 2 generator steps" in summary and "dropout90: 2 generator steps" in summary

    env.update(OUT=str(tmp_path / "out2"), WORK=str(tmp_path / "work2"), DEVICE="tpu")
    failed = subprocess.run(["bash", str(ROOT / "bench" / "gpu_conv_dropout.sh")], env=env, capture_output=True,
                            text=True, timeout=200)
    assert failed.returncode != 0 and "smoke run failed" in failed.stderr
    assert not (tmp_path / "work2" / "dropout-0.8").exists()


def test_sweep_figures_name_the_budget_span_the_rates_present_and_keep_every_marker_visible(tmp_path) -> None:
    from misgan_core import sweep

    def row(method: str, rate: float, fid: float, budget: str = "paper") -> dict:
        return {"cell": f"{method}-{rate}", "budget": budget, "split": "train", "method": method, "rate": rate,
                "missing_rate": rate, "imputation_fid": fid}

    # MisGAN and ConvAC at the same point: one sits on the other unless their markers differ
    rows = [row("MisGAN", 0.5, 10.0), row("ConvAC", 0.5, 10.0), row("Mean", 0.5, 40.0, "quick")]
    fig = sweep.figure(rows, "imputation_fid", "train")
    names = [t.name for t in fig.data]
    assert names == ["ConvAC (paper budget)", "Mean (quick budget)", "MisGAN (paper budget)"]
    assert len({t.marker.symbol for t in fig.data}) == 3 and len({t.marker.size for t in fig.data}) == 3
    lo, hi = fig.layout.xaxis.range
    assert lo < 0.5 < hi and hi - lo < 0.2  # one rate: the axis spans it, not 0% to 150%
    assert list(fig.layout.xaxis.tickvals) == [0.5]
    assert sweep.budget_words("minutes=5") == "5-minute budget" and sweep.budget_words("steps=3") == "3-step budget"
    sweep._png(rows, "imputation_fid", "train", tmp_path / "f.png")  # the command's figure takes the same labels
    assert (tmp_path / "f.png").stat().st_size > 0


@pytest.mark.slow
def test_a_small_sweep_draws_quality_against_time_with_every_method_and_the_time_to_reach(tmp_path) -> None:
    out = tmp_path / "sweep"
    assert main(["sweep", "--methods", "mean,convac,misgan", "--mask", "dropout", "--rates", "0.8", "--limit", "64",
                 "--budget", "steps=4", "--eval-every", "2", "--eval-split", "test", "--threads", "1",
                 "--out", str(out)]) == 0
    rows = read_sweep(out)
    curves = {r["kind"]: r["curve"] for r in rows}
    assert set(curves) == {"mean", "convac", "misgan"}
    for kind, curve in curves.items():
        assert curve["split"] == "test" and curve["n"] == 500  # the held-out subset: mnist-5k's 500 digits
        steps = [p[0] for p in curve["points"]]
        assert steps == ([1] if kind == "mean" else [2, 4])  # a closed-form fit is one point
        assert all(p[1] >= 0 and p[2] > 0 for p in curve["points"])

    html = (out / "quality-time-test-mnist-5k-dropout80.html").read_text()
    for name in ("Mean (4-step budget)", "ConvAC (4-step budget)", "MisGAN (4-step budget)", "split test"):
        assert name in html, name
    assert (out / "quality-time-test-mnist-5k-dropout80.png").stat().st_size > 1000

    table = (out / "results.md").read_text()
    assert "## Time to reach" in table and "split test" in table
    reach = json.loads((out / "time-to-reach.json").read_text())
    assert len(reach) == 6  # every ordered pair of the three methods
    finals = {r["method"]: r["imputation_fid"] for r in rows}
    for r in reach:
        target = next(f for m, f in finals.items() if r["target"].startswith(m + " "))
        assert r["target_fid"] == pytest.approx(target, abs=0.01)
        if r["seconds"] is None:
            assert "not reached" in table
        else:
            assert f"{r['seconds']:,.1f} s ({r['step']:,} " in table


def test_time_to_reach_compares_figures_measured_on_the_same_examples() -> None:
    """Logged points impute a fixed subset of a split, final figures the whole split; the two score differently,
    so a logged point is held against the other's logged point at its last step, never its whole-split figure."""
    from misgan_core.curves import Curve, CurvePoint, time_to_reach

    mean = Curve("Mean", "Mean", "train", 1000, (CurvePoint(1, 0.6, 925.0),), final=CurvePoint(1, 0.6, 940.0),
                 final_n=4500)
    other = Curve("GAIN", "GAIN", "train", 1000, (CurvePoint(100, 10.0, 990.0), CurvePoint(200, 20.0, 915.0)),
                  final=CurvePoint(200, 20.0, 930.0), final_n=4500)
    unlogged = Curve("MF", "MF", "train", None, (), final=CurvePoint(1, 3.0, 935.0), final_n=4500)
    reach = {(r["method"], r["target"]): r["seconds"] for r in time_to_reach([mean, other, unlogged])}
    assert reach[("Mean", "GAIN")] is None       # 925 on the subset is above GAIN's 915 there; 940 is above 930
    assert reach[("GAIN", "Mean")] == 20.0       # 915 <= Mean's 925 on the subset at step 200, not 990 at 100
    assert reach[("Mean", "MF")] is None         # MF logged nothing: only whole-split figures compare, 940 > 935
    assert reach[("GAIN", "MF")] == 20.0 and reach[("MF", "GAIN")] is None   # 930 <= 935 on the whole split


def test_time_to_reach_is_the_first_point_at_or_below_the_other_final_figure() -> None:
    from misgan_core.curves import Curve, CurvePoint, figure, reach_table, time_to_reach

    slow = Curve("MisGAN", "MisGAN (paper budget)", "test", 500,
                 (CurvePoint(100, 60.0, 300.0), CurvePoint(200, 120.0, 90.0), CurvePoint(300, 180.0, 40.0)),
                 "generator steps", 0.1, final=CurvePoint(300, 180.0, 38.0), final_n=500)
    fast = Curve("ConvAC", "ConvAC (paper budget)", "test", 500, (CurvePoint(50, 5.0, 80.0),), final=CurvePoint(
        60, 6.0, 70.0), final_n=500)
    fit = Curve("Mean", "Mean (paper budget)", "test", 500, (CurvePoint(1, 0.0, 200.0),), "fit", 1.0,
                final=CurvePoint(1, 0.0, 200.0), final_n=500)
    reach = {(r["method"].split()[0], r["target"].split()[0]): r for r in time_to_reach([slow, fast, fit])}
    assert (reach[("MisGAN", "ConvAC")]["seconds"], reach[("MisGAN", "ConvAC")]["step"]) == (180.0, 300)
    assert reach[("MisGAN", "Mean")]["seconds"] == 120.0  # 90 <= 200 at step 200; 300 at step 100 was not
    assert reach[("ConvAC", "MisGAN")]["seconds"] is None  # never at 38
    assert reach[("ConvAC", "Mean")]["seconds"] == 5.0 and reach[("Mean", "ConvAC")]["seconds"] is None
    table = reach_table([slow, fast, fit])
    assert "not reached" in table and "180.0 s (300 generator steps)" in table
    fig = figure([slow, fast, fit])
    assert fig.layout.xaxis.type == "log" and "split test" in fig.layout.yaxis.title.text
    assert {t.legendgroup for t in fig.data} == {c.name for c in (slow, fast, fit)}
    assert min(min(t.x) for t in fig.data) > 0  # a fit in no measurable time still shows on the log axis
    hover = " ".join(" ".join(t.hovertext) for t in fig.data)
    assert "200 generator steps, 20 epochs, 120.0 s of training" in hover and "500 examples" in hover
