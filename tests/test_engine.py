"""The MisGAN engine through its public API: operators, losses, missingness, imputer, runs, resume."""

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from misgan_core import (
    CheckpointError,
    DatasetError,
    DataSpec,
    IndependentDropout,
    MisGAN,
    MisGANConfig,
    QuadrantObservation,
    RectangleObservation,
    SquareObservation,
    f_tau,
    gradient_penalty,
    load_complete,
    load_user_data,
    make_incomplete,
    make_mask_process,
    native_bf16,
)
from misgan_core.critic_gradients import critic_loss, gradient_penalty_autograd
from misgan_core.fast import SpeedPaths
from misgan_core.mask_models import scale_grad
from misgan_core.models import Critic, TemperatureSigmoid, check_shape, critic, imputer_net
from misgan_core.runs import RunDir
from misgan_core.spec import FIELDS as DATA_FIELDS
from misgan_core.training import EpochOrder


def tiny_config(**kw) -> MisGANConfig:
    """A small config; data fields (dataset, limit, mask, ...) go into its DataSpec."""
    base = dict(dataset="mnist-5k", limit=256, batch_size=32, steps=4, sample_every=1000, checkpoint_every=1000,
                log_every=2, fid_every=0)
    base.update(kw)
    data = DataSpec(**{k: base.pop(k) for k in DATA_FIELDS if k in base})
    return MisGANConfig(data=data, **base)


# -- operators and losses -------------------------------------------------------------------------


def test_f_tau_fills_missing_with_tau_and_keeps_observed():
    x = torch.tensor([[0.2, 0.9, 0.4]])
    m = torch.tensor([[1.0, 0.0, 1.0]])
    assert torch.equal(f_tau(x, m), torch.tensor([[0.2, 0.0, 0.4]]))
    assert torch.allclose(f_tau(x, m, tau=-1.0), torch.tensor([[0.2, -1.0, 0.4]]))


def test_temperature_sigmoid_matches_formula_and_hard_variants_saturate():
    x = torch.tensor([-2.0, -0.1, 0.0, 0.3, 2.0])
    lam = 0.66
    assert torch.allclose(TemperatureSigmoid(lam)(x), 1 / (1 + torch.exp(-x / lam)))
    hard = TemperatureSigmoid(lam, "hard-sigmoid")(x)
    assert hard[0] == 0 and hard[-1] == 1 and hard[2] == 0.5
    st_in = x.clone().requires_grad_(True)
    st = TemperatureSigmoid(lam, "straight-through")(st_in)
    assert torch.equal(st.detach(), (x > 0).float())
    st.sum().backward()
    assert torch.allclose(st_in.grad, torch.sigmoid(x / lam) * (1 - torch.sigmoid(x / lam)) / lam)
    stretched_in = torch.tensor([-3.0, 0.0, 0.5, 3.0], requires_grad=True)
    stretched = TemperatureSigmoid(lam, "stretched")(stretched_in)
    s = torch.sigmoid(stretched_in.detach() / lam)
    assert stretched[0] == 0 and stretched[-1] == 1  # exact 0 and 1 at finite logits (the released "fusion")
    assert torch.allclose(stretched[1:3], (s * 1.2 - 0.1)[1:3])
    stretched.sum().backward()
    assert stretched_in.grad[0] == 0 and stretched_in.grad[1] == pytest.approx(1.2 * 0.25 / lam)
    with pytest.raises(ValueError, match="unknown mask activation"):
        TemperatureSigmoid(lam, "tanh")


def test_critic_loss_is_fake_minus_real_plus_penalty_on_a_linear_critic():
    # D(x) = w.x + b has gradient w everywhere, so the penalty is 10 * (||w|| - 1)^2 exactly.
    critic = Critic((1, 1, 2), [torch.nn.Linear(2, 1)])
    with torch.no_grad():
        critic.layers[0].weight.copy_(torch.tensor([[3.0, 4.0]]))
        critic.layers[0].bias.fill_(0.5)
    real = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])
    fake = torch.zeros(2, 1, 1, 2)
    eps = torch.full((2, 1, 1, 1), 0.5)
    loss, w = critic_loss(critic, real, fake, eps)
    d_real = (3.0 + 0.5 + 4.0 + 0.5) / 2
    d_fake = 0.5
    assert w.item() == pytest.approx(d_real - d_fake)
    assert loss.item() == pytest.approx(d_fake - d_real + 10 * (5.0 - 1.0) ** 2)


@pytest.mark.parametrize("arch,shape", [("fc", (1, 28, 28)), ("conv", (1, 28, 28)), ("conv", (3, 32, 32)),
                                        ("conv", (1, 64, 64))])
def test_explicit_gradient_penalty_equals_autograd_double_backward(arch, shape):
    torch.manual_seed(0)
    critic = critic_of(arch, shape).double()
    real, fake = torch.rand(3, *shape, dtype=torch.float64), torch.rand(3, *shape, dtype=torch.float64)
    eps = torch.rand(3, 1, 1, 1, dtype=torch.float64)
    params = list(critic.parameters())
    ours = gradient_penalty(critic, real, fake, eps)
    ref = gradient_penalty_autograd(critic, real, fake, eps)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    g_ours = torch.autograd.grad(ours, params, allow_unused=True)
    g_ref = torch.autograd.grad(ref, params, allow_unused=True)
    for a, b, p in zip(g_ours, g_ref, params, strict=True):
        a = torch.zeros_like(p) if a is None else a  # biases do not enter the input gradient
        b = torch.zeros_like(p) if b is None else b
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_scale_grad_scales_only_the_gradient():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = scale_grad(x, 0.2)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([3.0, 5.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.6, 1.0]))


