"""The run catalogue through its public entry points: every run kind opens, imputes and evaluates the same way
from the CLI and from Python; bad folders give one-line errors; old config.json files still load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from misgan_core import DataSpec, MisGAN, MisGANConfig, list_runs, open_run
from misgan_core.catalog import METHODS, describe, misgan_run_name, run_name
from misgan_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("misgan", "gain", "convac", "mf", "mean", "zero")
SMALL = {"convac": ["--set", "components=4", "--set", "channels=4"], "mf": ["--set", "rank=3", "--set", "iters=3"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny run folder of every kind on the same 64 incomplete digits, made through the CLI."""
    root = tmp_path_factory.mktemp("kinds")
    data = ["--dataset", "mnist-5k", "--limit", "64", "--mask", "dropout", "--missing-rate", "0.5"]
    out = {}
    for kind in KINDS:
        path = root / kind
        if kind == "misgan":
            args = ["train", *data, "--steps", "2", "--batch-size", "16", "--imputer", "--fid-every", "0"]
        else:
            args = ["baseline", kind, *data, "--steps", "2", "--batch-size", "16", *SMALL.get(kind, [])]
        assert main([*args, "--out", str(path)]) == 0, kind
        out[kind] = path
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_impute_writes_the_same_files_for_every_run_kind(runs, kind, tmp_path) -> None:
    assert main(["impute", str(runs[kind]), "-n", "5", "--draws", "3", "--out", str(tmp_path / "imp")]) == 0
    with np.load(tmp_path / "imp.npz") as f:
        assert set(f.files) == {"x_imputed", "m"}
        assert f["x_imputed"].shape == (3, 5, 1, 28, 28) and f["m"].shape == (5, 1, 28, 28)
        observed = f["m"][None].astype(bool).repeat(3, 0)
        truth = open_run(runs[kind]).data.x[:5].numpy()[None].repeat(3, 0)
        assert np.array_equal(f["x_imputed"][observed], truth[observed])  # observed pixels kept exactly
    assert (tmp_path / "imp.png").stat().st_size > 0


