"""Missingness that depends on the data (MAR and MNAR): rates matched on the dataset, dependence that
is real, clear errors for combinations that cannot work, and the same paths through DataSpec and the CLI."""

from __future__ import annotations

import json
import math

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


def test_self_masking_steepness_sets_how_sharply_brightness_decides(digits) -> None:
    """A softer k keeps the rate and the direction, but missing and observed pixels differ less in intensity
    (at k 20 the process is close to censoring); the spec, its label and the CLI carry k."""
    gaps = {}
    for k in (2.0, 5.0, 20.0):
        m = SelfMasking(0.5, steepness=k).sample_for(digits, torch.Generator().manual_seed(0))
        assert abs(1 - float(m.mean()) - 0.5) < 0.01
        gaps[k] = float(digits[m == 0].mean()) - float(digits[m == 1].mean())
    assert 0 < gaps[2.0] < gaps[5.0] < gaps[20.0], gaps
    spec = DataSpec(limit=64, mask="self-masking", missing_rate=0.5, mask_steepness=5.0)
    assert spec.label() == "mnist-5k (first 64), self-masking high 50%, k 5" and spec.slug().endswith("-k5")
    assert not spec.same_missingness(spec.replace(mask_steepness=20.0))
    assert DataSpec(mask="self-masking").label().endswith("self-masking high 50%")  # the default is not named
    assert torch.equal(spec.load().m, spec.load().m)
    with pytest.raises(ValueError, match="mask steepness must be a positive number"):
        DataSpec(mask="self-masking", mask_steepness=0.0).validate()


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
    assert main(["train", "--mask", "self-masking", "--missing-rate", "0.5", "--mask-steepness", "5", "--limit",
                 "128", "--batch-size", "32", "--steps", "1", "--fid-every", "0", "--out", str(tmp_path / "k")]) == 0
    assert "steepness 5" in capsys.readouterr().err
    assert json.loads((tmp_path / "k" / "config.json").read_text())["data"]["mask_steepness"] == 5.0


# -- mask models that see the image (--mask-model) ------------------------------------------------

def _mnar_config(**kw) -> MisGANConfig:
    base = dict(data=DataSpec(dataset="mnist-5k", limit=96, mask="self-masking", missing_rate=0.5),
                batch_size=32, steps=4, sample_every=1000, checkpoint_every=1000, log_every=2, fid_every=0, seed=3)
    base.update(kw)
    return MisGANConfig(**base)


@pytest.mark.parametrize("mask_model", ["self-masking", "conditional"])
def test_mask_models_train_checkpoint_and_resume_bit_exactly(tmp_path, mask_model) -> None:
    """The joint data critic: the pair (x*m, m), tau 0."""
    from misgan_core import MisGAN

    config = _mnar_config(mask_model=mask_model, imputer=True)
    straight = MisGAN(config, run_dir=tmp_path / "a")
    straight.train(5)
    split = MisGAN(config, run_dir=tmp_path / "b")
    split.train(3)
    resumed = MisGAN.load(tmp_path / "b")
    assert resumed.config.mask_model == mask_model  # the defaults are resolved once and stored
    assert resumed.config.tau == 0.0
    assert resumed.nets.dx.layers[0].in_features == 2 * 784
    resumed.train(2)
    for name, module in straight.nets.modules().items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, resumed.nets.modules()[name].state_dict()[key]), f"{name}.{key}"
    assert all(torch.isfinite(torch.tensor(r["loss_gm"])) for r in resumed.history if "loss_gm" in r)


