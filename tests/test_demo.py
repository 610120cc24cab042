"""The shipped demo model: loads without training state, imputes, and never writes into its folder."""

import json

import pytest
import torch

from misgan_core import DataSpec, MisGAN, MisGANConfig, load_complete, make_incomplete, make_mask_process
from misgan_core.demo import DEMO_DIR, SHIPPED, demo_available, export_demo, load_demo


def test_demo_ships_small_and_says_how_it_was_made():
    assert demo_available()
    assert (DEMO_DIR / "model.safetensors").stat().st_size < 6 * 2**20
    config = json.loads((DEMO_DIR / "config.json").read_text())
    assert config["inference_only"] == SHIPPED and config["made_from"]["step"] >= 1000
    assert "imputation_fid" in config["made_from"]


def test_demo_imputes_keeping_observed_pixels(mnist5k):
    gan = load_demo()
    data = make_incomplete(mnist5k, make_mask_process("square", mask_size=14), seed=3).subset(slice(0, 8))
    out = gan.impute(data.x, data.m, draws=4, generator=torch.Generator().manual_seed(0))
    obs = data.m.bool().expand_as(data.x)
    assert torch.equal(out[2][obs], data.x[obs])
    assert not torch.equal(out[0][~obs], out[1][~obs])
    # a trained imputer: its completions are closer to the truth than grey (0.5) everywhere
    err = (out.mean(0) - data.x)[~obs].abs().mean()
    assert err < (0.5 - data.x[~obs]).abs().mean()
    with pytest.raises(ValueError, match="no run folder"):
        gan.save()


def test_export_demo_round_trip(tmp_path):
    source = MisGAN(MisGANConfig(data=DataSpec(limit=128), batch_size=32, steps=2, imputer=True, fid_every=0,
                                 sample_every=1000), run_dir=tmp_path / "run")
    source.train()
    export_demo(tmp_path / "run", tmp_path / "demo", record={"imputation_fid": 1.0})
    demo = MisGAN.load(tmp_path / "demo")
    x, m = source.data.x[:3], source.data.m[:3]
    a = source.impute(x, m, generator=torch.Generator().manual_seed(1))
    b = demo.impute(x, m, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=2e-3)  # float16 storage


def test_demo_data_is_the_embedded_digits():
    assert load_demo().data.x.shape[1:] == load_complete("mnist-5k").x.shape[1:]


@pytest.mark.parametrize("name", ["demo-mnist-fc-square14", "demo-mnist-fc-dropout80"])
def test_paper_budget_demos_ship_with_their_record_and_impute(name):
    from misgan_core import open_run
    from misgan_core.demo import ASSETS, demo_dirs

    folder = ASSETS / name
    assert folder in demo_dirs() and demo_dirs()[0].name == "demo-mnist-fc-square14"  # Inpaint's default
    assert (folder / "model.safetensors").stat().st_size < 6 * 2**20
    made = json.loads((folder / "config.json").read_text())["made_from"]
    from misgan_core.sweep import Budget

    paper_steps = Budget.parse("paper").plan("misgan", 4500, 64)[0]  # mnist-5k's 4,500 training digits
    assert made["command"].startswith("python -m misgan_core sweep") and made["step"] == paper_steps
    assert set(made["figures"]) == {"train", "test"} and made["figures"]["test"]["imputation_fid"] > 0
    run = open_run(folder)
    assert run.step == paper_steps and run.budget()["epochs"] == pytest.approx(1300, rel=0.01)  # 300 + 1000
    x, m = run.data.x[:4], run.data.m[:4]
    out = run.imputer.impute(x, m, draws=2)
    assert torch.equal(out[:, m.bool().expand_as(x)], x[m.bool().expand_as(x)].expand(2, -1))