def test_one_generator_backward_gives_gm_alpha_times_lx_plus_lm():
    """The fused generator step must equal separate gradients of eq. 6 (Gx) and eq. 7 (Gm)."""
    torch.manual_seed(0)
    gan = MisGAN(tiny_config(steps=1))
    nets = gan.nets
    z, e = torch.randn(8, 128), torch.randn(8, 128)
    x, m = nets.gx(z), nets.gm(e)
    lx = -nets.dx(x * m).mean()
    lm = -nets.dm(m).mean()
    gx_ref = torch.autograd.grad(lx, list(nets.gx.parameters()), retain_graph=True)
    gm_ref = torch.autograd.grad(0.2 * lx + lm, list(nets.gm.parameters()))
    x, m = nets.gx(z), nets.gm(e)
    total = -nets.dx(x * scale_grad(m, 0.2)).mean() - nets.dm(m).mean()
    total.backward()
    for p, g in zip(nets.gx.parameters(), gx_ref, strict=True):
        assert torch.allclose(p.grad, g, atol=1e-7)
    for p, g in zip(nets.gm.parameters(), gm_ref, strict=True):
        assert torch.allclose(p.grad, g, atol=1e-7)



def critic_of(arch: str, shape: tuple[int, int, int]) -> Critic:
    """The data critic appendix D gives images of `shape` (with the paper's independent mask model)."""
    return critic(arch, shape)


# -- missingness ------------------------------------------------------------------------------------


@pytest.mark.parametrize("process", [SquareObservation(14), SquareObservation(7), IndependentDropout(0.8),
                                     IndependentDropout(rate_range=(0.2, 0.6)), RectangleObservation(),
                                     QuadrantObservation()])
def test_missing_rate_matches_the_stated_rate(process):
    gen = torch.Generator().manual_seed(3)
    m = process.sample(20000, 28, 28, gen)
    assert m.shape == (20000, 1, 28, 28)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert 1 - m.mean().item() == pytest.approx(process.expected_missing_rate(28, 28), abs=0.005)


def test_paper_rates_for_rectangles_and_squares():
    assert RectangleObservation().expected_missing_rate(28, 28) == pytest.approx(0.75)
    assert SquareObservation(14).expected_missing_rate(28, 28) == pytest.approx(0.75)


def test_square_observation_is_one_square_of_the_given_side():
    m = SquareObservation(9).sample(200, 28, 28, torch.Generator().manual_seed(0))[:, 0]
    assert (m.sum((1, 2)) == 81).all()
    rows, cols = m.any(2), m.any(1)
    assert (rows.sum(1) == 9).all() and (cols.sum(1) == 9).all()
    tops = rows.float().argmax(1)
    assert tops.min() == 0 and tops.max() == 28 - 9  # every placement reachable


def test_rectangle_sides_stay_in_25_to_75_percent():
    m = RectangleObservation().sample(2000, 28, 28, torch.Generator().manual_seed(1))[:, 0]
    heights, widths = m.any(2).sum(1), m.any(1).sum(1)
    assert heights.min() >= 7 and heights.max() <= 21 and widths.min() >= 7 and widths.max() <= 21
    assert (m.sum((1, 2)) == heights * widths).all()


def test_quadrants_observe_exactly_one_quadrant():
    m = QuadrantObservation().sample(400, 28, 28, torch.Generator().manual_seed(2))[:, 0]
    quads = torch.stack([m[:, :14, :14].sum((1, 2)), m[:, :14, 14:].sum((1, 2)), m[:, 14:, :14].sum((1, 2)),
                         m[:, 14:, 14:].sum((1, 2))], 1)
    assert ((quads == 196).sum(1) == 1).all() and (m.sum((1, 2)) == 196).all()
    assert set(quads.argmax(1).tolist()) == {0, 1, 2, 3}


def test_masks_are_seeded_and_fixed_per_example(mnist5k):
    process = make_mask_process("dropout", missing_rate=0.5)
    a = make_incomplete(mnist5k, process, seed=7)
    b = make_incomplete(mnist5k, process, seed=7)
    c = make_incomplete(mnist5k, process, seed=8)
    assert torch.equal(a.m, b.m) and not torch.equal(a.m, c.m)


def test_unknown_mask_and_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="unknown missingness 'blocks'; choose one of"):
        make_mask_process("blocks")
    with pytest.raises(ValueError, match="rate of 1"):
        IndependentDropout(1.0)
    with pytest.raises(ValueError, match="square size 40"):
        SquareObservation(40).sample(2, 28, 28)


# -- data -------------------------------------------------------------------------------------------


