"""DataSpec: which incomplete data a run learns from, in one value.

A DataSpec names a dataset (a built-in one, or the user's own `.npz` / PNG folder), how many of its examples
to use, and the missingness process that draws one fixed mask per example (paper, section 5: masks are drawn
once, not per epoch). Every run kind embeds one: MisGANConfig.data and a baseline run's "data" entry, so a
MisGAN run and a baseline given the same spec see exactly the same incomplete examples.

It is a frozen dataclass, so it can key caches; `to_dict` / `from_dict` give its JSON form in config.json
(`from_dict` also reads the flat form of run folders written before the spec existed).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import DATASETS, SPLITS, IncompleteDataset, is_user_data, load_complete, load_user_data
from .errors import OptionError
from .masks import DATA_DEPENDENT, MASK_PROCESSES, MaskProcess, SelfMasking, make_incomplete, make_mask_process

FIELDS = ("dataset", "data_dir", "split", "limit", "mask", "mask_size", "missing_rate", "missing_rate_range",
          "mask_direction", "mask_steepness", "mask_seed")
# What a split holds (data.load_complete): 'train' keeps mnist-5k's 500 held-out digits back, so that every run
# has examples it never saw; 'all' is every training example (runs made before splits existed); 'test' is the
# held-out part (or the dataset's test set), for evaluation.
TRAINING_SPLITS = ("train", "all")


@dataclass(frozen=True)
class DataSpec:
    """Dataset, data folder, example limit, missingness process and its parameters, mask seed."""

    dataset: str = "mnist-5k"
    data_dir: str | None = None
    split: str = "train"                     # train | all | test (see TRAINING_SPLITS)
    limit: int | None = None                 # use only the first N examples (of the split)
    mask: str = "square"                     # square | dropout | rect | quadrants (not for the user's own data)
    mask_size: int = 14                      # side of the observed square (square)
    missing_rate: float = 0.5                # per-pixel missing probability (dropout)
    missing_rate_range: tuple[float, float] | None = None  # per-example dropout rate drawn from this range
    mask_direction: str = "high"             # self-masking / censor: bright (high) or dark (low) pixels go missing
    mask_steepness: float = SelfMasking.steepness  # self-masking: k in sigmoid(k (x - c)), logit per unit of intensity
    mask_seed: int = 0

    def __post_init__(self) -> None:
        # JSON gives lists; keep the range a tuple so that the spec stays hashable.
        if self.missing_rate_range is not None:
            object.__setattr__(self, "missing_rate_range", tuple(float(v) for v in self.missing_rate_range))

    # -- what it is ------------------------------------------------------------------------------

    @property
    def own_data(self) -> bool:
        """True when `dataset` is the user's own incomplete data (it brings its masks)."""
        return is_user_data(self.dataset)

    @property
    def dataset_name(self) -> str:
        """A short name: the built-in name, or the file / folder name of the user's data."""
        return Path(self.dataset).stem if self.own_data else self.dataset

    def validate(self) -> None:
        """Raise ValueError naming every option that cannot describe data."""
        problems = []
        if not isinstance(self.dataset, str) or not self.dataset:
            problems.append("dataset must be a name or a path")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            problems.append(f"limit must be a positive number of examples; got {self.limit}")
        if self.split not in SPLITS:
            problems.append(f"split must be one of {', '.join(SPLITS)}; got {self.split!r}")
        if not isinstance(self.mask_seed, int) or not 0 <= self.mask_seed < 2 ** 63:
            problems.append(f"mask seed must be a whole number from 0 to 2^63 - 1; got {self.mask_seed}")
        if not self.own_data:
            if self.mask not in MASK_PROCESSES:
                problems.append(f"unknown missingness {self.mask!r}; choose one of {', '.join(MASK_PROCESSES)}")
            if self.mask == "square" and (not isinstance(self.mask_size, int) or self.mask_size < 1):
                problems.append(f"mask size must be a positive number of pixels; got {self.mask_size}")
            rates = self.missing_rate_range or (self.missing_rate,)
            if self.mask == "dropout" and not all(isinstance(r, (int, float)) and math.isfinite(r)
                                                  and 0 <= r < 1 for r in rates):
                problems.append(f"missing rate must lie in [0, 1); got {', '.join(str(r) for r in rates)}")
            if self.mask in DATA_DEPENDENT:
                if self.missing_rate_range:
                    problems.append(f"{self.mask} takes one --missing-rate, not a range")
                if not (isinstance(self.missing_rate, (int, float)) and 0 < self.missing_rate < 1):
                    problems.append(f"missing rate must lie in (0, 1) for {self.mask}; got {self.missing_rate}")
                if self.mask_direction not in ("high", "low"):
                    problems.append(f"mask direction must be 'high' or 'low'; got {self.mask_direction!r}")
                if self.mask == "self-masking" and not (isinstance(self.mask_steepness, (int, float))
                                                        and math.isfinite(self.mask_steepness)
                                                        and self.mask_steepness > 0):
                    problems.append(f"mask steepness must be a positive number; got {self.mask_steepness}")
        if problems:
            raise OptionError("; ".join(problems))

    def mask_process(self) -> MaskProcess:
        return make_mask_process(self.mask, self.mask_size, self.missing_rate, self.missing_rate_range,
                                 self.mask_direction, self.mask_steepness)

    def missingness(self) -> str:
        """The missingness in words, e.g. 'square observation 14x14'."""
        return "given masks" if self.own_data else self.mask_process().describe()

    def expected_missing_rate(self, height: int, width: int) -> float:
        return self.mask_process().expected_missing_rate(height, width)

    def _missingness_words(self, short: bool) -> str:
        if self.own_data:
            return "given" if short else "given masks"
        if self.mask == "square":
            return f"square{self.mask_size}" if short else f"square {self.mask_size}x{self.mask_size} observed"
        if self.mask == "dropout":
            lo, hi = self.missing_rate_range or (self.missing_rate, self.missing_rate)
            pct = [round(v * 100) for v in (lo, hi)]
            if short:
                return f"dropout{pct[0]}" if lo == hi else f"dropout{pct[0]}-{pct[1]}"
            return f"dropout {pct[0]}%" if lo == hi else f"dropout {pct[0]}%-{pct[1]}%"
        if self.mask in DATA_DEPENDENT:
            pct = round(self.missing_rate * 100)
            way = f"-{self.mask_direction}" if self.mask != "mar" else ""
            named_k = self.mask == "self-masking" and self.mask_steepness != SelfMasking.steepness
            k = self.mask_steepness if named_k else None
            if short:
                return f"{self.mask}{way}{pct}" + (f"-k{k:g}" if k else "")
            return f"{self.mask}{' ' + self.mask_direction if way else ''} {pct}%" + (f", k {k:g}" if k else "")
        return self.mask

    def label(self) -> str:
        """Dataset and missingness, short enough for a table row or a job name."""
        if self.own_data:
            return f"{self.dataset_name} (own data, given masks)"
        limit = f" (first {self.limit})" if self.limit else ""
        split = "" if self.split == "train" else f" [{self.split}]"
        return f"{self.dataset}{split}{limit}, {self._missingness_words(short=False)}"

    def slug(self) -> str:
        """Dataset and missingness for a folder name, e.g. 'mnist-5k-dropout80'."""
        data = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.dataset_name)[:40]
        return f"{data}-{self._missingness_words(short=True)}"

    def missingness_key(self) -> tuple:
        """What decides the masks: two specs with equal keys give the same incomplete examples."""
        if self.own_data:
            return (self.dataset, "given")
        if self.mask == "square":
            params: tuple = (self.mask_size,)
        elif self.mask == "dropout":
            params = (round(self.missing_rate, 6), self.missing_rate_range) if not self.missing_rate_range \
                else (self.missing_rate_range,)
        elif self.mask in DATA_DEPENDENT:
            params = (round(self.missing_rate, 6), self.mask_direction if self.mask != "mar" else None,
                      float(self.mask_steepness) if self.mask == "self-masking" else None)
        else:
            params = ()
        return (self.dataset, self.mask, params, self.mask_seed)

    def same_missingness(self, other: DataSpec) -> bool:
        """Same dataset, same missingness process with the parameters that matter for it, same mask seed."""
        return self.missingness_key() == other.missingness_key()

    # -- the data --------------------------------------------------------------------------------

    def load(self) -> IncompleteDataset:
        """The incomplete data: the user's own (with its masks), or a built-in dataset with masks drawn."""
        self.validate()
        if self.own_data:
            data = load_user_data(self.dataset)
            return data.subset(slice(0, self.limit)) if self.limit else data
        complete = load_complete(self.dataset, self.data_dir, split=self.split, limit=self.limit)
        return make_incomplete(complete, self.mask_process(), seed=self.mask_seed)

    # -- JSON and the command line ---------------------------------------------------------------

    def held_out(self) -> DataSpec:
        """The spec of examples that no run trained on this spec has seen: the test split, with the same
        missingness process and mask seed (masks are drawn for the held-out examples themselves)."""
        if self.own_data:
            raise OptionError("your own data has no held-out part; evaluate it with --split train")
        if self.split == "test":
            return self
        if self.split == "all" and self.dataset == "mnist-5k":
            trained = f"the first {self.limit:,}" if self.limit and self.limit < 5000 else "all 5,000"
            raise OptionError(f"this run trained on {trained} mnist-5k digits of split 'all', the split that "
                              f"includes the 500 held-out digits, so none is held out for it; train with --split "
                              f"train to keep them back, or evaluate with --split train")
        return self.replace(split="test", limit=None)

    def load_held_out(self, n: int | None = None) -> tuple[DataSpec, IncompleteDataset]:
        """The held-out spec (held_out()) and its examples as float images; with `n`, the first n of them. The
        masks are drawn for the whole split, so the first n are the first n that `evaluate --split test` scores."""
        spec = self.held_out()
        data = spec.load().as_float()
        return spec, (data if n is None else data.subset(slice(0, min(int(n), len(data)))))

    def on_dataset(self, dataset: str, shape: tuple[int, ...]) -> DataSpec:
        """This missingness on another built-in dataset's test split, for a model of images of `shape`. A
        data-dependent process keeps its form (direction, steepness) and has its threshold matched to the
        missing rate on the new images."""
        if self.own_data:
            raise OptionError("this run trained on your own data, which brings its own masks: there is no "
                              "missingness process to draw on another dataset")
        if dataset == self.dataset:
            raise OptionError(f"{dataset} is this run's own dataset; evaluate it with --split test (its held-out "
                              f"examples) or --split train")
        if dataset not in DATASETS:
            raise OptionError(f"unknown dataset {dataset!r} to evaluate on; choose one of {', '.join(DATASETS)}")
        if tuple(DATASETS[dataset].shape) != tuple(shape):
            c, h, w = DATASETS[dataset].shape
            raise OptionError(f"{dataset} images are {c}x{h}x{w} but this run's are {'x'.join(map(str, shape))}; "
                              f"evaluate on a dataset of the same shape")
        return self.replace(dataset=dataset, split="test", limit=None)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["missing_rate_range"] = list(self.missing_rate_range) if self.missing_rate_range else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        """A spec from its JSON form: a run config's `data` entry, whose keys must all be known, or a whole
        flat config of older run folders (which has a `kind`), whose other keys are the run's."""
        unknown = sorted(set(d) - set(FIELDS))
        if unknown and "kind" not in d:
            raise OptionError(f"the data entry has unknown fields {unknown}; it was written by a newer misgan_core "
                              f"or edited by hand: fix config.json or start a new run")
        values = {k: d[k] for k in FIELDS if k in d}
        values.setdefault("split", "all")  # written before splits: the run saw every training example
        spec = cls(**values)
        for name, kind in (("dataset", str), ("split", str), ("mask", str), ("mask_size", int), ("mask_seed", int),
                           ("missing_rate", (int, float))):
            value = getattr(spec, name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise OptionError(f"data field {name!r} has the wrong type ({type(value).__name__}: {value!r})")
        return spec

    def replace(self, **changes: Any) -> DataSpec:
        return dataclasses.replace(self, **changes)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The data and missingness options every command that makes a run shares."""
        g = parser.add_argument_group("data and missingness")
        g.add_argument("--dataset", default="mnist-5k",
                       help="built-in name (see `datasets`), an .npz with x and m, or a folder of PNGs with alpha")
        g.add_argument("--data-dir", default=None, help="root folder of torchvision-layout datasets")
        g.add_argument("--split", default="train", choices=TRAINING_SPLITS,
                       help="train: every training example but mnist-5k's 500 held-out digits (kept for "
                            "`evaluate --split test`); all: every training example")
        g.add_argument("--limit", type=int, default=None, help="use only the first N examples")
        g.add_argument("--mask", default="square", choices=sorted(MASK_PROCESSES),
                       help="missingness process (ignored for your own incomplete data)")
        g.add_argument("--mask-size", type=int, default=14, help="side of the observed square (square)")
        g.add_argument("--missing-rate", type=float, default=0.5, help="missing probability per pixel (dropout)")
        g.add_argument("--missing-rate-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                       help="draw each example's dropout rate uniformly from this range")
        g.add_argument("--mask-direction", default="high", choices=["high", "low"],
                       help="self-masking and censor: bright (high) or dark (low) pixels go missing")
        g.add_argument("--mask-steepness", type=float, default=SelfMasking.steepness,
                       help="self-masking: k in sigmoid(k (x - c)), the missing probability's logit per unit of "
                            "intensity (default 20: close to censoring; smaller is softer)")
        g.add_argument("--mask-seed", type=int, default=0, help="seed of the fixed per-example masks")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DataSpec:
        spec = cls(dataset=args.dataset, data_dir=args.data_dir, split=args.split, limit=args.limit, mask=args.mask,
                   mask_size=args.mask_size, missing_rate=args.missing_rate,
                   missing_rate_range=tuple(args.missing_rate_range) if args.missing_rate_range else None,
                   mask_direction=args.mask_direction,
                   mask_steepness=getattr(args, "mask_steepness", SelfMasking.steepness), mask_seed=args.mask_seed)
        spec.validate()
        return spec