def test_self_masking_mask_model_makes_masks_from_the_pixels_it_is_given() -> None:
    from misgan_core.mask_models import SelfMaskingNet as SelfMaskingMaskModel
    from misgan_core.models import TemperatureSigmoid

    model = SelfMaskingMaskModel((1, 2, 2), TemperatureSigmoid(0.66))
    with torch.no_grad():
        model.slope.fill_(-8.0 / model.SCALE)  # bright pixels are seldom observed
        model.offset.fill_(4.0 / model.SCALE)
    x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]).expand(4000, 1, 2, 2)
    m = model(x, torch.rand(4000, 1, 2, 2, generator=torch.Generator().manual_seed(0)))
    dark, bright = float(m[..., 0].mean().detach()), float(m[..., 1].mean().detach())
    assert dark > 0.9 and bright < 0.1  # sigmoid(4) and sigmoid(-4) per pixel
    m.sum().backward()  # gradients reach the mechanism's parameters (relaxed Bernoulli draws)
    assert bool((model.offset.grad != 0).all()) and float(model.slope.grad) != 0


def test_a_per_pixel_offset_from_an_old_run_loads_into_the_parameter_its_optimizer_steps() -> None:
    """Runs made with the first version's per-pixel offset still load and resume: the loaded offset is the
    tensor Adam (built before the load, as MisGAN.load does) updates."""
    from misgan_core.mask_models import SelfMaskingNet as SelfMaskingMaskModel
    from misgan_core.models import TemperatureSigmoid

    model = SelfMaskingMaskModel((1, 2, 2), TemperatureSigmoid(0.66))
    adam = torch.optim.Adam(model.parameters(), lr=0.1)
    old = {"slope": torch.tensor(-0.1), "offset": torch.tensor([[[0.02, 0.04], [0.06, 0.08]]])}
    model.load_state_dict(old)
    assert model.offset.shape == (1, 2, 2) and torch.equal(model.offset.detach(), old["offset"])
    model(torch.rand(8, 1, 2, 2), torch.rand(8, 1, 2, 2)).sum().backward()
    adam.step()
    assert not torch.equal(model.offset.detach(), old["offset"])  # the loaded offset moved
    assert model.offset.grad.shape == (1, 2, 2)


def test_mask_model_gradients_reach_gx_through_the_masks_and_gm_scaled_by_alpha() -> None:
    """Gm's parameters get alpha * dL_x + dL_m, Gx gets dL_x along both paths (pixels and masks)."""
    from misgan_core import MisGAN

    gan = MisGAN(_mnar_config(mask_model="self-masking", alpha=0.0, mask_critic=False))
    x, m = gan._batch()
    gan._generator_update(x, m)
    # alpha 0 and no Dm: nothing may move Gm; Gx still learns.
    assert all(p.grad is None or not bool(p.grad.any()) for p in gan.nets.gm.parameters())
    assert any(p.grad is not None and bool(p.grad.any()) for p in gan.nets.gx.parameters())
    gan = MisGAN(_mnar_config(mask_model="self-masking", alpha=0.2))
    gan._generator_update(x, m)
    assert bool(gan.nets.gm.slope.grad.any())


def test_alpha_resolves_to_the_papers_for_the_independent_model_and_to_one_for_models_that_see_the_image(
        tmp_path) -> None:
    """alpha left unset is stored resolved in config.json: 0.2 (eq. 7) for Gm(eps), 1 for the self-masking and
    conditional models; a value given is kept; a bad one is a one-line error."""
    from misgan_core import MisGAN

    for mask_model, want, lam in (("independent", 0.2, 0.66), ("self-masking", 1.0, 3.0), ("conditional", 1.0, 0.66)):
        gan = MisGAN(_mnar_config(mask_model=mask_model, tau=-1.0), run_dir=tmp_path / mask_model)
        # the temperature likewise: the paper's 0.66, 3 where each pixel's mask is drawn from its own value
        assert (gan.config.alpha, gan.config.temperature) == (want, lam)
        from misgan_core.models import TemperatureSigmoid
        assert [m.temperature for m in gan.nets.gm.modules() if isinstance(m, TemperatureSigmoid)] == [lam]
        assert (gan.mask_model.mask_critic_output is not None) == (mask_model == "self-masking")
        gan.train(1)
        assert (MisGAN.load(tmp_path / mask_model).config.alpha, MisGAN.load(tmp_path / mask_model).config.temperature
                ) == (want, lam)
    assert MisGAN(_mnar_config(mask_model="self-masking", alpha=0.3)).config.alpha == 0.3
    assert MisGAN(_mnar_config(mask_model="self-masking", temperature=0.66)).config.temperature == 0.66
    with pytest.raises(ValueError, match="alpha must be a finite non-negative number"):
        MisGAN(_mnar_config(alpha=-1.0))


