"""Baseline imputers: ConvAC's density and exact conditional sampling, GAIN's hint and training step, MF's
recovery of a planted low-rank matrix, the fit loop, and the interface every imputer shares."""

from __future__ import annotations

import io
import math

import pytest
import torch

from misgan_core.baselines import (
    BASELINES,
    GAIN,
    BaselineTrainer,
    ConvAC,
    ConvACConfig,
    GAINConfig,
    MatrixFactorization,
    MeanImputer,
    MFConfig,
    ZeroImputer,
    build_baseline,
    fit_baseline,
    hint_matrix,
    hint_vector,
)
from misgan_core.imputers import Imputer


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def _set_leaves(model: ConvAC, mean: torch.Tensor, std: torch.Tensor) -> None:
    with torch.no_grad():
        model.leaf_mean.copy_(mean)
        model.leaf_std_raw.copy_(_inverse_softplus(std - model.config.min_std))


def _random_convac(shape: tuple[int, int, int], seed: int, shared: bool = False, components: int = 3,
                   channels: int = 3) -> ConvAC:
    """A small float64 ConvAC with well-separated leaves and peaked sum weights, so that the evidence
    moves the posterior a lot (a sampler that ignored it would be caught)."""
    torch.manual_seed(seed)
    cfg = ConvACConfig(components=components, channels=channels, shared_weights=shared, clamp_samples=False)
    model = ConvAC(shape, cfg).double()
    d = model.patch_dim
    _set_leaves(model, torch.rand(components, d, dtype=torch.float64),
                0.1 + 0.2 * torch.rand(components, d, dtype=torch.float64))
    with torch.no_grad():
        for logits in model.sum_logits:
            logits.normal_(0.0, 2.0)
    return model


