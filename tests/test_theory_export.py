"""misgan_core.theory (section 3 on tiny discrete problems) and misgan_core.export (uploads, painted masks,
draw summaries, exports)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from misgan_core import export, theory

# ---------------------------------------------------------------------------------------------
# theory


def test_transition_matrix_is_column_stochastic_and_masks_as_defined() -> None:
    problem = theory.DiscreteProblem(2, (0, 1, 2))
    q = theory.mask_distribution(problem, "dropout", 0.3)
    t = theory.transition_matrix(problem, q, tau=2)
    assert t.shape == (9, 9)
    assert np.allclose(t.sum(0), 1.0)
    vectors = problem.vectors
    s, target = vectors.index((0, 1)), vectors.index((2, 1))  # first pixel missing, filled with tau = 2
    assert t[target, s] == pytest.approx(0.3 * 0.7)


@pytest.mark.parametrize("seed", range(5))
def test_theorem1_null_space_is_the_same_for_every_tau(seed: int) -> None:
    rng = np.random.default_rng(seed)
    problem = theory.DiscreteProblem(3, (0, 1, 2))
    q = rng.uniform(size=len(problem.masks))
    q[-1] = 0.0  # never fully observed: a non-trivial null space
    q = theory.normalise(q)
    check = theory.check_theorem1(problem, q)
    assert check.nullity > 0
    assert check.equal
    assert len(set(check.ranks.values())) == 1


def test_full_observation_probability_makes_t_invertible() -> None:
    problem = theory.DiscreteProblem(2, (0, 1))
    check = theory.check_theorem1(problem, theory.mask_distribution(problem, "dropout", 0.5))
    assert check.full_rank and check.nullity == 0


def test_identifiability_uniform_is_not_unique_and_alternative_is_a_solution() -> None:
    problem = theory.DiscreteProblem(2, (0, 1))
    q = theory.mask_distribution(problem, "one-observed")
    t = theory.check_theorem1(problem, q).matrices[0]
    p = theory.data_distribution(problem, "uniform")
    result = theory.identifiability(t, p)
    assert not result.unique
    alt = result.alternative
    assert alt is not None and (alt >= 0).all() and not np.allclose(alt, p)
    assert np.allclose(t @ alt, t @ p, atol=1e-8)


def test_identifiability_point_mass_is_unique() -> None:
    problem = theory.DiscreteProblem(2, (0, 1))
    q = theory.mask_distribution(problem, "one-observed")
    t = theory.check_theorem1(problem, q).matrices[1]
    p = np.array([1.0, 0.0, 0.0, 0.0])
    result = theory.identifiability(t, p)
    assert result.unique and result.alternative is None
    assert np.allclose(result.ranges[:, 0], p, atol=1e-7) and np.allclose(result.ranges[:, 1], p, atol=1e-7)


def test_theory_refuses_bad_problems_readably() -> None:
    with pytest.raises(ValueError, match="too"):
        theory.DiscreteProblem(5, (0, 1, 2))
    with pytest.raises(ValueError, match="distinct"):
        theory.DiscreteProblem(2, (0, 0))
    problem = theory.DiscreteProblem(2, (0, 1))
    with pytest.raises(ValueError, match="tau"):
        theory.transition_matrix(problem, theory.mask_distribution(problem, "dropout"), tau=7)
    with pytest.raises(ValueError, match="all zero"):
        theory.normalise([0, 0])


# ---------------------------------------------------------------------------------------------
# uploads


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_image_to_tensor_converts_size_and_channels() -> None:
    rgb = Image.new("RGB", (90, 60), (255, 0, 0))
    x = export.image_to_tensor(_encode(rgb, "PNG"), (1, 28, 28), invert=False)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
    x3 = export.image_to_tensor(_encode(Image.new("L", (32, 32), 200), "JPEG"), (3, 32, 32))
    assert x3.shape == (1, 3, 32, 32)


def test_image_to_tensor_auto_inverts_dark_strokes_on_white() -> None:
    img = Image.new("L", (28, 28), 255)
    img.paste(0, (10, 4, 18, 24))  # a dark bar on white paper
    x = export.image_to_tensor(_encode(img, "PNG"), (1, 28, 28))
    assert float(x[0, 0, 0, 0]) < 0.1 and float(x[0, 0, 14, 14]) > 0.9


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, not an image", "not a readable image"),
        (_encode(Image.new("RGB", (8, 8)), "GIF"), "GIF"),
        (_encode(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG")[:80], "damaged or truncated"),
    ],
)
def test_image_to_tensor_errors_are_readable(data: bytes, message: str) -> None:
    with pytest.raises(export.ImageInputError, match=message):
        export.image_to_tensor(data, (1, 28, 28))


# ---------------------------------------------------------------------------------------------
# painted masks


def test_mask_from_canvas_scales_down_and_respects_meaning() -> None:
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    rgba[:140, :, 3] = 255
    m = export.mask_from_canvas(rgba, (28, 28), "missing")
    assert m.shape == (1, 1, 28, 28)
    assert m[0, 0, :14].sum() == 0 and m[0, 0, 14:].sum() == 14 * 28
    kept = export.mask_from_canvas(rgba, (28, 28), "observed")
    assert torch.equal(kept, 1 - m)
    assert export.mask_from_canvas(None, (28, 28), "missing").all()
    assert not export.mask_from_canvas(None, (28, 28), "observed").any()


def test_mask_from_canvas_threshold_and_bad_input() -> None:
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[0, 0, 3] = 255  # 1 of the 100 canvas pixels of cell (0, 0): below the threshold
    assert export.mask_from_canvas(rgba, (2, 2)).all()
    with pytest.raises(export.ImageInputError):
        export.mask_from_canvas(np.zeros((20, 20)), (2, 2))
    with pytest.raises(ValueError):
        export.mask_from_canvas(None, (2, 2), "sometimes")


# ---------------------------------------------------------------------------------------------
# draws and exports


class _NoisyImputer:
    name = "noisy"

    def impute(
        self, x: torch.Tensor, m: torch.Tensor, draws: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        assert torch.isfinite(x).all(), "the imputer must never see NaN or ground truth at missing entries"
        noise = torch.rand((draws, *x.shape), generator=generator)
        return torch.where(m.bool(), x, noise)


def test_summaries_and_strips() -> None:
    x = torch.rand(2, 1, 4, 4)
    m = (torch.rand(2, 1, 4, 4) > 0.5).float()
    draws = export.impute_dataset_draws(_NoisyImputer(), x, m, draws=5, seed=1)
    assert draws.shape == (5, 2, 1, 4, 4)
    assert torch.equal(torch.where(m.bool(), draws, 0), torch.where(m.bool(), x, 0).expand_as(draws))
    mean, std = export.summarise_draws(draws)
    assert mean.shape == std.shape == (2, 1, 4, 4)
    assert (std[m.bool().expand_as(std)] == 0).all()
    assert float(export.std_image(std).max()) == pytest.approx(1.0)
    strip = export.draws_strip(x, m, draws)
    assert strip.shape == (2 * (5 + 3), 1, 4, 4)
    grid, titles = export.side_by_side(x, m, {"a": mean, "b": draws[0]})
    assert titles == ["truth", "input", "a", "b"] and grid.shape == (8, 1, 4, 4)


def test_impute_dataset_draws_hides_ground_truth() -> None:
    x = torch.rand(3, 1, 4, 4)
    x[:, :, 0, 0] = float("nan")
    m = torch.ones(3, 1, 4, 4)
    m[:, :, 0, 0] = 0
    out = export.impute_dataset_draws(_NoisyImputer(), x, m, draws=2)
    assert torch.isfinite(out).all()


def test_npz_and_png_zip_exports_round_trip() -> None:
    x = torch.rand(3, 1, 5, 5)
    m = (torch.rand(3, 1, 5, 5) > 0.3).float()
    bundle = export.export_imputed(_NoisyImputer(), x, m, draws=2, seed=0, meta={"run": "demo"})
    with np.load(io.BytesIO(bundle.npz), allow_pickle=False) as f:
        assert f["x_imputed"].shape == (2, 3, 1, 5, 5)
        assert f["m"].dtype == np.uint8
        assert np.isnan(f["x_input"][np.broadcast_to(f["m"] == 0, f["x_input"].shape)]).all()
        assert json.loads(str(f["meta"]))["run"] == "demo"
    with zipfile.ZipFile(io.BytesIO(bundle.png_zip)) as zf:
        names = sorted(zf.namelist())
        assert names[0] == "draw_0/00000.png" and len(names) == 6
        assert Image.open(io.BytesIO(zf.read(names[-1]))).size == (5, 5)


def test_run_zip_bytes(tmp_path) -> None:  # noqa: ANN001
    run = tmp_path / "demo"
    (run / "samples").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "model.safetensors").write_bytes(b"w")
    (run / "samples" / "gx_latest.png").write_bytes(b"p")
    (run / "samples" / "gx_0000100.png").write_bytes(b"old")
    with zipfile.ZipFile(io.BytesIO(export.run_zip_bytes(run))) as zf:
        assert sorted(zf.namelist()) == [
            "demo/config.json",
            "demo/model.safetensors",
            "demo/samples/gx_latest.png",
        ]
    with pytest.raises(FileNotFoundError):
        export.run_zip_bytes(tmp_path)


def test_a_one_pixel_stroke_at_each_border_hides_exactly_that_pixel() -> None:
    """The Inpaint canvas shows a 28x28 image as 280x280 (no padding): a stroke covering canvas pixels
    [10 i, 10 i + 10) x [10 j, 10 j + 10) hides image pixel (i, j) and no other."""
    for i, j in [(0, 0), (0, 27), (27, 0), (27, 27), (0, 13), (13, 27), (27, 13), (13, 0)]:
        rgba = np.zeros((280, 280, 4), dtype=np.uint8)
        rgba[10 * i:10 * i + 10, 10 * j:10 * j + 10] = (255, 64, 64, 255)
        m = export.mask_from_canvas(rgba, (28, 28))
        hidden = (m[0, 0] == 0).nonzero().tolist()
        assert hidden == [[i, j]], (i, j, hidden)


def test_mnar_unrestricted_is_not_identified_and_self_masking_is_with_dependent_pixels():
    problem = theory.DiscreteProblem(2, (0, 1))
    mechanism = theory.brightness_masking(problem)
    p_x = theory.dependent_pixels(problem)
    observed = theory.observation_matrix(problem) @ theory.self_masking_joint(problem, p_x, mechanism)

    free = theory.mnar_check(problem, p_x, mechanism, "unrestricted")
    assert not free.identified and free.parameters > free.observed
    assert free.alternative is not None and abs(free.alternative.sum() - 1) < 1e-9
    assert np.abs(free.alternative - p_x).max() > 0.1 and free.observed_gap < 1e-9  # same data, other p_x

    masked = theory.mnar_check(problem, p_x, mechanism, "self-masking")
    assert masked.identified and masked.rank == masked.parameters == 7 and masked.alternative is None
    assert masked.spread < 1e-6  # every exact fit from random starts recovers p_x
    assert observed.sum() == pytest.approx(1.0)

    # Independent pixels: no shadow variable, and self-masking is no longer enough.
    alone = theory.mnar_check(problem, theory.independent_pixels(problem), mechanism, "self-masking")
    assert not alone.identified and alone.rank < alone.parameters and alone.observed_gap < 1e-8
    with pytest.raises(ValueError, match="unknown mechanism"):
        theory.mnar_check(problem, p_x, mechanism, "logistic")