def test_mnist_5k_is_real_digits_in_unit_range(mnist5k):
    assert mnist5k.x.shape == (5000, 1, 28, 28) and mnist5k.x.dtype == torch.float32
    assert mnist5k.x.min() == 0 and mnist5k.x.max() == 1
    assert sorted(mnist5k.labels.unique().tolist()) == list(range(10))
    assert 0.1 < mnist5k.x.mean() < 0.15  # MNIST's mean intensity is about 0.13


def test_unknown_or_absent_dataset_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'mnist5k'; choose one of mnist-5k"):
        load_complete("mnist5k")
    with pytest.raises(DatasetError, match="not on disk.*--download"):
        load_complete("mnist", data_dir=tmp_path)


def test_npz_user_data_with_nan_and_mask(tmp_path):
    x = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    x[0, 0, 0] = np.nan
    m = np.ones((5, 8, 8), np.uint8)
    m[1, 2:4, 2:4] = 0
    np.savez(tmp_path / "mine.npz", x=x, m=m)
    data = load_user_data(tmp_path / "mine.npz")
    assert data.x.shape == (5, 1, 8, 8) and not data.ground_truth
    assert data.m[0, 0, 0, 0] == 0 and data.m[1, 0, 2, 2] == 0 and data.m[1, 0, 5, 5] == 1
    assert torch.isfinite(data.x).all()


@pytest.mark.parametrize("arrays,message", [
    (dict(x=np.zeros((4, 2, 8, 8))), "1 or 3 channels"),
    (dict(x=np.zeros((4, 8, 8)), m=np.ones((4, 7, 7))), "m has shape"),
    (dict(x=np.full((4, 8, 8), 2.0)), "rescale x to"),
    (dict(x=np.zeros((4, 8, 8)), m=np.zeros((4, 8, 8))), "observes nothing"),
    (dict(y=np.zeros((4, 8, 8))), "no 'x'"),
])
def test_bad_user_arrays_get_clear_messages(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=message):
        load_user_data(tmp_path / "bad.npz")


def test_png_folder_alpha_marks_missing(tmp_path):
    from PIL import Image

    for i in range(3):
        rgba = np.zeros((8, 8, 4), np.uint8)
        rgba[..., :3] = 200
        rgba[..., 3] = 255
        rgba[:4, :, 3] = 0  # top half missing
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"{i}.png")
    data = load_user_data(tmp_path)
    assert data.x.shape == (3, 3, 8, 8)
    assert data.m[:, 0, :4].sum() == 0 and data.m[:, 0, 4:].sum() == 3 * 32
    assert torch.allclose(data.x[:, :, 4:], torch.full((3, 3, 4, 8), 200 / 255))


def test_wrong_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="not an .npz"):
        load_user_data(tmp_path / "notes.txt")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="cannot read"):
        load_user_data(tmp_path / "broken.npz")


# -- imputer ----------------------------------------------------------------------------------------