@pytest.mark.parametrize("kind", KINDS)
def test_impute_reads_the_users_npz_for_every_run_kind(runs, kind, tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((4, 28, 28)).astype(np.float32)
    x[:, :10] = np.nan
    np.savez(tmp_path / "mine.npz", x=x)
    assert main(["impute", str(runs[kind]), "--input", str(tmp_path / "mine.npz"), "--draws", "2",
                 "--out", str(tmp_path / "out")]) == 0
    with np.load(tmp_path / "out.npz") as f:
        out = f["x_imputed"]
    assert out.shape == (2, 4, 1, 28, 28) and np.isfinite(out).all()
    assert np.array_equal(out[:, :, 0, 10:], np.broadcast_to(x[:, 10:], (2, 4, 18, 28)))


def test_python_api_opens_every_kind_with_budget_and_the_right_abilities(runs) -> None:
    for kind, path in runs.items():
        run = open_run(path)
        assert run.kind == kind and run.spec == DataSpec(limit=64, mask="dropout", missing_rate=0.5)
        assert (run.sampler is not None) == METHODS[kind].generates
        budget = run.budget()
        assert budget["steps"] == (2 if METHODS[kind].trainable else 1) and budget["seconds"] >= 0
        if kind == "misgan":  # 2 generator steps x 5 critic batches of 16 over 64 examples
            assert budget["epochs"] == pytest.approx(2 * 5 * 16 / 64)
        draws = run.imputer.impute(run.data.x[:2], run.data.m[:2], draws=2,
                                   generator=torch.Generator().manual_seed(0))
        assert draws.shape == (2, 2, 1, 28, 28)


def test_listing_names_every_run_by_what_it_is(runs) -> None:
    infos = {i.kind: i for i in list_runs(runs["misgan"].parent, include_demo=False)}
    assert set(infos) == set(KINDS)
    assert infos["misgan"].title == "MisGAN fc + imputer · mnist-5k (first 64), dropout 50% · 2 generator steps"
    assert infos["gain"].title == "GAIN · mnist-5k (first 64), dropout 50% · 2 steps"
    assert infos["mean"].title == "Mean · mnist-5k (first 64), dropout 50%"
    assert all(i.usable and i.imputes for i in infos.values())


def test_evaluate_and_resume_work_for_a_baseline_run(runs, tmp_path, capsys) -> None:
    gain = tmp_path / "gain"
    shutil.copytree(runs["gain"], gain)
    assert main(["resume", str(gain), "--steps", "3"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 5
    assert main(["evaluate", str(runs["convac"]), "--samples", "64"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["method"] == "ConvAC" and result["steps"] == 2 and result["split"] == "train"
    assert result["fid"] > 0 and result["imputation_fid"] > 0 and result["n_imputed"] == 64


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "has no config.json"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("[1, 2]")), "does not hold a JSON object"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text('{"kind": "vae"}')), "'vae' run"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text('{"kind": "mean", "data": 3}')), "data entry"),
])
def test_bad_run_folders_give_one_line_errors(tmp_path, capsys, make, message) -> None:
    path = tmp_path / "bad"
    make(path)
    for command in (["impute", str(path), "--out", str(tmp_path / "o")], ["evaluate", str(path)],
                    ["sample", str(path), "--out", str(tmp_path / "s.png")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    info = next(iter(list_runs(tmp_path, include_demo=False)), None)
    if info is not None:  # listed as unreadable, with the reason, instead of breaking the listing
        assert info.error and not info.usable


def test_sampling_a_run_that_does_not_generate_says_so(runs, tmp_path, capsys) -> None:
    assert main(["sample", str(runs["gain"]), "--out", str(tmp_path / "s.png")]) == 2
    assert "does not generate" in capsys.readouterr().err


def test_a_misgan_run_without_imputer_cannot_impute(tmp_path, capsys) -> None:
    MisGAN(MisGANConfig(data=DataSpec(limit=64), steps=1, batch_size=16, fid_every=0), run_dir=tmp_path / "r").train()
    assert main(["impute", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    assert "has no imputer" in capsys.readouterr().err


def test_run_folders_written_before_dataspec_still_load(runs, tmp_path) -> None:
    """Older config.json files hold the data fields at the top level; they open unchanged."""
    for kind in ("misgan", "gain"):
        old = tmp_path / kind
        shutil.copytree(runs[kind], old)
        config = json.loads((old / "config.json").read_text())
        flat = {**{k: v for k, v in config.items() if k != "data"}, **config["data"]}
        (old / "config.json").write_text(json.dumps(flat))
        run = open_run(old)
        assert run.spec == open_run(runs[kind]).spec and run.step == 2
        assert torch.equal(run.data.m, open_run(runs[kind]).data.m)


def test_names_are_readable_and_deterministic() -> None:
    spec = DataSpec(mask="dropout", missing_rate=0.8)
    assert run_name("gain", spec).startswith("gain-mnist-5k-dropout80-")
    assert run_name("gain", spec) == run_name("gain", DataSpec(mask="dropout", missing_rate=0.8))
    assert run_name("gain", spec) != run_name("gain", spec.replace(mask_seed=1))
    config = MisGANConfig(data=DataSpec(mask="square", mask_size=14), imputer=True)
    assert misgan_run_name(config).startswith("misgan-fc-imp-mnist-5k-square14-")
    assert describe("convac", spec, steps=1000) == "ConvAC · mnist-5k, dropout 80% · 1,000 steps"


@pytest.mark.slow
def test_pip_install_gives_a_misgan_command_with_the_assets(tmp_path) -> None:
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                            "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    assert (target / "misgan_core" / "assets" / "demo-mnist-fc-rect" / "model.safetensors").exists()
    assert (target / "misgan_core" / "assets" / "lenet-mnist.safetensors").exists()
    script = target / "bin" / "misgan"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, str(script), "datasets"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "mnist-5k" and "present" in out.stdout.splitlines()[0]
    shown = subprocess.run([sys.executable, "-c", "import misgan_core; print(misgan_core.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert shown.stdout.strip().startswith(str(target))  # the installed copy, not the checkout


def test_best_finished_run_prefers_finished_work_with_the_lowest_fid(tmp_path) -> None:
    from misgan_core import catalog

    def run(name: str, steps: int, trained: int, fid: float | None) -> catalog.RunInfo:
        last = {"step": trained, **({"imputation_fid": fid} if fid is not None else {})}
        return catalog.RunInfo(tmp_path / name, "misgan", {"steps": steps, "imputer": True}, DataSpec(), last, True)

    trial = run("trial", 4, 4, 50.0)              # finished, but 4 steps: not a tenth of MisGAN's budget
    stopped = run("stopped", 2000, 150, 60.0)     # stopped at 150 of 2000
    good = run("good", 2000, 2000, 90.0)
    better = run("better", 1000, 1000, 80.0)
    unscored = run("unscored", 3000, 3000, None)
    assert not trial.trained_enough and not stopped.trained_enough and good.trained_enough
    assert catalog.finished_runs([trial, stopped, good, better, unscored]) == [good, better, unscored]
    assert catalog.best_finished_run([trial, stopped, good, better, unscored]) is better
    assert catalog.best_finished_run([good, unscored]) is good
    assert catalog.best_finished_run([unscored, run("more", 3000, 3500, None)]).name == "more"
    assert catalog.best_finished_run([trial, stopped]) is None