def _critic_inputs(monkeypatch, gan) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Train `gan` and return the (real, fake) batches its data and mask critics were shown."""
    import dataclasses

    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"dx": [], "dm": []}
    speed = gan.speed

    class Spy(type(speed)):
        def critic_loss(self, critic, real, fake, *args):
            name = "dm" if critic is gan.nets.dm else "dx" if critic is gan.nets.dx else None
            if name:
                seen[name].append((real.detach().clone(), fake.detach().clone()))
            return speed.critic_loss(critic, real, fake, *args)

    gan.speed = Spy(**dataclasses.asdict(speed))
    try:
        gan.train()
    finally:
        gan.speed = speed
    return seen


def _soft_share(seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]], name: str, low: float, high: float
                ) -> float:
    """The mean share of generated mask entries strictly between low and high that critic `name` judged (Dx's
    pair: the mask is the last channel)."""
    masks = [fake if name == "dm" else fake[:, -1:] for _, fake in seen[name]]
    return sum(((m > low) & (m < high)).float().mean().item() for m in masks) / len(masks)


def _ungated(monkeypatch) -> None:
    """The self-masking model's pair critic without the gate, to read its draws off the mask channel."""
    from misgan_core import mask_models

    monkeypatch.setattr(mask_models.SelfMaskingMaskModel, "data_critic_input",
                        lambda self, x, m, tau: mask_models.with_mask_channel(mask_models.f_tau(x, m, tau), m))


def test_the_mask_critic_judges_sharper_draws_than_the_data_critic(monkeypatch) -> None:
    """The self-masking model's Dm judges draws of its own at MASK_CRITIC_TEMPERATURE (0.66) while Dx keeps the
    model's lambda 3: at 3 more entries are soft (between 0.05 and 0.95) than at 0.66."""
    from misgan_core import MisGAN, mask_models

    def soft_share():
        gan = MisGAN(_mnar_config(mask_model="self-masking", steps=2))
        seen = _critic_inputs(monkeypatch, gan)
        assert gan.config.temperature == 3.0 and len(seen["dm"]) == len(seen["dx"]) == 2 * gan.config.n_critic
        return _soft_share(seen, "dx", 0.05, 0.95), _soft_share(seen, "dm", 0.05, 0.95)

    _ungated(monkeypatch)
    dx, dm = soft_share()
    with monkeypatch.context() as patch:
        patch.setattr(mask_models, "MASK_CRITIC_TEMPERATURE", 3.0)  # Dm judges Dx's own draws
        dx_same, dm_same = soft_share()
    assert abs(dm_same - dx_same) < 0.05 and abs(dx - dx_same) < 0.05
    assert dm < dx / 2
    # the masks the app shows (sample_with_masks) are the mask critic's sharper draws
    shown = MisGAN(_mnar_config(mask_model="self-masking")).sample_with_masks(64)[1]
    assert ((shown > 0.05) & (shown < 0.95)).float().mean().item() < dx / 2
    assert MisGAN(_mnar_config(mask_model="conditional")).mask_model.mask_critic_output is None


