"""The LeNet classifier whose penultimate layer gives "FID (LeNet features)" for MNIST-like data.

Architecture: the pytorch/examples MNIST network the paper points to (footnote 4, 2018 version):
conv(1,10,5)-maxpool-relu, conv(10,20,5)-dropout2d-maxpool-relu, fc(320,50)-relu-dropout, fc(50,10).
It was trained then with SGD, lr 0.01, momentum 0.5, batch 64; so is this one.

Features: the 50-d output of fc(320,50) *before* its ReLU. The paper says "the 50-dimensional output from
the second-to-last fully-connected layer"; the authors' released FID code reads that layer's output
before the ReLU (`feature_layer = 0` in their mnist_fid.py), so we do too. It also suits FID better: with
the shipped digit classifier each unit is <= 0 for a large share of mnist-5k images (docs/experiments.md), so
after the ReLU every feature has a point mass at 0, far from the Gaussian that FID assumes, and loses how far below
threshold an image is.

Input normalisation lives inside the model (buffers saved with the weights): callers always pass images
in [0, 1], the same range as data and generator samples, so the classifier sees at evaluation exactly the
distribution it was trained on. (The released code trained on normalised digits but extracted features
from unnormalised ones.)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import CompleteData, load_complete
from ..errors import OptionError

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# Which classifier serves which dataset: the digit classifier, trained on the 5,000 offline digits, also
# serves full MNIST (same domain); Fashion-MNIST has its own.
CLASSIFIER_FOR = {"mnist-5k": "mnist", "mnist": "mnist", "uci-digits": "mnist", "fashion-mnist": "fashion-mnist"}
# Training and test splits per dataset (see `classifier_splits`).
SPLITS = {"mnist-5k": ("train minus held-out", "held-out: last 10% of each class in file order"),
          "mnist": ("train", "test"), "fashion-mnist": ("train", "test")}
# Reference statistics written next to each classifier (dataset, split): the full training sets.
STATS_FOR = {"mnist": [("mnist-5k", "all")], "fashion-mnist": [("fashion-mnist", "all")]}

BATCH_SIZE = 64
LR = 0.01
MOMENTUM = 0.5
FEATURE_DIM = 50


class LeNet(nn.Module):
    """pytorch/examples' MNIST LeNet; `features(x)` gives the 50-d FID features of images in [0, 1]."""

    def __init__(self, mean: float = 0.1307, std: float = 0.3081) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """fc1 output before its ReLU, shape (N, 50); x is (N, 1, 28, 28) in [0, 1]."""
        x = (x - self.mean) / self.std
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        return self.fc1(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        h = F.dropout(F.relu(self.features(x)), training=self.training)
        return self.fc2(h)


def classifier_paths(name: str, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(weights, record) paths of classifier `name` ("mnist" or "fashion-mnist")."""
    d = Path(out_dir) if out_dir is not None else ASSETS
    return d / f"lenet-{name}.safetensors", d / f"lenet-{name}.json"


def stats_path(dataset: str, out_dir: str | Path | None = None) -> Path:
    d = Path(out_dir) if out_dir is not None else ASSETS
    return d / f"fid-stats-{dataset}.safetensors"


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tensor_fingerprint(x: torch.Tensor) -> str:
    """Content hash of a tensor: shipped reference statistics are used only for exactly that data."""
    a = x.detach().cpu().contiguous().numpy()
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def load_classifier(dataset: str, assets_dir: str | Path | None = None) -> tuple[LeNet, dict]:
    """The shipped classifier serving `dataset` (in eval mode) and its training record."""
    if dataset not in CLASSIFIER_FOR:
        raise OptionError(f"no LeNet classifier for {dataset!r}; LeNet FID covers {', '.join(CLASSIFIER_FOR)}")
    weights, record_path = classifier_paths(CLASSIFIER_FOR[dataset], assets_dir)
    if not weights.exists():
        raise FileNotFoundError(
            f"{weights} is missing; train it with: python -m misgan_core metrics train-classifier "
            f"--dataset {dataset if dataset != 'mnist' else 'mnist-5k'} --epochs 30 --seed 0")
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    model = LeNet()
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    model.requires_grad_(False)
    return model, record


@torch.no_grad()
def classifier_accuracy(model: LeNet, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent of `model` (put in eval mode) on images x in [0, 1]."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum())
    return 100.0 * correct / len(x)


@torch.no_grad()
def lenet_features(model: LeNet, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """(N, 50) float64 features of images x (N, 1, 28, 28) in [0, 1]."""
    model.eval()
    out = np.empty((len(x), FEATURE_DIM), dtype=np.float64)
    for i in range(0, len(x), batch_size):
        out[i:i + batch_size] = model.features(x[i:i + batch_size].float()).double().numpy()
    return out


def classifier_splits(dataset: str, data_dir: str | Path | None = None) -> tuple[CompleteData, CompleteData]:
    """(train, test) complete data the classifier of `dataset` is trained and tested on.

    mnist-5k's file is sorted by label (500 zeros, then 500 ones, ...), so a contiguous slice is not a
    held-out set (its last 500 are all nines). The held-out digits are the last 10% of each class in file
    order (data.mnist_5k_held_out): 50 per class, 500 in all; the classifier trains on the other 4,500.
    They are mnist-5k's split 'test', on which the workbench also measures imputation of unseen digits.
    """
    if dataset not in SPLITS:
        raise OptionError(f"train-classifier supports {', '.join(SPLITS)}; got {dataset!r}")
    return load_complete(dataset, data_dir, "train"), load_complete(dataset, data_dir, "test")


def train_classifier(dataset: str, epochs: int, seed: int, out_dir: str | Path | None = None,
                     data_dir: str | Path | None = None, command: str | None = None,
                     log=print) -> dict:
    """Train the LeNet for `dataset` on complete data; write weights, record and reference statistics.

    Returns the record (also written as lenet-<name>.json in out_dir, default misgan_core/assets).
    """
    from .frechet import feature_statistics

    if dataset not in SPLITS:
        raise OptionError(f"train-classifier supports {', '.join(SPLITS)}; got {dataset!r}")
    name = CLASSIFIER_FOR[dataset]
    out = Path(out_dir) if out_dir is not None else ASSETS
    out.mkdir(parents=True, exist_ok=True)
    train_split, test_split = SPLITS[dataset]
    train, test = classifier_splits(dataset, data_dir)
    mean, std = float(train.x.mean()), float(train.x.std())

    # Own RNG streams so training neither depends on nor disturbs the caller's global seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        shuffle = torch.Generator().manual_seed(seed)
        model = LeNet(mean, std)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        start = time.perf_counter()
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(len(train.x), generator=shuffle)
            total = 0.0
            for i in range(0, len(order), BATCH_SIZE):
                idx = order[i:i + BATCH_SIZE]
                loss = F.cross_entropy(model(train.x[idx]), train.labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            acc = classifier_accuracy(model, test.x, test.labels)
            log(f"epoch {epoch}/{epochs}  train loss {total / len(order):.4f}  "
                f"test accuracy {acc:.2f}%  ({time.perf_counter() - start:.0f} s)")
        seconds = time.perf_counter() - start
    model.eval()

    weights_path, record_path = classifier_paths(name, out)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights_path),
              metadata={"dataset": dataset, "epochs": str(epochs), "seed": str(seed)})
    weights_sha = file_sha256(weights_path)

    # The shipped stats of the family, plus the training set's own when it is a different set (full MNIST).
    targets = list(STATS_FOR[name])
    if dataset != "mnist-5k" and (dataset, "train") not in targets:
        targets.append((dataset, "train"))
    stats = []
    for stats_dataset, split in targets:
        ref = load_complete(stats_dataset, data_dir, split)
        mu, sigma = feature_statistics(lenet_features(model, ref.x))
        path = stats_path(stats_dataset, out)
        save_file({"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma)}, str(path),
                  metadata={"dataset": stats_dataset, "split": split, "n": str(len(ref.x)),
                            "data_fingerprint": tensor_fingerprint(ref.x),
                            "extractor": f"lenet-{name}", "weights_sha256": weights_sha})
        stats.append({"file": path.name, "dataset": stats_dataset, "split": split, "n": len(ref.x)})

    record = {
        "classifier": f"lenet-{name}",
        "architecture": "pytorch/examples MNIST LeNet (2018): conv(1,10,5)-maxpool-relu, "
                        "conv(10,20,5)-dropout2d-maxpool-relu, fc(320,50)-relu-dropout, fc(50,10)",
        "features": "fc(320,50) output before ReLU, 50-d",
        "label": "FID (LeNet features)",
        "dataset": dataset,
        "train_split": train_split,
        "n_train": len(train.x),
        "test_split": test_split,
        "n_test": len(test.x),
        "input_normalisation": {"mean": mean, "std": std},
        "epochs": epochs,
        "seed": seed,
        "batch_size": BATCH_SIZE,
        "optimizer": {"name": "SGD", "lr": LR, "momentum": MOMENTUM},
        "loss": "cross-entropy",
        "test_accuracy": round(acc, 4),
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "command": command or (f"python -m misgan_core metrics train-classifier --dataset {dataset} "
                               f"--epochs {epochs} --seed {seed}"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "weights_file": weights_path.name,
        "weights_sha256": weights_sha,
        "reference_stats": stats,
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record
