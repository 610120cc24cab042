"""MIWAE and not-MIWAE: the continuous Bernoulli against torch, the bound, SIR imputation, the learnt
missingness, and the methods through the registry, the CLI and the sweep."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from misgan_core.baselines.miwae import MIWAE, ClippedGaussian, MIWAEConfig, cb_log_prob, cb_mean, cb_sample
from misgan_core.baselines.notmiwae import NotMIWAE, NotMIWAEConfig
from misgan_core.errors import OptionError
from misgan_core.methods import load_run, method
from misgan_core.spec import DataSpec

ROOT = Path(__file__).resolve().parents[1]
SMALL = DataSpec(mask="dropout", missing_rate=0.8, limit=256)


def _batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    m = (torch.rand(n, 1, 28, 28, generator=g) > 0.7).float()
    return x, m


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "misgan_core", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


# -- the continuous Bernoulli ---------------------------------------------------------------------------------

ETAS = torch.tensor([-30.0, -4.0, -0.7, -2e-4, 0.0, 3e-4, 0.9, 5.0, 25.0], dtype=torch.float64)


def test_continuous_bernoulli_matches_torch_and_integrates_to_one():
    x = torch.linspace(0.01, 0.99, len(ETAS), dtype=torch.float64)
    reference = torch.distributions.ContinuousBernoulli(logits=ETAS)
    assert torch.allclose(cb_log_prob(x, ETAS), reference.log_prob(x), atol=1e-6)
    assert torch.allclose(cb_mean(ETAS), reference.mean, atol=1e-6)
    grid = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    for eta in (-6.0, -1e-5, 0.0, 2.5):
        density = cb_log_prob(grid, torch.tensor(eta, dtype=torch.float64)).exp()
        assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-6)


def test_continuous_bernoulli_draws_are_its_inverse_cdf_with_finite_gradients():
    u = torch.rand(len(ETAS), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    reference = torch.distributions.ContinuousBernoulli(logits=ETAS)
    assert torch.allclose(cb_sample(ETAS, u), reference.icdf(u), atol=1e-4)
    # The draw's derivative in eta, against autograd through torch's own inverse CDF (away from eta = 0, where
    # torch switches to a series).
    eta = torch.tensor([-3.0, -0.5, 0.8, 4.0], dtype=torch.float64, requires_grad=True)
    uu = torch.tensor([0.2, 0.9, 0.4, 0.7], dtype=torch.float64)
    (ours,) = torch.autograd.grad(cb_sample(eta, uu).sum(), eta)
    (theirs,) = torch.autograd.grad(torch.distributions.ContinuousBernoulli(logits=eta).icdf(uu).sum(), eta)
    assert torch.allclose(ours, theirs, atol=1e-8)
    # Saturated logits and the ends of the uniform give finite gradients (a NaN here once ended trainings).
    eta = torch.tensor([-90.0, 90.0, -40.0, 40.0], requires_grad=True)
    for end in (0.0, 1.0):
        (grad,) = torch.autograd.grad(cb_sample(eta, torch.full((4,), end)).sum(), eta)
        assert torch.isfinite(grad).all()


def test_clipped_gaussian_is_a_distribution_on_the_closed_interval():
    lik = ClippedGaussian(min_std=0.02)
    # Decoder outputs (K=1, N=1, P=2, C=1, H=1, W=4): mu and the raw sigma of four pixels.
    out = torch.tensor([[-0.3, 0.2, 0.7, 1.4], [0.0, -1.0, 0.5, -2.0]], dtype=torch.float64).view(1, 1, 2, 1, 1, 4)
    grid = torch.linspace(0, 1, 200_001, dtype=torch.float64)[1:-1].view(-1, 1, 1, 1)
    inside = torch.trapezoid(lik.log_prob(grid, out)[0, :, 0, 0, :].exp(), grid.flatten(), dim=0)
    ends = (lik.log_prob(torch.zeros(1, 1, 1, 1, dtype=torch.float64), out).exp()
            + lik.log_prob(torch.ones(1, 1, 1, 1, dtype=torch.float64), out).exp()).flatten()
    assert torch.allclose(inside + ends, torch.ones(4, dtype=torch.float64), atol=1e-4)
    u = torch.rand(200_000, 1, 1, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    draws = lik.draw(out.expand(200_000, 1, 2, 1, 1, 4), u.expand(200_000, 1, 1, 1, 4))
    assert ((draws >= 0) & (draws <= 1)).all()
    assert torch.allclose(draws.mean(0).flatten(), lik.mean(out).flatten(), atol=3e-3)
    sharp = torch.tensor([[-0.3, 1.4], [-6.0, -6.0]], dtype=torch.float64).view(1, 1, 2, 1, 1, 2)
    assert lik.mean(sharp).flatten().tolist() == pytest.approx([0.0, 1.0], abs=1e-6)  # the mean reaches 0 and 1


# -- the model --------------------------------------------------------------------------------------------------


def test_bound_tightens_with_k_and_equals_the_elbo_at_k_1():
    torch.manual_seed(0)
    model = MIWAE((1, 28, 28), MIWAEConfig(latent=4, hidden=32)).double()
    x, m = _batch()
    x = x.double()
    with torch.no_grad():
        b1 = torch.stack([model.bound(x, m, 1, torch.Generator().manual_seed(s)) for s in range(400)]).mean(0)
        b50 = torch.stack([model.bound(x, m, 50, torch.Generator().manual_seed(s)) for s in range(40)]).mean(0)
    assert (b50 > b1).all()  # E log mean of 50 weights >= E log w (Jensen), strictly for a random model
    # Missing pixels do not enter the bound: changing them changes nothing.
    x2 = torch.where(m.bool(), x, torch.rand_like(x))
    g = torch.Generator().manual_seed(1)
    same = model.bound(x2, m, 5, g)
    assert torch.equal(same, model.bound(x, m, 5, torch.Generator().manual_seed(1)))


def test_sir_draws_keep_observed_pixels_and_follow_the_seed():
    torch.manual_seed(0)
    model = MIWAE((1, 28, 28), MIWAEConfig(latent=4, hidden=32, impute_samples=30, impute_chunk=4))
    x, m = _batch()
    draws = model.impute(x, m, draws=5, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (5, 6, 1, 28, 28)
    assert torch.equal(torch.where(m.bool(), draws, 0), torch.where(m.bool(), x.expand_as(draws), 0))
    again = model.impute(x, m, draws=5, generator=torch.Generator().manual_seed(0))
    other = model.impute(x, m, draws=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(draws, again) and not torch.equal(draws, other)
    assert not torch.equal(draws[0], draws[1])  # resampling picks different proposals for different draws
    mean = model.conditional_mean(x, m, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.where(m.bool(), mean, 0), torch.where(m.bool(), x, 0))
    assert ((mean >= 0) & (mean <= 1)).all()


def test_options_are_checked_and_conv_is_for_28x28():
    with pytest.raises(OptionError, match="arch"):
        MIWAE.build((1, 28, 28), arch="resnet")
    with pytest.raises(OptionError, match="28x28"):
        MIWAE.build((3, 32, 32), arch="conv")
    with pytest.raises(OptionError, match="no option"):
        MIWAE.build((1, 28, 28), depth=3)
    with pytest.raises(OptionError, match="missingness"):
        NotMIWAE.build((1, 28, 28), missingness="censor")
    conv = MIWAE.build((1, 28, 28), arch="conv", latent=8, k=2)
    x, m = _batch(3)
    assert conv.impute(x, m, draws=2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 1, 28, 28)
    assert conv.sample(4, torch.Generator().manual_seed(0)).shape == (4, 1, 28, 28)


def test_not_miwae_adds_the_mask_likelihood():
    torch.manual_seed(0)
    model = NotMIWAE((1, 28, 28), NotMIWAEConfig(latent=4, hidden=32, missingness="self-masking-shared"))
    x, m = _batch(4)
    with torch.no_grad():
        model.mask_slope.fill_(0.0)
        model.mask_offset.fill_(math.log(0.3 / 0.7))  # observed with probability 0.3
        log_w, _ = model.log_weights(x, m, 3, torch.Generator().manual_seed(0))
        twin = MIWAE((1, 28, 28), MIWAEConfig(latent=4, hidden=32))  # the same networks without p(m | x)
        twin.load_state_dict(model.state_dict(), strict=False)
        plain, _ = twin.log_weights(x, m, 3, torch.Generator().manual_seed(0))
    # With a zero slope p(m | x) is a constant: each weight gains exactly the Bernoulli likelihood of the mask.
    observed = m.flatten(1).sum(1)
    expected = observed * math.log(0.3) + (784 - observed) * math.log(0.7)
    assert torch.allclose(log_w - plain, expected.expand_as(log_w), atol=1e-3)


# -- through the registry, the CLI and the sweep -------------------------------------------------------------


@pytest.mark.parametrize("name", ["miwae", "notmiwae"])
def test_training_resumes_bit_exactly_and_the_bound_rises(tmp_path, name):
    options = {"hidden": 64, "latent": 8, "k": 5}
    straight = method(name).create(tmp_path / "straight", SMALL, options, seed=3)
    straight.cadence = {"checkpoint_every": 0}
    straight.train(60)
    bounds = [r["loss_bound"] for r in straight.history if "loss_bound" in r]
    assert np.mean(bounds[-2:]) > np.mean(bounds[:2]) + 20  # nats per example, over the first 60 steps
    split = method(name).create(tmp_path / "split", SMALL, options, seed=3)
    split.train(25)
    resumed = load_run(tmp_path / "split", for_training=True)
    resumed.train(35)
    for key, value in straight.trainer.model.state_dict().items():
        assert torch.equal(value, resumed.trainer.model.state_dict()[key]), key
    assert resumed.step == 60 and resumed.title.startswith(method(name).title)


@pytest.mark.slow
def test_not_miwae_learns_that_bright_pixels_go_missing(tmp_path):
    """Observed with probability sigmoid(slope x + offset): under self-masking (bright pixels missing) the learnt
    slope turns negative, and more so than under MCAR dropout at the same rate."""
    slopes = {}
    for mask in ("self-masking", "dropout"):
        spec = DataSpec(mask=mask, missing_rate=0.5, mask_direction="high", limit=1024)
        run = method("notmiwae").create(tmp_path / mask, spec, {"missingness": "self-masking-shared", "hidden": 128})
        run.cadence = {"checkpoint_every": 0, "sample_every": 0}
        run.train(300)
        slopes[mask] = run.trainer.model.mechanism()["mask_slope"]
    assert slopes["self-masking"] < -0.02 and slopes["self-masking"] < slopes["dropout"] - 0.01, slopes


@pytest.mark.slow
def test_cli_trains_resumes_imputes_samples_and_evaluates_miwae(tmp_path):
    run = tmp_path / "miwae"
    out = run_cli("baseline", "miwae", "--mask", "dropout", "--missing-rate", "0.8", "--limit", "300", "--steps",
                  "40", "--set", "hidden=64", "--set", "k=4", "--threads", "1", "--out", str(run))
    assert out.returncode == 0, out.stderr
    out = run_cli("resume", str(run), "--steps", "10", "--threads", "1")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["step"] == 50
    out = run_cli("impute", str(run), "-n", "5", "--draws", "3", "--out", str(tmp_path / "imp"))
    assert out.returncode == 0, out.stderr
    with np.load(tmp_path / "imp.npz") as f:
        assert f["x_imputed"].shape == (3, 5, 1, 28, 28)
    out = run_cli("sample", str(run), "-n", "8", "--out", str(tmp_path / "s.png"))
    assert out.returncode == 0 and np.load(tmp_path / "s.npy").shape == (8, 1, 28, 28)
    out = run_cli("evaluate", str(run), "--split", "test", "--samples", "200", "--threads", "1")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert math.isfinite(result["imputation_fid"]) and 0 < result["rmse"] < 1
    out = run_cli("baseline", "notmiwae", "--mask", "dropout", "--set", "missingness=per-row", "--limit", "64",
                  "--out", str(tmp_path / "bad"))
    assert out.returncode == 2 and "missingness must be one of" in out.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_sweep_trains_and_tabulates_the_likelihood_methods(tmp_path):
    out = run_cli("sweep", "--methods", "miwae,notmiwae,mean", "--mask", "dropout", "--rates", "0.8", "--limit",
                  "200", "--budget", "steps=20", "--eval-split", "test", "--threads", "1", "--out",
                  str(tmp_path / "sw"))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "sw" / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} >= {"MIWAE", "not-MIWAE", "Mean"}
    assert all(0 < r["rmse_conditional_mean"] < 1 for r in rows if r["method"] == "MIWAE")
    assert all("rmse_conditional_mean" not in r for r in rows if r["method"] == "Mean")
    table = (tmp_path / "sw" / "results.md").read_text()
    assert "MIWAE" in table and "not-MIWAE" in table