def test_the_data_critics_draws_sharpen_where_the_learnt_slope_is_near_zero(monkeypatch) -> None:
    """The self-masking model's Dx draws are at `temperature` (3) where |slope| >= 2 and fall to
    TEMPERATURE_FLOOR (0.25) as the slope goes to 0: on MCAR dropout (slope started at 0) they are sharper
    than the mask critic's (0.66); under self-masking (slope started at -4) as soft as before; with the floor equal to
    the temperature, soft on MCAR too."""
    from misgan_core import MisGAN, mask_models
    from misgan_core.mask_models import SelfMaskingNet, logistic_noise
    from misgan_core.models import TemperatureSigmoid

    def soft_shares(**kw):
        gan = MisGAN(_mnar_config(mask_model="self-masking", steps=1, **kw))
        seen = _critic_inputs(monkeypatch, gan)
        return gan, _soft_share(seen, "dx", 0.2, 0.8), _soft_share(seen, "dm", 0.2, 0.8)

    _ungated(monkeypatch)
    mcar = DataSpec(dataset="mnist-5k", limit=96, mask="dropout", missing_rate=0.8)
    gan, dx, dm = soft_shares(data=mcar)
    assert gan.nets.gm.data_critic_temperature() == pytest.approx(0.25, abs=0.01)
    assert dx < dm / 1.5  # sharper than the mask critic's draws at 0.66
    with monkeypatch.context() as patch:
        patch.setattr(mask_models, "TEMPERATURE_FLOOR", 3.0)
        _, dx_no_floor, _ = soft_shares(data=mcar)
    assert dx_no_floor > 1.5 * dx
    steep, dx_steep, dm_steep = soft_shares()  # self-masking 50%: the slope starts at -4
    assert steep.nets.gm.data_critic_temperature() == 3.0 and dx_steep > 1.5 * dm_steep
    # the rule itself: floor + (temperature - floor) * min(1, (a / 2) ** 2)
    model = SelfMaskingNet((1, 4, 4), TemperatureSigmoid(3.0), initial_slope=1.0, temperature_floor=0.5)
    assert model.data_critic_temperature() == pytest.approx(0.5 + 2.5 / 4)
    x, u = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    lam = model.data_critic_temperature()
    assert torch.allclose(model(x, u), TemperatureSigmoid(lam)(model.observed_logit(x) + logistic_noise(u)))


def test_the_pair_critics_mask_channel_is_weighed_by_the_learnt_dependence(monkeypatch) -> None:
    """With the self-masking model, Dx's mask channel is m * min(1, (slope / 2) ** 2) for real and generated
    pairs: zero on MCAR dropout (slope 0), m itself under self-masking (slope -4), and m for the conditional
    model."""
    from misgan_core import MisGAN

    def channels(mask_model="self-masking", **kw):
        gan = MisGAN(_mnar_config(mask_model=mask_model, steps=1, **kw))
        seen = _critic_inputs(monkeypatch, gan)["dx"]
        return gan, [(real[:, -1:], fake[:, -1:]) for real, fake in seen]

    mcar = DataSpec(dataset="mnist-5k", limit=96, mask="dropout", missing_rate=0.8)
    gan, seen = channels(data=mcar)
    assert gan.nets.gm.dependence() < 1e-3
    assert all(float(real.abs().max()) < 1e-3 and float(fake.abs().max()) < 1e-3 for real, fake in seen)
    gan, seen = channels()  # self-masking 50%: the gate open from the start
    assert gan.nets.gm.dependence() == 1.0 and all(set(real.unique().tolist()) == {0.0, 1.0} for real, _ in seen)
    _, seen = channels("conditional", data=mcar)
    assert all(set(real.unique().tolist()) == {0.0, 1.0} and float(fake.max()) > 0.5 for real, fake in seen)


def test_the_mask_critic_moves_gx_through_the_masks_it_causes() -> None:
    """With a mask model that sees the image, L_m reaches Gx (the masks are drawn from its images); with the
    independent Gm it cannot. Dx is zeroed, so any gradient Gx gets comes from L_m."""
    from misgan_core import MisGAN

    for mask_model, reaches in (("self-masking", True), ("conditional", True), ("independent", False)):
        gan = MisGAN(_mnar_config(mask_model=mask_model, tau=-1.0))
        with torch.no_grad():
            for p in gan.nets.dx.parameters():
                p.zero_()
        x, m = gan._batch()
        out = gan._generator_update(x, m)
        moved = any(p.grad is not None and bool(p.grad.any()) for p in gan.nets.gx.parameters())
        assert moved == reaches, mask_model
        assert torch.isfinite(out["loss_gm"])


