"""Recipes: `paper` (appendix D exactly) and `recommended` (the default) fill the options left unset; a run's
config.json records its recipe and every value it implies; an option given explicitly wins."""

from __future__ import annotations

import json

import pytest

from misgan_core import MisGAN, MisGANConfig
from misgan_core.cli import main
from misgan_core.config import RECIPES, RecipeRule

TINY = ["--dataset", "mnist-5k", "--limit", "64", "--batch-size", "32", "--steps", "1", "--imputer", "--fid-every", "0"]


def test_train_help_offers_the_recipes(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--recipe" in out and "recommended" in out and "paper" in out


@pytest.mark.parametrize("args, recipe", [([], "recommended"), (["--recipe", "paper"], "paper")])
def test_a_run_records_its_recipe_and_every_value_it_implies(tmp_path, args, recipe) -> None:
    assert main(["train", *TINY, "--out", str(tmp_path / "run"), *args]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"] == recipe
    for name, value in RECIPES[recipe].items():
        assert config[name] == (value.rule(MisGANConfig().data) if isinstance(value, RecipeRule) else value), name
    gan = MisGAN.load(tmp_path / "run")
    assert gan.optimizers["gx"].param_groups[0]["betas"] == tuple(RECIPES[recipe]["betas"])
    assert (gan.nets.gi.net[0].in_features == 2 * 784) == config["imputer_sees_mask"]
    assert bool(gan.averaged) == bool(RECIPES[recipe]["ema"])


def test_an_option_given_explicitly_wins_over_the_recipe(tmp_path) -> None:
    assert main(["train", *TINY, "--out", str(tmp_path / "run"), "--recipe", "paper", "--ema", "0.9",
                 "--imputer-sees-mask"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["recipe"], config["ema"], config["imputer_sees_mask"], config["imputer_critic_sees_mask"]) == (
        "paper", 0.9, True, False)
    assert MisGANConfig(recipe="recommended", ema=0.0).resolved().ema == 0.0


def test_an_unknown_recipe_is_one_line(tmp_path, capsys) -> None:
    try:
        code = main(["train", *TINY, "--out", str(tmp_path / "run"), "--recipe", "best"])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2 and "recipe" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_recommended_recipe_follows_the_missingness() -> None:
    """The imputer's mask input is recommended for block masks, not under independent dropout."""
    from misgan_core import DataSpec

    square = MisGANConfig(data=DataSpec(mask="square", mask_size=14)).resolved()
    dropout = MisGANConfig(data=DataSpec(mask="dropout", missing_rate=0.8)).resolved()
    assert square.imputer_sees_mask is True and dropout.imputer_sees_mask is False
    assert square.imputer_critic_sees_mask and dropout.imputer_critic_sees_mask and dropout.ema == 0.999
    assert MisGANConfig(data=DataSpec(mask="dropout"), recipe="paper").resolved().imputer_sees_mask is False