def test_imputer_keeps_observed_pixels_exactly_and_varies_with_noise():
    gan = MisGAN(tiny_config(imputer=True, steps=2))
    gan.train()
    data = gan.data.subset(slice(0, 6))
    x = data.x.clone()
    x[data.m.expand_as(x) == 0] = float("nan")  # missing entries must never leak into the result
    out = gan.impute(x, data.m, draws=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (5, 6, 1, 28, 28)
    obs = data.m.bool().expand_as(data.x)
    for k in range(5):
        assert torch.equal(out[k][obs], data.x[obs])
    assert torch.isfinite(out).all()
    assert not torch.equal(out[0][~obs], out[1][~obs])
    again = gan.impute(x, data.m, draws=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_impute_refuses_wrong_shapes_and_runs_without_imputer():
    gan = MisGAN(tiny_config(imputer=True, steps=1))
    with pytest.raises(ValueError, match="this model imputes"):
        gan.impute(torch.zeros(2, 1, 32, 32), torch.ones(2, 1, 32, 32))
    with pytest.raises(ValueError, match="mask must have shape"):
        gan.impute(torch.zeros(2, 1, 28, 28), torch.ones(2, 28, 28))
    with pytest.raises(RuntimeError, match="no imputer"):
        MisGAN(tiny_config()).impute(torch.zeros(2, 1, 28, 28), torch.ones(2, 1, 28, 28))


@pytest.mark.parametrize("mode", ["standalone", "target"])
def test_imputer_from_a_pretrained_gx(tmp_path, mode):
    MisGAN(tiny_config(steps=2), run_dir=tmp_path / "gx").train()
    gan = MisGAN(tiny_config(imputer=True, imputer_mode=mode, pretrained=str(tmp_path / "gx"), steps=2,
                             mask="dropout", missing_rate=0.5))
    gx_before = [p.clone() for p in gan.nets.gx.parameters()]
    gi_before = [p.clone() for p in gan.nets.gi.parameters()]
    gan.train()
    assert all(torch.equal(a, b) for a, b in zip(gx_before, gan.nets.gx.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(gi_before, gan.nets.gi.parameters(), strict=True))
    assert np.isfinite(gan.history[-1]["loss_di"])


def test_ambient_gan_ablation_trains_without_mask_critic():
    gan = MisGAN(tiny_config(mask_critic=False, steps=2))
    assert "dm" not in gan.optimizers
    gan.train()
    assert "loss_dm" not in gan.history[-1] and np.isfinite(gan.history[-1]["loss_dx"])


# -- runs, checkpoints, resume --------------------------------------------------------------------


def _weights(gan):
    return {f"{n}.{k}": v.clone() for n, mod in gan.nets.modules().items() for k, v in mod.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["fc", "conv"])
def test_resume_gives_the_same_weights_as_training_straight(tmp_path, arch):
    # 3 batches an epoch: 3 steps (15 batches) cross epoch boundaries
    size = dict(limit=96, batch_size=32) if arch == "fc" else dict(limit=24, batch_size=8)
    straight = MisGAN(tiny_config(arch=arch, imputer=arch == "fc", seed=5, **size), run_dir=tmp_path / "a")
    straight.train(5)
    split = MisGAN(tiny_config(arch=arch, imputer=arch == "fc", seed=5, **size), run_dir=tmp_path / "b")
    split.train(3)
    resumed = MisGAN.load(tmp_path / "b")
    assert resumed.step == 3
    resumed.train(2)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [r["step"] for r in resumed.history if "loss_dx" in r]
    assert steps == sorted(steps) and steps[-1] == 5


def test_run_folder_layout_and_safe_loading(tmp_path):
    gan = MisGAN(tiny_config(imputer=True), run_dir=tmp_path / "run")
    gan.train()
    folder = tmp_path / "run"
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "misgan" and config["imputer"] is True
    assert (folder / "model.safetensors").exists() and (folder / "state.pt").exists()
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 4 and all(np.isfinite(r["loss_dx"]) for r in lines)
    for name in ("gx", "gm", "imputed", "data"):
        assert (folder / "samples" / f"{name}_latest.png").exists()
    # state.pt loads under weights_only: no pickled code
    state = torch.load(folder / "state.pt", weights_only=True)
    assert state["step"] == 4


def test_existing_run_is_never_overwritten(tmp_path):
    MisGAN(tiny_config(), run_dir=tmp_path / "run").train(1)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run"):
        MisGAN(tiny_config(), run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_corrupt_and_mismatched_checkpoints_are_reported(tmp_path):
    MisGAN(tiny_config(), run_dir=tmp_path / "run").train(1)
    weights = tmp_path / "run" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        MisGAN.load(tmp_path / "run")
    weights.write_bytes(good)
    (tmp_path / "run" / "state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="state.pt is corrupt"):
        MisGAN.load(tmp_path / "run")
    MisGAN(tiny_config(), run_dir=tmp_path / "run2").train(1)
    config = json.loads((tmp_path / "run2" / "config.json").read_text())
    config["arch"] = "conv"
    (tmp_path / "run2" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="different model config"):
        MisGAN.load(tmp_path / "run2")
    with pytest.raises(CheckpointError, match="not a run folder"):
        MisGAN.load(tmp_path / "nowhere")


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="arch must be"):
        MisGANConfig(arch="mlp").validate()
    with pytest.raises(ValueError, match="needs --pretrained"):
        MisGANConfig(imputer=True, imputer_mode="standalone").validate()
    with pytest.raises(ValueError, match="supports 28x28, 32x32 and 64x64"):
        check_shape("conv", (1, 20, 20))


@pytest.mark.parametrize("arch,shape", [("fc", (1, 28, 28)), ("conv", (1, 28, 28)), ("conv", (3, 32, 32))])
def test_fused_critic_loss_equals_the_textbook_wgan_gp_loss(arch, shape):
    """Separate forwards on real and fake plus the autograd gradient penalty: value and weight gradients."""
    torch.manual_seed(1)
    critic = critic_of(arch, shape).double()
    real, fake = torch.rand(4, *shape, dtype=torch.float64), torch.rand(4, *shape, dtype=torch.float64)
    eps = torch.rand(4, 1, 1, 1, dtype=torch.float64)
    params = list(critic.parameters())
    ours, w = critic_loss(critic, real, fake, eps)
    ref = critic(fake).mean() - critic(real).mean() + gradient_penalty_autograd(critic, real, fake, eps)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    assert w.item() == pytest.approx((critic(real).mean() - critic(fake).mean()).item(), rel=1e-10)
    for a, b in zip(torch.autograd.grad(ours, params), torch.autograd.grad(ref, params), strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("negative_slope", [0.0, 0.2])
def test_all_linear_critic_loss_and_gradients_equal_the_textbook_ones(negative_slope):
    """FC critics take a written-out path (weight gradients computed with the loss); a critic whose inputs need
    gradients takes the general one. Both must equal autograd's double backward, for ReLU and leaky ReLU."""
    torch.manual_seed(2)
    layers = [torch.nn.Linear(12, 9), torch.nn.Linear(9, 7), torch.nn.Linear(7, 5), torch.nn.Linear(5, 1)]
    critic = Critic((1, 3, 4), layers, negative_slope=negative_slope).double()
    real, fake = torch.rand(5, 1, 3, 4, dtype=torch.float64), torch.rand(5, 1, 3, 4, dtype=torch.float64)
    fake[0] = real[0]  # a zero-length interpolation segment
    eps = torch.rand(5, 1, 1, 1, dtype=torch.float64)
    params = list(critic.parameters())
    ref = critic(fake).mean() - critic(real).mean() + gradient_penalty_autograd(critic, real, fake, eps)
    ref_grads = torch.autograd.grad(ref, params)
    written, w = critic_loss(critic, real, fake, eps)
    assert written.grad_fn is not None and type(written.grad_fn).__name__.startswith("_MLPCriticLoss")
    general, w_general = critic_loss(critic, real, fake.clone().requires_grad_(True), eps)
    assert type(general.grad_fn).__name__ != type(written.grad_fn).__name__
    for loss in (written, general):
        assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
        for a, b in zip(torch.autograd.grad(loss, params), ref_grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-13)
    assert w.item() == pytest.approx(w_general.item(), rel=1e-12)


def test_critic_steps_sample_a_whole_cycle_from_the_current_generators():
    """Gx and Gm are fixed between generator updates, so the n_critic critic steps draw their samples in one
    forward pass; it must come after each generator update, never before (stale samples)."""
    gan = MisGAN(tiny_config(steps=3))
    calls = []
    for name in ("gx", "gm"):
        gan.nets.modules()[name].register_forward_hook(
            lambda mod, inp, out, name=name: calls.append((name, len(out), gan.batches, torch.is_grad_enabled())))
    gan.train()
    n, b = gan.config.n_critic, gan.config.batch_size
    critic_phase = [call[:3] for call in calls if not call[3]][:2 * gan.step]
    assert critic_phase == [(name, n * b, n * step) for step in range(3) for name in ("gx", "gm")]
    assert [call[:3] for call in calls if call[3]] == [(name, b, n * (step + 1)) for step in range(3)
                                                       for name in ("gx", "gm")]


def test_critic_steps_impute_their_own_minibatches_in_one_pass():
    """With the imputer, the n_critic critic steps' imputations come from one Gi pass over exactly the
    minibatches those steps train on (in order), after each generator update."""
    gan = MisGAN(tiny_config(steps=2, imputer=True))
    inputs = []
    gan.nets.gi.register_forward_hook(
        lambda mod, inp, out: inputs.append((inp[0].detach().clone(), gan.batches))
        if mod.training and not torch.is_grad_enabled() else None)  # training's critic phase, not the grids
    gan.train()
    n = gan.config.n_critic
    assert [batches for _, batches in inputs] == [0, n]
    order = EpochOrder(len(gan.data), gan.config.batch_size, gan.config.seed)
    for fed, start in inputs:
        idx = torch.cat([order.indices(start + j) for j in range(n)])
        x, m = gan.data.x[idx], gan.data.m[idx]
        observed = m.bool()
        assert fed.shape == x.shape
        assert torch.equal(fed[observed], x[observed])  # observed pixels as they are, noise elsewhere
        assert bool(((fed[~observed] >= 0) & (fed[~observed] < 1)).all())


@pytest.mark.slow
@pytest.mark.parametrize("size", [32, 64])
def test_rgb_user_data_trains_dcgan_with_unet_imputer(tmp_path, size):
    """The 32x32 / 64x64 path: DCGAN generators and critics, the 5-level U-Net imputer, RGB channels."""
    rng = np.random.default_rng(0)
    x = rng.random((16, size, size, 3)).astype(np.float32)
    x[:, : size // 2, : size // 4] = np.nan  # a missing block
    np.savez(tmp_path / "rgb.npz", x=x)
    config = MisGANConfig(data=DataSpec(dataset=str(tmp_path / "rgb.npz")), arch="conv", imputer=True,
                          batch_size=8, steps=1, sample_every=1000, checkpoint_every=1000, fid_every=0)
    gan = MisGAN(config, run_dir=tmp_path / "run")
    assert type(gan.nets.gi).__name__ == "UNetImputerNet" and gan.shape == (3, size, size)
    rows = []
    gan.nets.gx.register_forward_hook(lambda mod, inp, out: rows.append(len(out)))
    gan.train()
    assert rows[:config.n_critic] == [8] * config.n_critic  # batch norm: critic steps sample one batch each
    assert np.isfinite(gan.history[-1]["loss_dx"]) and np.isfinite(gan.history[-1]["loss_di"])
    data = gan.data.subset(slice(0, 2))
    out = gan.impute(data.x, data.m, draws=2)
    assert out.shape == (2, 2, 3, size, size)
    assert torch.equal(out[1][data.m.bool().expand_as(data.x)], data.x[data.m.bool().expand_as(data.x)])
    assert MisGAN.load(tmp_path / "run").step == 1


def test_an_imputer_that_sees_the_mask_uses_it_keeps_observed_pixels_and_resumes_bit_exactly(tmp_path):
    """--imputer-sees-mask (the released code's MaskImputer): the same filled input with another mask gives
    other imputations; observed entries are kept; a split run matches a straight one."""
    config = tiny_config(imputer=True, imputer_sees_mask=True, mask="dropout", missing_rate=0.8, limit=96, seed=3)
    gan = MisGAN(config, run_dir=tmp_path / "a")
    gan.train(3)
    filled = torch.rand(4, 1, 28, 28)
    m1 = (torch.rand(4, 1, 28, 28) < 0.2).float()
    m2 = 1 - m1
    gi = gan.nets.gi
    assert not torch.allclose(gi(filled, m1), gi(filled, m2))  # the mask is an input, not only the fill
    x, m = gan.data.x[:8], gan.data.m[:8]
    draws = gan.impute(x, m, draws=2)
    assert torch.equal(draws[:, m.bool().expand_as(x)], x[m.bool()].expand(2, -1))
    plain = imputer_net((1, 28, 28))
    assert plain.net[0].in_features == 784 and gi.net[0].in_features == 2 * 784

    resumed = MisGAN(config, run_dir=tmp_path / "b")
    resumed.train(2)
    resumed = MisGAN.load(tmp_path / "b")
    assert resumed.config.imputer_sees_mask
    resumed.train(1)
    a, b = _weights(gan), _weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_an_imputer_critic_that_sees_the_mask_judges_pairs_with_the_batch_masks_and_resumes_bit_exactly(tmp_path):
    """--imputer-critic-sees-mask: Di takes (image, mask) as two channels; the Gx samples it scores beside the
    imputations carry the same real masks, row for row; a split run matches a straight one."""
    config = tiny_config(imputer=True, imputer_critic_sees_mask=True, mask="square", mask_size=14, limit=96,
                         seed=4)
    gan = MisGAN(config, run_dir=tmp_path / "a")
    assert gan.nets.di.layers[0].in_features == 2 * 784
    assert MisGAN(dataclasses.replace(config, imputer_critic_sees_mask=False)).nets.di.layers[0].in_features == 784
    seen = []  # the generator step's Di inputs (the critic steps' MLP loss does not call forward)
    gan.nets.di.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()))
    gan.train(2)
    assert len(seen) == 2
    for rows in seen:
        imputed, samples = rows.chunk(2)
        assert rows.shape[1] == 2 and torch.equal(imputed[:, 1], samples[:, 1])
        assert set(rows[:, 1].unique().tolist()) == {0.0, 1.0}
        assert torch.equal(rows[:, 1].flatten(1).sum(1), torch.full((len(rows),), 196.0))  # real 14x14 squares
        observed = imputed[:, 1:].bool()
        real = gan.data.x.flatten(1)
        for image, m in zip(imputed[:, :1], observed, strict=True):  # its observed pixels are a training digit's
            assert bool(((real[:, m.flatten()] - image[m]).abs().amax(1) == 0).any())
    assert gan.impute(gan.data.x[:4], gan.data.m[:4]).shape == (1, 4, 1, 28, 28)

    straight = MisGAN(config, run_dir=tmp_path / "s")
    straight.train(3)
    resumed = MisGAN(config, run_dir=tmp_path / "b")
    resumed.train(2)
    resumed = MisGAN.load(tmp_path / "b")
    assert resumed.config.imputer_critic_sees_mask and resumed.nets.di.layers[0].in_features == 2 * 784
    resumed.train(1)
    a, b = _weights(straight), _weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_weight_averages_sample_and_impute_and_resume_bit_exactly(tmp_path):
    """--ema: sample(), impute() and the demo export use the averaged weights, which trail the live ones by
    the decay; a split run's averages equal a straight run's."""
    config = tiny_config(imputer=True, ema=0.9, limit=96, seed=4, imputer_start=1)
    straight = MisGAN(config, run_dir=tmp_path / "a")
    before = {k: v.clone() for k, v in straight.averaged["gx"].state_dict().items()}
    straight.train(4)
    live, avg = straight.nets.gx.state_dict(), straight.averaged["gx"].state_dict()
    assert all(not torch.equal(live[k], avg[k]) for k in live)
    assert all(not torch.equal(before[k], avg[k]) for k in live)  # it moved
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, config.latent, generator=gen)
    assert torch.allclose(straight.sample(6, torch.Generator().manual_seed(0)), straight.averaged["gx"](z))
    x, m = straight.data.x[:4], straight.data.m[:4]
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    filled = straight.averaged["gi"](torch.where(m.bool(), x, torch.zeros(())) + w * (1 - m), m)
    assert torch.allclose(straight.impute(x, m, generator=torch.Generator().manual_seed(0))[0],
                          torch.where(m.bool(), x, filled))

    split = MisGAN(config, run_dir=tmp_path / "b")
    split.train(2)
    split = MisGAN.load(tmp_path / "b")
    split.train(2)
    for name in ("gx", "gm", "gi"):
        a, b = straight.averaged[name].state_dict(), split.averaged[name].state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)

    from misgan_core.demo import export_demo
    shipped = MisGAN.load(export_demo(tmp_path / "a", tmp_path / "demo"))
    assert torch.allclose(shipped.sample(6, torch.Generator().manual_seed(0)),
                          straight.sample(6, torch.Generator().manual_seed(0)), atol=2e-3)  # float16 weights
    with pytest.raises(ValueError, match="ema must be a decay"):
        tiny_config(ema=1.0).validate()


def test_the_imputer_joins_at_imputer_start_and_misgan_trains_alone_before(tmp_path):
    gan = MisGAN(tiny_config(imputer=True, imputer_start=2, limit=96))
    gi, di, gx = (copy.deepcopy(gan.nets.gi), copy.deepcopy(gan.nets.di), copy.deepcopy(gan.nets.gx))
    gan.train(2)
    assert all(torch.equal(a, b) for a, b in zip(gi.parameters(), gan.nets.gi.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(di.parameters(), gan.nets.di.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(gx.parameters(), gan.nets.gx.parameters(), strict=True))
    assert "loss_di" not in gan.history[-1]
    gan.train(1)
    assert not all(torch.equal(a, b) for a, b in zip(gi.parameters(), gan.nets.gi.parameters(), strict=True))
    with pytest.raises(ValueError, match="imputer_start .* needs the imputer in joint mode"):
        tiny_config(imputer=False, imputer_start=5).validate()


def test_the_fc_imputer_has_the_asked_width_and_depth(tmp_path):
    gi = imputer_net((1, 28, 28), width=784, depth=3)
    widths = [(layer.in_features, layer.out_features) for layer in gi.net if isinstance(layer, torch.nn.Linear)]
    assert widths == [(784, 784), (784, 784), (784, 784), (784, 784)]  # the released code's 784-784 imputer
    gan = MisGAN(tiny_config(imputer=True, imputer_width=64, imputer_depth=1), run_dir=tmp_path / "run")
    gan.train(1)
    assert MisGAN.load(tmp_path / "run").nets.gi.net[0].out_features == 64
    with pytest.raises(ValueError, match="imputer_depth must be at least 1"):
        tiny_config(imputer_depth=0).validate()


# -- bfloat16 training (MisGANConfig.precision) ---------------------------------------------------


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


@pytest.mark.parametrize("arch,shape", [("fc", (1, 28, 28)), ("conv", (1, 28, 28))])
def test_bf16_critic_loss_is_the_float32_loss_within_a_small_part_of_minibatch_noise(arch, shape):
    """Under autocast the written-out FC path (its own casts) and the general conv path give the WGAN-GP loss
    and weight gradients in float32, off the float32 ones by bfloat16 rounding (8 bits) only: each weight
    gradient by under a fifth of how much it changes from one minibatch to the next (measured: 1/13 to 1/8)."""
    torch.manual_seed(3)
    critic = critic_of(arch, shape)
    params = list(critic.parameters())

    def loss_and_grads(seed: int, bf16: bool):
        g = torch.Generator().manual_seed(seed)
        real, fake = torch.rand(64, *shape, generator=g), torch.rand(64, *shape, generator=g)
        eps = torch.rand(64, 1, 1, 1, generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, w = critic_loss(critic, real, fake, eps)
        return loss, w, torch.autograd.grad(loss, params)

    loss, w, grads = loss_and_grads(0, bf16=True)
    exact_loss, exact_w, exact = loss_and_grads(0, bf16=False)
    _, _, other_batch = loss_and_grads(1, bf16=False)
    assert loss.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    assert loss.item() == pytest.approx(exact_loss.item(), rel=2e-2)
    assert w.item() == pytest.approx(exact_w.item(), rel=2e-2, abs=1e-3)
    checked = 0
    for g, g32, g_other in zip(grads, exact, other_batch, strict=True):
        if float(g32.norm()) == 0:  # the last bias: D(real) - D(fake) does not depend on it
            assert float(g.norm()) == 0
            continue
        assert 0 < float((g - g32).norm()) < 0.2 * float((g_other - g32).norm())
        checked += 1
    assert checked == len(params) - 1


def test_bf16_training_keeps_float32_weights_follows_fp32_and_resumes_bit_exactly(tmp_path):
    config = tiny_config(imputer=True, limit=96, seed=6, precision="bf16", log_every=1)
    straight = MisGAN(config, run_dir=tmp_path / "a")
    straight.train(4)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for net in straight.nets.modules().values() for p in net.parameters())
    exact = MisGAN(dataclasses.replace(config, precision="fp32"))
    exact.train(4)
    # Dx and Dm follow the fp32 run to bfloat16 rounding over 20 critic updates. Di does not: at the start
    # Gx samples and imputations are alike (w_i ~ 0), so its path is set by noise and rounding moves it.
    for ours, ref in zip(straight.history, exact.history, strict=True):
        for name in ("loss_dx", "loss_dm"):
            assert ours[name] == pytest.approx(ref[name], rel=1e-2), (ours["step"], name)
    moved = [_relative_error(a, b) for a, b in zip(_weights(straight).values(), _weights(exact).values(),
                                                   strict=True)]
    assert max(moved) > 0  # bfloat16 did run
    split = MisGAN(config, run_dir=tmp_path / "b")
    split.train(2)
    resumed = MisGAN.load(tmp_path / "b")
    assert resumed.config.precision == "bf16"
    resumed.train(2)
    for (k, a), b in zip(_weights(straight).items(), _weights(resumed).values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        tiny_config(precision="fp16").validate()


def test_conv_misgan_trains_in_channels_last_as_in_the_contiguous_layout_to_float_rounding():
    """SpeedPaths.channels_last changes the weights' layout, not the training: a generator step of Conv-MisGAN
    with its imputer (5 critic updates, 1 generator update) agrees with the contiguous layout's to float32
    rounding (oneDNN picks other convolution kernels, so not bit-exactly: measured up to 5e-4 in the weights
    and 3e-4 in the losses over two steps)."""
    config = tiny_config(arch="conv", imputer=True, limit=32, batch_size=16, seed=3, log_every=1)
    fast = MisGAN(config)
    fast.train(1)
    contiguous = MisGAN(config, speed=SpeedPaths(channels_last=False))
    contiguous.train(1)
    conv = fast.nets.dx.layers[1].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert contiguous.nets.dx.layers[1].weight.is_contiguous()
    assert not SpeedPaths.plain().channels_last
    for ours, ref in zip(fast.history, contiguous.history, strict=True):
        for name in ("loss_dx", "loss_dm", "loss_di", "loss_gx", "loss_gm", "loss_gi"):
            assert ours[name] == pytest.approx(ref[name], rel=3e-3), name
    ref = _weights(contiguous)
    for name, w in _weights(fast).items():
        assert _relative_error(w, ref[name]) < 5e-3, name


def test_bf16_conv_training_follows_fp32_each_critic_update_on_the_weights_the_last_one_left():
    """autocast keeps its bfloat16 copy of a weight until its region ends: one region per update, so critic
    update k + 1 runs on the weights update k left (with one region for the whole step, the critics' updates
    2..n_critic ran on stale copies: their losses then differed from fp32's by 100-700%, here 2%)."""
    if not native_bf16(torch.device("cpu")):
        pytest.skip("no native bfloat16 on this CPU (AVX512-BF16 or AMX): its convolutions are emulated, slowly")
    config = tiny_config(arch="conv", imputer=True, limit=32, batch_size=16, lr=1e-3, seed=3, precision="bf16",
                         log_every=1)
    ours = MisGAN(config)
    ours.train(1)
    exact = MisGAN(dataclasses.replace(config, precision="fp32"))
    exact.train(1)
    for name in ("loss_dx", "loss_dm", "loss_di"):  # the last critic update's: the fifth on the same weights
        assert ours.history[-1][name] == pytest.approx(exact.history[-1][name], rel=0.1), name


@pytest.mark.parametrize("arch,shape", [("fc", (1, 28, 28)), ("conv", (1, 28, 28))])
def test_the_plain_speed_path_computes_the_same_critic_loss_and_gradients(arch, shape):
    """fast.SpeedPaths: the written-out critic loss against autograd's double backward, through the seam the
    training step calls."""
    torch.manual_seed(5)
    net = critic_of(arch, shape).double()
    real, fake, eps = torch.rand(16, *shape).double(), torch.rand(16, *shape).double(), torch.rand(16, 1, 1, 1).double()
    results = []
    for speed in (SpeedPaths(), SpeedPaths.plain()):
        net.zero_grad()
        loss, w = speed.critic_loss(net, real, fake, eps, 10.0)
        loss.backward()
        results.append((loss.detach(), w.detach(), [p.grad.clone() for p in net.parameters()]))
    (fast_loss, fast_w, fast_grads), (plain_loss, plain_w, plain_grads) = results
    assert torch.allclose(fast_loss, plain_loss) and torch.allclose(fast_w, plain_w)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_a_run_on_the_plain_speed_paths_trains_checkpoints_and_resumes_bit_exactly(tmp_path):
    """Every speed path off (the reference the benches compare with) is a whole training path too."""
    config = tiny_config(imputer=True, seed=6)
    straight = MisGAN(config, run_dir=tmp_path / "a", speed=SpeedPaths.plain())
    straight.train(3)
    assert all(np.isfinite(v) for k, v in straight.history[-1].items() if k.startswith("loss"))
    split = MisGAN(config, run_dir=tmp_path / "b", speed=SpeedPaths.plain())
    split.train(2)
    resumed = MisGAN.load(tmp_path / "b", speed=SpeedPaths.plain())
    resumed.train(1)
    a, b = _weights(straight), _weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_misgan_run_logs_its_imputation_fid_on_a_held_out_subset(tmp_path) -> None:
    """At each live-FID point an imputing run logs the imputation FID of a fixed subset of its training examples
    and, where the dataset has a test split with ground truth, of held-out examples, each with its count."""
    config = MisGANConfig(data=DataSpec(limit=64, mask="dropout", missing_rate=0.8), steps=4, imputer=True,
                          fid_every=2, fid_samples=200, sample_every=0, checkpoint_every=0)
    MisGAN(config, run_dir=tmp_path / "run").train()
    points = [r for r in RunDir(tmp_path / "run").read_metrics() if "fid" in r and "step" in r]
    assert [p["step"] for p in points] == [2, 4]
    for p in points:
        assert p["imputation_fid"] > 0 and p["imputation_fid_n"] == 64
        assert p["imputation_fid_test"] > 0 and p["imputation_fid_test_n"] == 500  # mnist-5k's held-out digits
        assert p["time"] > 0

    # split 'all' holds the held-out digits: no held-out curve, the training curve as before
    config = dataclasses.replace(config, data=DataSpec(split="all", limit=64, mask="dropout", missing_rate=0.8))
    MisGAN(config, run_dir=tmp_path / "all").train()
    points = [r for r in RunDir(tmp_path / "all").read_metrics() if "imputation_fid" in r]
    assert points and not any("imputation_fid_test" in p for p in points)