@pytest.mark.parametrize("mask, direction, rate, sign", [("self-masking", "high", 0.5, -1),
                                                         ("self-masking", "low", 0.5, 1), ("dropout", "high", 0.5, 0),
                                                         ("dropout", "high", 0.8, 0)])
def test_the_self_masking_model_starts_from_the_direction_the_data_suggest(mask, direction, rate, sign) -> None:
    """Bright pixels missing -> a negative starting slope (bright values less often observed); dark ones
    missing -> positive; MCAR dropout -> 0, the true slope, with the offset at the observed share's logit (the
    MCAR fit; 0 beside a slope). Read from the incomplete data alone."""
    from misgan_core import MisGAN
    from misgan_core.mask_models import initial_self_masking_slope

    spec = DataSpec(dataset="mnist-5k", limit=500, mask=mask, missing_rate=rate, mask_direction=direction)
    gan = MisGAN(_mnar_config(data=spec, mask_model="self-masking"))
    slope, offset = gan.nets.gm.mechanism()["slope"], gan.nets.gm.mechanism()["offset"]
    assert (slope > 0) - (slope < 0) == sign
    data = spec.load()
    observed = float(data.m.float().mean())
    assert offset == pytest.approx(math.log(observed / (1 - observed)) if sign == 0 else 0.0, abs=1e-4)
    assert sign != 0 or abs(observed - (1 - rate)) < 0.01
    assert initial_self_masking_slope(data.x, data.m) == pytest.approx(slope, abs=1e-5)
    empty = torch.zeros_like(data.m)
    assert initial_self_masking_slope(data.x, empty) == 0.0  # nothing observed: no evidence either way


@pytest.mark.parametrize("args, message", [
    (["--mask-model", "bogus"], "invalid choice"),
    (["--mask-model", "self-masking", "--temperature", "0"], "temperature must be a finite positive number"),
    (["--temperature-floor", "0.25"], "unrecognized arguments"),
])
def test_bad_mask_model_combinations_get_one_line(tmp_path, capsys, args, message) -> None:
    try:
        code = main(["train", "--dataset", "mnist-5k", "--limit", "64", "--mask", "self-masking", "--missing-rate",
                     "0.5", "--steps", "1", "--out", str(tmp_path / "run"), *args])
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_data_critic_that_sees_the_mask_judges_pairs_keeps_tau_0_and_resumes_bit_exactly(tmp_path) -> None:
    """A mask model that sees the image: Dx takes (x * m, m) as two channels; the real half of its batch carries
    the minibatch's own masks and observed pixels, the fake half Gm's masks of Gx's images; tau stays 0."""
    from misgan_core import MisGAN

    config = _mnar_config(mask_model="self-masking", imputer=True)
    gan = MisGAN(config, run_dir=tmp_path / "a")
    assert gan.config.tau == 0.0 and gan.nets.dx.layers[0].in_features == 2 * 784
    seen: list[torch.Tensor] = []
    hook = gan.nets.dx.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    x, m = gan._batch()
    gan._generator_update(x, m)
    hook.remove()
    (fake,) = seen
    assert fake.shape == (len(x), 2, 28, 28)
    fake_image, fake_mask = fake[:, :1], fake[:, 1:]
    assert bool((fake_image <= fake_mask + 1e-6).all()) and bool((fake_image >= 0).all())  # Gx(z) * m, x in [0, 1]
    assert bool((fake_image[fake_mask == 0] == 0).all()) and 0 < float(fake_mask.mean()) < 1
    pair = gan.mask_model.data_critic_input(x, m, gan.config.tau)
    assert torch.equal(pair[:, :1], x * m) and torch.equal(pair[:, 1:], m)

    straight = MisGAN(config, run_dir=tmp_path / "b")
    straight.train(4)
    split = MisGAN(config, run_dir=tmp_path / "c")
    split.train(2)
    resumed = MisGAN.load(tmp_path / "c")
    assert resumed.config.tau == 0.0
    resumed.train(2)
    for name, module in straight.nets.modules().items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, resumed.nets.modules()[name].state_dict()[key]), f"{name}.{key}"
