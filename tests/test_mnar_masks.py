"""Missingness that depends on the data (issue: MAR and MNAR): rates matched on the dataset, dependence that
is real, clear errors for combinations that cannot work, and the same paths through DataSpec and the CLI."""

from __future__ import annotations

import pytest
import torch

from misgan_core import DataSpec, MisGANConfig, load_complete
from misgan_core.cli import main
from misgan_core.masks import Censoring, IntensityMAR, SelfMasking


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_complete("mnist-5k", limit=2000).x


@pytest.mark.parametrize("process", [SelfMasking(0.5), SelfMasking(0.8), SelfMasking(0.3, direction="low"),
                                     Censoring(0.5), Censoring(0.2, direction="low"), IntensityMAR(0.5)])
def test_each_process_hits_its_rate_over_many_draws(digits, process) -> None:
    rates = [1 - float(process.sample_for(digits, torch.Generator().manual_seed(s)).mean()) for s in range(5)]
    assert all(abs(r - process.rate) < 0.01 for r in rates), rates


def test_self_masking_high_hides_the_bright_pixels_and_low_the_dark_ones(digits) -> None:
    v = digits  # one channel
    for direction, brighter in (("high", True), ("low", False)):
        m = SelfMasking(0.5, direction=direction).sample_for(digits, torch.Generator().manual_seed(0))
        missing, observed = float(v[m == 0].mean()), float(v[m == 1].mean())
        assert (missing > observed + 0.1) if brighter else (observed > missing + 0.1), (direction, missing, observed)


def test_censoring_is_a_threshold(digits) -> None:
    m = Censoring(0.3).sample_for(digits, torch.Generator().manual_seed(0))
    assert float(digits[m == 0].min()) >= float(digits[m == 1].max()) - 1e-6  # every missing pixel >= observed


def test_mar_depends_on_the_observed_region_only(digits) -> None:
    process = IntensityMAR(0.5)
    m = process.sample_for(digits, torch.Generator().manual_seed(0))
    keep = process._region(28, 28)
    assert (m[:, 0][:, keep] == 1).all()  # the region is always observed
    brightness = digits[:, 0][:, keep].mean(1)
    free_missing = 1 - m[:, 0][:, ~keep].mean(1)
    order = brightness.argsort()
    dim, bright = free_missing[order[:500]].mean(), free_missing[order[-500:]].mean()
    assert bright > dim + 0.3  # the free region's missing rate rises with the observed region's intensity


def test_bad_combinations_are_clear_errors(digits) -> None:
    with pytest.raises(ValueError, match=r"missing rate must lie in \(0, 0.87"):
        IntensityMAR(0.95).sample_for(digits)
    with pytest.raises(ValueError, match="mask direction"):
        SelfMasking(0.5, direction="up")
    with pytest.raises(ValueError, match="one --missing-rate"):
        DataSpec(mask="self-masking", missing_rate_range=(0.2, 0.4)).validate()
    with pytest.raises(ValueError, match="imputer mode 'target'"):
        MisGANConfig(data=DataSpec(mask="censor"), imputer=True, imputer_mode="target",
                     pretrained="somewhere").validate()
    with pytest.raises(ValueError, match="depends on the images"):
        SelfMasking(0.5).sample(4, 28, 28)


def test_data_dependent_specs_load_label_and_train_from_the_cli(tmp_path, capsys) -> None:
    spec = DataSpec(limit=256, mask="self-masking", missing_rate=0.5)
    data = spec.load()
    assert abs(data.missing_rate - 0.5) < 0.01 and spec.label() == "mnist-5k (first 256), self-masking high 50%"
    assert spec.slug() == "mnist-5k-self-masking-high50"
    assert not spec.same_missingness(spec.replace(mask_direction="low"))
    assert main(["train", "--mask", "censor", "--missing-rate", "0.4", "--mask-direction", "low", "--limit", "128",
                 "--batch-size", "32", "--steps", "2", "--imputer", "--fid-every", "0",
                 "--out", str(tmp_path / "r")]) == 0
    assert "censoring (low values missing)" in capsys.readouterr().err