def _trapezoid_grid(lo: float, hi: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.linspace(lo, hi, n, dtype=torch.float64)
    w = torch.full_like(t, (hi - lo) / (n - 1))
    w[0] = w[-1] = w[0] / 2
    return t, w


# -- ConvAC: the density ------------------------------------------------------------------------------


def test_convac_2x2_density_integrates_to_one() -> None:
    # One leaf location: the whole circuit is a 3-component diagonal GMM over 4 pixels; integrate on a grid
    # that covers every component to > 7 standard deviations.
    model = _random_convac((1, 2, 2), seed=0)
    std = 0.25 + 0.15 * torch.rand(3, 4, dtype=torch.float64)
    _set_leaves(model, torch.rand(3, 4, dtype=torch.float64), std)
    t, w = _trapezoid_grid(-3.0, 4.0, 36)
    g = torch.stack(torch.meshgrid(t, t, t, t, indexing="ij"), -1).reshape(-1, 1, 2, 2)
    wg = torch.stack(torch.meshgrid(w, w, w, w, indexing="ij"), -1).reshape(-1, 4).prod(1)
    with torch.no_grad():
        chunks = zip(g.split(200_000), wg.split(200_000), strict=True)
        total = sum(float((model.log_prob(c).exp() * wc).sum()) for c, wc in chunks)
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_convac_marginal_equals_numerical_integration(shared: bool) -> None:
    # 4x4 image: 2x2 leaf locations, one sum-product level, then the root. Pixel a=(0,0) and c=(0,1) share
    # a patch; b=(3,3) sits in the opposite patch, so they meet only at the root.
    model = _random_convac((1, 4, 4), seed=1, shared=shared)
    t, w = _trapezoid_grid(-2.5, 3.5, 201)  # spacing 0.03 against standard deviations >= 0.1: exact to ~1e-12
    xa = torch.tensor([-0.2, 0.1, 0.5, 0.9, 1.3], dtype=torch.float64)

    def log_p(values: dict[tuple[int, int], torch.Tensor]) -> torch.Tensor:
        n = next(iter(values.values())).numel()
        x = torch.full((n, 1, 4, 4), float("nan"), dtype=torch.float64)  # unobserved entries are never read
        m = torch.zeros(n, 1, 4, 4, dtype=torch.float64)
        for (i, j), v in values.items():
            x[:, 0, i, j] = v
            m[:, 0, i, j] = 1
        with torch.no_grad():
            return model.log_prob(x, m)

    marginal = log_p({(0, 0): xa}).exp()
    for other in [(3, 3), (0, 1)]:
        a, b = torch.meshgrid(xa, t, indexing="ij")
        joint = log_p({(0, 0): a.reshape(-1), other: b.reshape(-1)}).exp().reshape(len(xa), len(t))
        integrated = (joint * w).sum(1)
        torch.testing.assert_close(integrated, marginal, rtol=1e-7, atol=0)
    # and the two-pixel marginal is itself normalised
    a, b = torch.meshgrid(t, t, indexing="ij")
    joint = log_p({(0, 0): a.reshape(-1), (3, 3): b.reshape(-1)}).exp().reshape(len(t), len(t))
    assert float((joint * w[:, None] * w[None, :]).sum()) == pytest.approx(1.0, abs=1e-7)


def test_convac_rgb_pixel_marginal_integrates_to_one() -> None:
    # A missing pixel takes all of its channels with it; the three channels of one observed pixel of a
    # 3x4x4 model must integrate to one.
    model = _random_convac((3, 4, 4), seed=2)
    t, w = _trapezoid_grid(-2.0, 3.0, 51)
    g = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)
    wg = torch.stack(torch.meshgrid(w, w, w, indexing="ij"), -1).reshape(-1, 3).prod(1)
    x = torch.zeros(len(g), 3, 4, 4, dtype=torch.float64)
    x[:, :, 2, 1] = g
    m = torch.zeros(len(g), 1, 4, 4, dtype=torch.float64)
    m[:, 0, 2, 1] = 1
    with torch.no_grad():
        total = float((model.log_prob(x, m).exp() * wg).sum())
    assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_convac_sizes_and_padding(shape: tuple[int, int, int]) -> None:
    model = ConvAC(shape, ConvACConfig(components=4, channels=4))
    assert model.side == (32 if shape[1] <= 32 else 64)
    x = torch.rand(2, *shape)
    m = torch.zeros(2, 1, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x, m), torch.zeros(2))  # nothing observed: log 1
        full = model.log_prob(x)
    assert torch.isfinite(full).all()
    assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, *shape)
    m[:, :, : shape[1] // 2] = 1
    out = model.impute(x, m, draws=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 2, *shape)
    assert ((out >= 0) & (out <= 1)).all()


# -- ConvAC: sampling ---------------------------------------------------------------------------------


def _two_mixture_model(prior_bright: float) -> ConvAC:
    """4x4 model: exactly 'all pixels ~ N(0.2, 0.1)' w.p. 1 - prior_bright, else 'all ~ N(0.8, 0.1)'."""
    model = ConvAC((1, 4, 4), ConvACConfig(components=2, channels=2, clamp_samples=False)).double()
    _set_leaves(model, torch.tensor([[0.2] * 4, [0.8] * 4], dtype=torch.float64),
                torch.full((2, 4), 0.1, dtype=torch.float64))
    with torch.no_grad():
        # level 0: channel k takes leaf k everywhere (off-diagonal weights e^-80); root: the prior.
        model.sum_logits[0].copy_(torch.tensor([[40.0, -40.0], [-40.0, 40.0]]).expand(2, 2, 2, 2))
        model.sum_logits[1].copy_(torch.log(torch.tensor([[[[1 - prior_bright, prior_bright]]]])))
    return model


def test_convac_conditional_component_follows_analytic_posterior() -> None:
    prior = 0.7
    model = _two_mixture_model(prior)
    n = 4000
    x = torch.full((n, 1, 4, 4), float("nan"), dtype=torch.float64)
    m = torch.zeros(n, 1, 4, 4, dtype=torch.float64)
    evidence = 0.45
    x[:, 0, 1, 2] = evidence
    m[:, 0, 1, 2] = 1
    out = model.impute(x, m, draws=1, generator=torch.Generator().manual_seed(0))[0]
    assert (out[:, 0, 1, 2] == evidence).all()
    missing = ~m.bool().expand_as(out)
    bright = out[missing].reshape(n, 15).mean(1) > 0.5  # 15 draws from N(0.2 or 0.8, 0.1): unambiguous
    like = [math.exp(-((evidence - mu) ** 2) / (2 * 0.1 ** 2)) for mu in (0.2, 0.8)]
    posterior = prior * like[1] / ((1 - prior) * like[0] + prior * like[1])
    assert 0.05 < posterior < 0.2  # far from the prior: ignoring the evidence would fail
    se = math.sqrt(posterior * (1 - posterior) / n)
    assert abs(float(bright.double().mean()) - posterior) < 5 * se
    # without evidence, samples follow the prior
    prior_draws = model.sample(n, generator=torch.Generator().manual_seed(1))
    assert abs(float((prior_draws.reshape(n, 16).mean(1) > 0.5).double().mean()) - prior) < 5 * math.sqrt(
        prior * (1 - prior) / n)


@pytest.mark.parametrize("shared", [False, True])
def test_convac_conditional_samples_match_numerical_posterior(shared: bool) -> None:
    # On a random model, compare draws of a missing pixel with p(x_b | evidence) computed from the
    # model's own marginals by quadrature. Evidence in several patches; targets in other patches and in an
    # evidence patch, so that the posterior over choices at the sum layers and at the leaves both matter.
    # 8x8: three levels of sum nodes, so that the product nodes' hand-down of choices is checked too.
    model = _random_convac((1, 8, 8), seed=3, shared=shared)
    evidence = {(0, 0): 0.9, (1, 3): 0.1, (2, 5): 0.8, (6, 1): 0.2, (5, 6): 0.6}
    n = 4000
    x = torch.full((n, 1, 8, 8), float("nan"), dtype=torch.float64)
    m = torch.zeros(n, 1, 8, 8, dtype=torch.float64)
    for (i, j), v in evidence.items():
        x[:, 0, i, j] = v
        m[:, 0, i, j] = 1
    out = model.impute(x, m, draws=1, generator=torch.Generator().manual_seed(2))[0]
    for (i, j), v in evidence.items():
        assert (out[:, 0, i, j] == v).all()
    t, w = _trapezoid_grid(-2.5, 3.5, 801)
    for target in [(3, 0), (0, 1), (2, 7), (7, 4)]:
        xq = x[:1].repeat(len(t), 1, 1, 1)
        mq = m[:1].repeat(len(t), 1, 1, 1)
        xq[:, 0, target[0], target[1]] = t
        mq[:, 0, target[0], target[1]] = 1
        with torch.no_grad():
            dens = model.log_prob(xq, mq).exp()
        dens = dens / (dens * w).sum()
        mean = float((dens * w * t).sum())
        sd = math.sqrt(float((dens * w * (t - mean) ** 2).sum()))
        drawn = out[:, 0, target[0], target[1]]
        assert abs(float(drawn.mean()) - mean) < 5 * sd / math.sqrt(n)
        for q in (mean - sd, mean, mean + sd):  # CDF at three points: the whole shape, not just the mean
            cdf = float((dens * w * (t <= q)).sum())
            assert abs(float((drawn <= q).double().mean()) - cdf) < 5 * math.sqrt(0.25 / n) + 2e-3


# -- GAIN ---------------------------------------------------------------------------------------------


def test_gain_hint_reveals_exactly_mask_where_b_is_one() -> None:
    # Released-code convention: h = m * b, b ~ Bernoulli(hint_rate). Revealed entries (b = 1) carry m;
    # unrevealed ones carry 0 whatever m is.
    m = (torch.rand(200, 100, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    h = hint_matrix(m, 0.9, torch.Generator().manual_seed(7))
    b = torch.rand(200, 100, generator=torch.Generator().manual_seed(7)) < 0.9
    assert torch.equal(h, torch.where(b, m, torch.zeros(())))
    assert torch.equal(h[~b], torch.zeros(int((~b).sum())))
    assert torch.equal(h[b], m[b])
    revealed = float(h[m.bool()].mean())  # share of observed entries the hint reveals
    assert revealed == pytest.approx(0.9, abs=0.02)
    # the paper's form marks the unrevealed entries 0.5 instead
    h_paper = hint_matrix(m, 0.9, torch.Generator().manual_seed(7), form="paper")
    assert torch.equal(h_paper, torch.where(b, m, torch.full((), 0.5)))


def test_gain_published_hint_hides_one_entry_and_scores_only_it() -> None:
    # GAIN paper, section 4: b has one zero per row at a uniform k; h = b * m + 0.5 * (1 - b).
    m = (torch.rand(500, 30, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    h, scored = hint_vector(m, 0.9, torch.Generator().manual_seed(7), "published")
    assert torch.equal(scored.sum(1), torch.ones(500))
    assert torch.equal(h[scored.bool()], torch.full((500,), 0.5))
    assert torch.equal(h[~scored.bool()], m[~scored.bool()])
    counts = scored.sum(0)  # k is uniform over the 30 entries
    assert counts.min() > 0 and counts.max() < 40


def test_gain_published_losses_are_taken_on_the_hidden_entry() -> None:
    x, m = _toy_images(16, (1, 3, 3), seed=2)
    model = GAIN((1, 3, 3))
    before = GAIN((1, 3, 3))
    before.load_state_dict(model.state_dict())
    losses = model.train_step(x, m, model.make_optimizers(), torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    xf, mf = x.reshape(16, 9), m.reshape(16, 9)
    z = 0.01 * torch.rand(16, 9, generator=g)
    k = (torch.rand(16, 1, generator=g) * 9).long()
    hidden = torch.zeros(16, 9).scatter_(1, k, 1.0)
    hint = mf * (1 - hidden) + 0.5 * hidden
    with torch.no_grad():
        gen = torch.sigmoid(before.generator_net(torch.cat([mf * xf + (1 - mf) * z, mf], 1)))
        x_hat = mf * xf + (1 - mf) * gen
        d_prob = torch.sigmoid(before.discriminator_net(torch.cat([x_hat, hint], 1)))
        d_loss = -((mf * torch.log(d_prob) + (1 - mf) * torch.log(1 - d_prob)) * hidden).sum() / 16
        d_prob = torch.sigmoid(model.discriminator_net(torch.cat([x_hat, hint], 1)))
        g_adv = -((1 - mf) * torch.log(d_prob) * hidden).sum() / 16
    assert losses["d_loss"] == pytest.approx(float(d_loss), rel=1e-4)
    assert losses["g_adv"] == pytest.approx(float(g_adv), rel=1e-4)
    assert losses["g_loss"] == pytest.approx(losses["g_adv"] + 100 * losses["mse"], rel=1e-4)


@pytest.mark.slow
def test_gain_best_epoch_beats_mean_imputation_on_square_masks(tmp_path) -> None:
    """The paper's protocol for GAIN on block masks (appendix H): train, keep the best-FID weights. They must
    complete digits better than the per-pixel mean does (the released hint could not: it learnt black)."""
    from misgan_core import DataSpec, method, open_run
    from misgan_core.baselines.runs import BaselineRun
    from misgan_core.metrics import feature_extractor, imputation_fid

    spec = DataSpec(mask="square", mask_size=14)
    torch.manual_seed(0)
    gain = method("gain").create(tmp_path / "gain", spec, seed=0).trainer  # with GAIN's best-FID selection
    gain.train(8 * gain.trainer.batches_per_epoch, sample_every=0, checkpoint_every=0)  # 8 epochs
    assert gain.best_step is not None and gain.best_step < gain.step  # it degrades after its best epoch
    best = open_run(tmp_path / "gain")  # opens with the best weights
    mean = BaselineRun.create(tmp_path / "mean", "mean", spec, data=gain.data)
    mean.train()
    subset = gain.data.subset(slice(0, 1000))
    extractor = feature_extractor("mnist-5k")
    fid_gain = imputation_fid(best.imputer, subset, extractor, seed=0)
    fid_mean = imputation_fid(mean.model, subset, extractor, seed=0)
    assert fid_gain < 0.8 * fid_mean, (fid_gain, fid_mean)


def _toy_images(n: int, shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    m = (torch.rand(n, 1, *shape[1:], generator=g) < 0.6).float()
    return x, m


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_gain_train_step_losses_and_adversarial_switch() -> None:
    x, m = _toy_images(32, (3, 4, 4), seed=0)
    model = GAIN((3, 4, 4), GAINConfig())
    # the authors' MNIST example: 2D inputs, hidden widths 256 and 128, D outputs
    assert [layer.out_features for layer in model.generator_net if hasattr(layer, "out_features")] == [256, 128, 48]
    assert model.generator_net[0].in_features == 2 * 48
    wide = GAIN((3, 4, 4), GAINConfig(hidden=48))  # the released gain.py's D-wide layers, on request
    assert wide.generator_net[0].out_features == wide.generator_net[2].out_features == 48
    opts = model.make_optimizers()
    d_before = [p.detach().clone() for p in model.discriminator_net.parameters()]
    losses = model.train_step(x, m, opts, torch.Generator().manual_seed(0))
    assert set(losses) == {"d_loss", "g_adv", "mse", "g_loss"}
    assert all(math.isfinite(v) for v in losses.values())
    assert losses["g_loss"] == pytest.approx(losses["g_adv"] + model.config.alpha * losses["mse"], rel=1e-5)
    assert _changed(d_before, model.discriminator_net)

    plain = GAIN((3, 4, 4), GAINConfig(adversarial=False))
    opts = plain.make_optimizers()
    assert set(opts) == {"generator"}
    d_before = [p.detach().clone() for p in plain.discriminator_net.parameters()]
    g_before = [p.detach().clone() for p in plain.generator_net.parameters()]
    losses = plain.train_step(x, m, opts, torch.Generator().manual_seed(0))
    assert set(losses) == {"mse", "g_loss"} and losses["g_loss"] == pytest.approx(plain.config.alpha * losses["mse"])
    assert not _changed(d_before, plain.discriminator_net)
    assert _changed(g_before, plain.generator_net)


def test_gain_losses_are_the_released_code_formulas() -> None:
    # Recompute the step's losses by hand: same noise and hint (drawn in that order from the generator),
    # D loss with the nets before the step, G terms with G before and D after the D step.
    x, m = _toy_images(16, (1, 3, 3), seed=2)
    model = GAIN((1, 3, 3), GAINConfig(hint_form="released"))
    before = GAIN((1, 3, 3), GAINConfig(hint_form="released"))
    before.load_state_dict(model.state_dict())
    losses = model.train_step(x, m, model.make_optimizers(), torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    xf, mf = x.reshape(16, 9), m.reshape(16, 9)
    z = 0.01 * torch.rand(16, 9, generator=g)
    b = torch.rand(16, 9, generator=g) < 0.9
    hint = mf * b
    with torch.no_grad():
        gen = torch.sigmoid(before.generator_net(torch.cat([mf * xf + (1 - mf) * z, mf], 1)))
        x_hat = mf * xf + (1 - mf) * gen
        d_prob = torch.sigmoid(before.discriminator_net(torch.cat([x_hat, hint], 1)))
        d_loss = -(mf * torch.log(d_prob) + (1 - mf) * torch.log(1 - d_prob)).mean()
        d_prob = torch.sigmoid(model.discriminator_net(torch.cat([x_hat, hint], 1)))
        g_adv = -((1 - mf) * torch.log(d_prob)).mean()
        mse = ((mf * xf - mf * gen) ** 2).mean() / mf.mean()
    assert losses["d_loss"] == pytest.approx(float(d_loss), rel=1e-4)
    assert losses["g_adv"] == pytest.approx(float(g_adv), rel=1e-4)
    assert losses["mse"] == pytest.approx(float(mse), rel=1e-4)


def test_gain_draws_differ_with_noise_and_keep_observed() -> None:
    x, m = _toy_images(8, (1, 6, 6), seed=1)
    model = GAIN((1, 6, 6))
    out = model.impute(x, m, draws=3, generator=torch.Generator().manual_seed(0))
    missing = ~m.bool().expand_as(x)
    assert not torch.equal(out[0][missing], out[1][missing])
    assert torch.equal(out[:, ~missing], x[~missing].expand(3, -1))


# -- matrix factorisation, mean, zero -----------------------------------------------------------------


def test_mf_recovers_planted_low_rank_matrix_from_half_its_entries() -> None:
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(200, 3, generator=g), torch.randn(50, 3, generator=g)
    full = (u @ v.T).reshape(200, 1, 5, 10)
    m = (torch.rand(200, 1, 5, 10, generator=g) < 0.5).float()
    model = MatrixFactorization((1, 5, 10), MFConfig(rank=3, l2=1e-3, iters=50, center=False, clamp=False))
    model.fit(torch.where(m.bool(), full, torch.nan), m)
    out = model.impute(torch.where(m.bool(), full, torch.nan), m, draws=2)
    missing = ~m.bool()
    rel = float((out[0] - full)[missing].norm() / full[missing].norm())
    assert rel < 1e-2
    assert torch.equal(out[0], out[1])
    # fold-in: new rows from the same row space, never seen in fitting
    new = (torch.randn(20, 3, generator=g) @ v.T).reshape(20, 1, 5, 10)
    m_new = (torch.rand(20, 1, 5, 10, generator=g) < 0.5).float()
    out_new = model.impute(torch.where(m_new.bool(), new, torch.nan), m_new)[0]
    assert float((out_new - new).norm() / new.norm()) < 1e-2


def test_mean_and_zero_imputation_values() -> None:
    x = torch.tensor([[0.2, 0.4], [0.6, 0.9]]).reshape(2, 1, 1, 2)
    m = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).reshape(2, 1, 1, 2)  # pixel 1 never observed
    mean = MeanImputer((1, 1, 2))
    mean.fit(x, m)
    torch.testing.assert_close(mean.mean, torch.tensor([[[0.4, 0.4]]]))  # fallback: mean of all observed
    out = mean.impute(x, m)[0]
    torch.testing.assert_close(out.reshape(2, 2), torch.tensor([[0.2, 0.4], [0.6, 0.4]]))
    x2 = torch.tensor([[0.2, 0.4], [0.6, 0.9]]).reshape(2, 1, 1, 2)
    m2 = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).reshape(2, 1, 1, 2)
    mean.fit(x2, m2)
    torch.testing.assert_close(mean.mean.reshape(2), torch.tensor([0.2, 0.65]))
    zero = ZeroImputer((1, 1, 2))
    torch.testing.assert_close(zero.impute(x, m)[0].reshape(2, 2), torch.tensor([[0.2, 0.0], [0.6, 0.0]]))


# -- the shared interface -----------------------------------------------------------------------------


def test_registry() -> None:
    assert set(BASELINES) == {"gain", "convac", "mf", "miwae", "notmiwae", "mean", "zero"}
    with pytest.raises(TypeError, match="no option"):
        build_baseline("gain", (1, 4, 4), hint=0.5)
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("knn", (1, 4, 4))


_SMALL = {"gain": {}, "convac": {"components": 4, "channels": 4}, "mf": {"rank": 3, "iters": 5},
          "miwae": {"latent": 2, "hidden": 8, "k": 2, "impute_samples": 4},
          "notmiwae": {"latent": 2, "hidden": 8, "k": 2, "impute_samples": 4}, "mean": {}, "zero": {}}


@pytest.mark.parametrize("kind", sorted(BASELINES))
def test_every_imputer_keeps_observed_bit_exact_even_with_nan(kind: str) -> None:
    shape = (3, 6, 6)  # RGB, and 6 is not a power of two (ConvAC pads to 8)
    x, m = _toy_images(40, shape, seed=3)
    model = build_baseline(kind, shape, **_SMALL[kind])
    assert isinstance(model, Imputer) and model.name
    fit_baseline(model, x, m, steps=2, batch_size=16, seed=0)
    x_nan = torch.where(m.bool().expand_as(x), x, torch.nan)
    out = model.impute(x_nan, m, draws=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, *x.shape)
    observed = m.bool().expand_as(x)
    assert torch.equal(out[:, observed], x[observed].expand(3, -1))
    assert torch.isfinite(out).all()
    assert ((out >= 0) & (out <= 1)).all()


@pytest.mark.parametrize("kind", ["gain", "convac"])
def test_fit_baseline_runs_and_resumes_exactly(kind: str) -> None:
    shape = (1, 8, 8)
    x, m = _toy_images(50, shape, seed=4)

    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_baseline(kind, shape, **_SMALL[kind])

    seen = []
    model = fresh()
    records = fit_baseline(model, x, m, steps=5, batch_size=16, seed=1, on_step=lambda s, r: seen.append(s))
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5] == seen
    assert all(math.isfinite(v) for r in records for v in r.values())

    # 3 steps, checkpoint through bytes (as a run folder would), a new process's objects, 2 more steps
    half = fresh()
    trainer = BaselineTrainer(half, x, m, batch_size=16, seed=1)
    trainer.run(3)
    buf = io.BytesIO()
    torch.save({"weights": half.state_dict(), "state": trainer.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = fresh()
    resumed.load_state_dict(saved["weights"])
    trainer2 = BaselineTrainer(resumed, x, m, batch_size=16, seed=1)
    trainer2.load_state_dict(saved["state"])
    tail = trainer2.run(5)
    assert [r["step"] for r in tail] == [4, 5]
    assert model.state_dict().keys() == resumed.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("kind", sorted(BASELINES))
def test_run_folder_round_trip(kind: str, tmp_path) -> None:
    from misgan_core import DataSpec
    from misgan_core.baselines.runs import BaselineRun
    from misgan_core.data import IncompleteDataset

    x, m = _toy_images(24, (1, 4, 4), seed=6)
    data = IncompleteDataset("toy", x, m)
    spec = DataSpec(dataset="toy", mask="square", mask_size=2)
    run = BaselineRun.create(tmp_path / kind, kind, spec, _SMALL[kind], seed=0, batch_size=8, data=data)
    run.train(3, checkpoint_every=2, sample_every=0)
    again = BaselineRun.load(tmp_path / kind, data=data)
    assert again.step == run.step == (3 if run.trainer is not None else 1)
    gen = [torch.Generator().manual_seed(0) for _ in range(2)]
    assert torch.equal(run.model.impute(x, m, 2, gen[0]), again.model.impute(x, m, 2, gen[1]))
    if again.trainer is not None:
        again.train(1, sample_every=0)
        assert again.step == 4 and [r["step"] for r in again.history][-1] == 4


def test_fit_baseline_stops_when_on_step_says_so() -> None:
    x, m = _toy_images(20, (1, 4, 4), seed=5)
    model = ConvAC((1, 4, 4), ConvACConfig(components=2, channels=2))
    records = fit_baseline(model, x, m, steps=10, batch_size=4, seed=0, on_step=lambda s, r: s < 3)
    assert len(records) == 3


def test_a_curve_only_baseline_logs_points_on_both_splits_and_keeps_no_best_weights(tmp_path) -> None:
    """Evaluation points without selection (ConvAC outside the paper budget, and any method with select_best
    off): each point logs the imputation FID of the training subset and of the held-out subset, and the run is
    evaluated with its last weights; a folder written when every point was a selection still selects."""
    import json

    from misgan_core import DataSpec, method, open_run
    from misgan_core.baselines.runs import BEST_WEIGHTS, BaselineRun

    spec = DataSpec(mask="dropout", missing_rate=0.8, limit=64)
    run = method("convac").create(tmp_path / "c", spec, {"components": 2, "channels": 2}, eval_every=2)
    run.train(4)
    points = [r for r in run.history if "imputation_fid" in r]
    assert [p["step"] for p in points] == [2, 4]
    for p in points:
        assert p["imputation_fid"] > 0 and p["imputation_fid_n"] == 64  # the training subset: all 64 examples
        assert p["imputation_fid_test"] > 0 and p["imputation_fid_test_n"] == 500  # mnist-5k's held-out digits
        assert p["time"] >= 0
    logged = [r for r in run.trainer.run.read_metrics() if "imputation_fid_test" in r]
    assert [r["step"] for r in logged] == [2, 4]
    assert not (tmp_path / "c" / BEST_WEIGHTS).exists()
    opened = open_run(tmp_path / "c")
    assert "best_step" not in opened.info and "best_step" not in opened.budget()
    last = run.trainer.model.state_dict()
    assert all(torch.equal(v, last[k]) for k, v in opened.trainer.model.state_dict().items())  # its last weights

    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert (config["eval_every"], config["select_best"]) == (2, False)
    for key in ("eval_every", "select_best"):
        config.pop(key)
    (tmp_path / "c" / "config.json").write_text(json.dumps({**config, "select_every": 2}))
    legacy = BaselineRun.load(tmp_path / "c")
    assert legacy.eval_every == 2 and legacy.select_best  # written before the two were apart


def test_a_closed_form_fit_logs_one_point_at_its_fit_time(tmp_path) -> None:
    from misgan_core import DataSpec, method

    run = method("mean").create(tmp_path / "m", DataSpec(mask="dropout", missing_rate=0.8, limit=64))
    run.train()
    points = [r for r in run.trainer.run.read_metrics() if "imputation_fid" in r]
    assert len(points) == 1 and points[0]["step"] == 1 and points[0]["time"] <= run.seconds + 1e-3  # logged to the ms
    assert points[0]["imputation_fid_test"] > 0 and points[0]["imputation_fid_test_n"] == 500


@pytest.mark.parametrize(("eval_every", "patience"), [(None, 4), (20, 10), (30, 7), (500, 1)])
def test_convac_paper_patience_is_the_same_stretch_of_training_at_any_eval_every(tmp_path, eval_every,
                                                                                  patience) -> None:
    """Appendix H's patience is 4 points at ConvAC's own cadence (5 epochs); a sweep's --eval-every changes the
    cadence, not how long ConvAC trains without improving before it stops."""
    from misgan_core import DataSpec, method
    from misgan_core.methods.base import CellContext

    spec = DataSpec(mask="dropout", missing_rate=0.8, limit=1280)  # 10 batches of 128 an epoch: points every 50
    context = CellContext(paper_budget=True, examples=lambda: 1280, device="cpu", seed=0, arch="fc", options={},
                          eval_every=eval_every)
    run = method("convac").sweep_cell(tmp_path / "c", spec, context)
    assert run.trainer.eval_every == (eval_every or 50) and run.trainer.patience == patience
    assert run.trainer.patience * run.trainer.eval_every >= 200  # never stops sooner than the paper's 200 steps
