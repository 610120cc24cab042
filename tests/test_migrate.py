"""Old run folders through one door (migrate.py): every earlier config.json layout opens as the current one,
and a run that depended on a removed option is refused in one line naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from misgan_core import CheckpointError, DataSpec, MisGAN, MisGANConfig
from misgan_core.cli import main
from misgan_core.migrate import FORMAT, migrate

ASSETS = Path(__file__).resolve().parents[1] / "misgan_core" / "assets"


def _small_run(path: Path, **kw) -> dict:
    config = MisGANConfig(data=DataSpec(dataset="mnist-5k", limit=64, mask="dropout", missing_rate=0.5),
                          batch_size=32, steps=1, fid_every=0, sample_every=0, checkpoint_every=0, **kw)
    MisGAN(config, run_dir=path).train()
    return json.loads((path / "config.json").read_text())


def _rewrite(path: Path, raw: dict) -> None:
    (path / "config.json").write_text(json.dumps(raw))


def test_a_new_run_stores_the_current_format_and_the_shipped_demos_are_the_previous_layout(tmp_path) -> None:
    raw = _small_run(tmp_path / "run")
    assert raw["format"] == FORMAT
    for demo in sorted(ASSETS.glob("demo-*")):
        old = json.loads((demo / "config.json").read_text())
        assert "format" not in old  # written by an earlier version
        new = migrate(old)
        assert new["format"] == FORMAT and "mask_noise" not in new and "ambient_masks" not in new
        assert MisGANConfig.from_dict(old).to_dict()["format"] == FORMAT


def test_flat_and_pre_option_layouts_open_sample_impute_and_resume(tmp_path) -> None:
    run = tmp_path / "run"
    raw = _small_run(run, imputer=True)
    flat = {k: v for k, v in raw.items() if k not in ("format", "data")}
    flat.update({k: v for k, v in raw["data"].items()})  # the data fields at the top level (before DataSpec)
    flat.update(mask_noise=False, ambient_masks="learned", data_critic_sees_mask=False, temperature_final=None,
                temperature_steps=0, tau=None)
    _rewrite(run, flat)
    gan = MisGAN.load(run)
    assert gan.config.data == DataSpec.from_dict(raw["data"]) and gan.config.tau == 0.0
    x, m = gan.data.x[:4], gan.data.m[:4]
    assert gan.impute(x, m, draws=2).shape == (2, 4, 1, 28, 28) and gan.sample(3).shape == (3, 1, 28, 28)
    gan.train(1)
    assert MisGAN.load(run).step == 2
    # an annealed run samples at the lambda its anneal ended at
    _rewrite(run, {**flat, "temperature": 3.0, "temperature_final": 0.5, "temperature_steps": 10})
    assert MisGAN.load(run).config.temperature == 0.5


@pytest.mark.parametrize("removed, value, name", [
    ({"mask_noise": True}, None, "mask_noise"),
    ({"ambient_masks": "real", "mask_critic": False}, None, "ambient_masks"),
    ({"data_critic_sees_mask": True}, None, "data_critic_sees_mask"),
])
def test_a_run_that_depended_on_a_removed_option_is_refused_in_one_line(tmp_path, capsys, removed, value,
                                                                      name) -> None:
    run = tmp_path / "run"
    raw = _small_run(run, imputer=True)
    del raw["format"]
    _rewrite(run, {**raw, **removed})
    with pytest.raises(CheckpointError, match=f"option '{name}', which this version no longer has"):
        MisGAN.load(run)
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert name in err and len(err.splitlines()) == 1


def test_a_format_from_a_newer_version_is_refused(tmp_path) -> None:
    run = tmp_path / "run"
    raw = _small_run(run)
    _rewrite(run, {**raw, "format": FORMAT + 1})
    with pytest.raises(CheckpointError, match="newer misgan_core"):
        MisGAN.load(run)


def test_the_shipped_demos_open_and_impute_through_the_door(tmp_path) -> None:
    for demo in sorted(ASSETS.glob("demo-*")):
        copy = tmp_path / demo.name
        shutil.copytree(demo, copy)
        gan = MisGAN.load(copy)
        x, m = gan.data.x[:2], gan.data.m[:2]
        draws = gan.impute(x, m, draws=2, generator=torch.Generator().manual_seed(0))
        assert torch.equal(draws[:, m.bool().expand_as(x)], x[m.bool()].expand(2, -1))
