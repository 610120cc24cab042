"""Missingness processes: how masks (1 = observed) are drawn, once per example and seeded.

Every process draws a whole batch of masks with tensor ops (no per-example Python) and reports the
missing rate it produces on average, so the UI can show it before anything is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .data import CompleteData, IncompleteDataset, as_float_images
from .errors import OptionError


class MaskProcess:
    """Base class: `sample(n, height, width, generator)` -> (n, 1, H, W) float 0/1 masks."""

    name = "base"

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def expected_missing_rate(self, height: int, width: int) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


def _box_masks(n: int, height: int, width: int, top: torch.Tensor, left: torch.Tensor,
               box_h: torch.Tensor, box_w: torch.Tensor) -> torch.Tensor:
    """Masks that observe one axis-aligned box per example; all arguments are (n,) integer tensors."""
    rows = torch.arange(height).view(1, height, 1)
    cols = torch.arange(width).view(1, 1, width)
    top, left = top.view(n, 1, 1), left.view(n, 1, 1)
    inside = ((rows >= top) & (rows < top + box_h.view(n, 1, 1))
              & (cols >= left) & (cols < left + box_w.view(n, 1, 1)))
    return inside.unsqueeze(1).float()


@dataclass
class SquareObservation(MaskProcess):
    """All pixels missing except one size x size square at a uniformly random place (paper, section 5)."""

    size: int = 14
    name = "square"

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = self._fit(height, width)
        top = torch.randint(0, height - k + 1, (n,), generator=generator)
        left = torch.randint(0, width - k + 1, (n,), generator=generator)
        side = torch.full((n,), k)
        return _box_masks(n, height, width, top, left, side, side)

    def _fit(self, height: int, width: int) -> int:
        if not 1 <= self.size <= min(height, width):
            raise OptionError(f"square size {self.size} must be between 1 and {min(height, width)} for "
                              f"{height}x{width} images")
        return self.size

    def expected_missing_rate(self, height: int, width: int) -> float:
        k = self._fit(height, width)
        return 1.0 - k * k / (height * width)

    def describe(self) -> str:
        return f"square observation {self.size}x{self.size}"


@dataclass
class IndependentDropout(MaskProcess):
    """Each pixel missing independently with probability `rate`; with `rate_range`, the rate is drawn
    uniformly per example from that range."""

    rate: float = 0.5
    rate_range: tuple[float, float] | None = None
    name = "dropout"

    def __post_init__(self) -> None:
        lo, hi = self.rate_range if self.rate_range is not None else (self.rate, self.rate)
        if not (0.0 <= lo <= hi < 1.0):
            raise OptionError(f"missing rate must lie in [0, 1) (and low <= high); got {lo}..{hi}: a rate of 1 "
                             f"would leave nothing observed")

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.rate_range is None:
            rates = torch.full((n, 1, 1, 1), float(self.rate))
        else:
            lo, hi = self.rate_range
            rates = lo + (hi - lo) * torch.rand((n, 1, 1, 1), generator=generator)
        return (torch.rand((n, 1, height, width), generator=generator) >= rates).float()

    def expected_missing_rate(self, height: int, width: int) -> float:
        if self.rate_range is None:
            return float(self.rate)
        return 0.5 * (self.rate_range[0] + self.rate_range[1])

    def describe(self) -> str:
        if self.rate_range is None:
            return f"independent dropout, rate {self.rate:g}"
        return f"independent dropout, rate {self.rate_range[0]:g}-{self.rate_range[1]:g} per example"


@dataclass
class RectangleObservation(MaskProcess):
    """One observed rectangle whose sides are uniform in [low, high] of the image side (paper: 25%-75%,
    so 75% missing on average)."""

    low: float = 0.25
    high: float = 0.75
    name = "rect"

    def _side_range(self, length: int) -> tuple[int, int]:
        lo, hi = max(1, math.ceil(self.low * length)), max(1, math.floor(self.high * length))
        if not (0 < self.low <= self.high <= 1) or lo > hi:
            raise OptionError(f"rectangle side fractions must satisfy 0 < low <= high <= 1; got {self.low}, "
                              f"{self.high}")
        return lo, hi

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        (hlo, hhi), (wlo, whi) = self._side_range(height), self._side_range(width)
        box_h = torch.randint(hlo, hhi + 1, (n,), generator=generator)
        box_w = torch.randint(wlo, whi + 1, (n,), generator=generator)
        # Uniform placement given the size: floor(u * (free + 1)) is uniform on 0..free.
        top = (torch.rand(n, generator=generator) * (height - box_h + 1)).long()
        left = (torch.rand(n, generator=generator) * (width - box_w + 1)).long()
        return _box_masks(n, height, width, top, left, box_h, box_w)

    def expected_missing_rate(self, height: int, width: int) -> float:
        (hlo, hhi), (wlo, whi) = self._side_range(height), self._side_range(width)
        return 1.0 - (0.5 * (hlo + hhi) / height) * (0.5 * (wlo + whi) / width)

    def describe(self) -> str:
        return f"rectangle observation, sides {self.low:.0%}-{self.high:.0%}"


@dataclass
class QuadrantObservation(MaskProcess):
    """One of four non-overlapping quadrants observed, each with probability 1/4 (paper, figure 6)."""

    name = "quadrants"

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        q = torch.randint(0, 4, (n,), generator=generator)
        h2, w2 = height // 2, width // 2
        top = torch.where(q // 2 == 0, 0, h2)
        left = torch.where(q % 2 == 0, 0, w2)
        box_h = torch.where(q // 2 == 0, h2, height - h2)
        box_w = torch.where(q % 2 == 0, w2, width - w2)
        return _box_masks(n, height, width, top, left, box_h, box_w)

    def expected_missing_rate(self, height: int, width: int) -> float:
        h2, w2 = height // 2, width // 2
        areas = [h2 * w2, h2 * (width - w2), (height - h2) * w2, (height - h2) * (width - w2)]
        return 1.0 - sum(areas) / (4 * height * width)

    def describe(self) -> str:
        return "quadrant observation (one of four)"


# ---------------------------------------------------------------------------------------------
# Missingness that depends on the data (MAR and MNAR). Each is rate-matched on the dataset it masks: its
# parameter (an offset or a threshold) is found so that the dataset's missing rate is `rate`.


class DataDependentProcess(MaskProcess):
    """A process whose masks depend on the images: `sample_for(x, generator)` -> (N, 1, H, W) masks."""

    needs_data = True
    rate: float = 0.5

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise ValueError(f"{self.describe()} depends on the images; draw its masks with sample_for(x)")

    def sample_for(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def expected_missing_rate(self, height: int, width: int) -> float:
        return float(self.rate)  # rate-matched on the data it masks

    def _check_direction(self) -> None:
        if getattr(self, "direction", "high") not in ("high", "low"):
            raise OptionError(f"mask direction must be 'high' or 'low'; got {self.direction!r}")

    def _check_rate(self, most: float = 1.0) -> None:
        if not (isinstance(self.rate, (int, float)) and 0.0 < self.rate < most):
            raise OptionError(f"missing rate must lie in (0, {most:g}) for {self.name}; got {self.rate}")


def _bisect(f: object, target: float, lo: float, hi: float, iters: int = 60) -> float:
    """The c in [lo, hi] with f(c) = target for f decreasing in c."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) > target:  # type: ignore[operator]
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _intensity(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) per-pixel intensity: the mean over channels."""
    return x.mean(dim=1, keepdim=True)


@dataclass
class SelfMasking(DataDependentProcess):
    """MNAR self-masking: each pixel is missing with probability sigmoid(k (v - c)) for its own value v
    (direction high: bright pixels go missing, as with sensor saturation), or sigmoid(k (c - v)) (low);
    c is found by bisection so that the dataset's missing rate is `rate`."""

    rate: float = 0.5
    steepness: float = 20.0
    direction: str = "high"
    name = "self-masking"

    def __post_init__(self) -> None:
        self._check_rate()
        self._check_direction()
        if not (self.steepness > 0):
            raise OptionError(f"steepness must be positive; got {self.steepness}")

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Each pixel's missing probability; the offset c is set by bisection for the dataset's rate."""
        u = _intensity(x).double() * (1.0 if self.direction == "high" else -1.0)  # larger u: more likely missing
        c = _bisect(lambda c: float(torch.sigmoid(self.steepness * (u - c)).mean()), self.rate,
                    float(u.min()) - 2.0, float(u.max()) + 2.0)
        return torch.sigmoid(self.steepness * (u - c)).float()

    def sample_for(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.probabilities(x)
        return (torch.rand(p.shape, generator=generator) >= p).float()

    def describe(self) -> str:
        steep = f", steepness {self.steepness:g}" if self.steepness != SelfMasking.steepness else ""
        return f"self-masking ({self.direction} values missing), rate {self.rate:g}{steep}"


@dataclass
class Censoring(DataDependentProcess):
    """MNAR censoring: every pixel above (high) or below (low) a value threshold is missing; the threshold is
    the dataset's quantile that gives `rate`. Ties at the threshold (MNIST's many exact zeros) are broken by
    a seeded random order, so the rate is met exactly."""

    rate: float = 0.5
    direction: str = "high"
    name = "censor"

    def __post_init__(self) -> None:
        self._check_rate()
        self._check_direction()

    def sample_for(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        v = _intensity(x).flatten()
        k = int(round(self.rate * v.numel()))
        # order pixels by value (ties by a random key), the k most extreme are missing
        key = torch.rand(v.shape, generator=generator, dtype=torch.float64) * 1e-9
        score = (v.double() + key) if self.direction == "high" else -(v.double() - key)
        missing = torch.zeros(v.numel(), dtype=torch.bool)
        missing[torch.topk(score, k).indices] = True
        return (~missing).float().view(x.shape[0], 1, *x.shape[2:])

    def describe(self) -> str:
        return f"censoring ({self.direction} values missing), rate {self.rate:g}"


@dataclass
class IntensityMAR(DataDependentProcess):
    """MAR: the central `region` x `region` square is always observed; every other pixel of an example is
    missing with probability sigmoid(a (z - b)), z the standardised mean intensity of that example's observed
    square, b found by bisection so that the dataset's missing rate is `rate` (at most the share of pixels
    outside the square)."""

    rate: float = 0.5
    region: int = 10
    steepness: float = 3.0
    name = "mar"

    def _region(self, height: int, width: int) -> torch.Tensor:
        if not 1 <= self.region < min(height, width):
            raise OptionError(f"observed region {self.region} must be smaller than the {height}x{width} image")
        keep = torch.zeros(height, width, dtype=torch.bool)
        top, left = (height - self.region) // 2, (width - self.region) // 2
        keep[top:top + self.region, left:left + self.region] = True
        return keep

    def sample_for(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        keep = self._region(h, w)
        free = float((~keep).float().mean())
        self._check_rate(most=free)
        v = _intensity(x)[:, 0]
        z = v[:, keep].mean(1).double()
        z = (z - z.mean()) / z.std().clamp_min(1e-12)
        target = self.rate / free  # the free pixels' missing probability on average
        b = _bisect(lambda b: float(torch.sigmoid(self.steepness * (z - b)).mean()), target, -20.0, 20.0)
        p = torch.sigmoid(self.steepness * (z - b)).float().view(n, 1, 1, 1).expand(n, 1, h, w)
        m = (torch.rand((n, 1, h, w), generator=generator) >= p).float()
        m[:, :, keep] = 1.0
        return m

    def describe(self) -> str:
        return f"MAR (central {self.region}x{self.region} observed, the rest missing by its brightness), " \
               f"rate {self.rate:g}"


MASK_PROCESSES = {"square": SquareObservation, "dropout": IndependentDropout, "rect": RectangleObservation,
                  "quadrants": QuadrantObservation, "self-masking": SelfMasking, "censor": Censoring,
                  "mar": IntensityMAR}
DATA_DEPENDENT = ("self-masking", "censor", "mar")


def make_mask_process(name: str, mask_size: int = 14, missing_rate: float = 0.5,
                      missing_rate_range: tuple[float, float] | None = None, direction: str = "high",
                      steepness: float = SelfMasking.steepness) -> MaskProcess:
    """Build a process from the options the CLI and the pages offer."""
    if name == "self-masking":
        return SelfMasking(missing_rate, steepness=steepness, direction=direction)
    if name == "censor":
        return Censoring(missing_rate, direction=direction)
    if name == "mar":
        return IntensityMAR(missing_rate)
    if name == "square":
        return SquareObservation(mask_size)
    if name == "dropout":
        return IndependentDropout(missing_rate, tuple(missing_rate_range) if missing_rate_range else None)
    if name == "rect":
        return RectangleObservation()
    if name == "quadrants":
        return QuadrantObservation()
    raise OptionError(f"unknown missingness {name!r}; choose one of {', '.join(MASK_PROCESSES)}")


def make_incomplete(data: CompleteData, process: MaskProcess, seed: int = 0) -> IncompleteDataset:
    """Draw one fixed mask per example (as in the paper, masks are not redrawn per epoch)."""
    n, _, h, w = data.x.shape
    gen = torch.Generator().manual_seed(seed)
    if getattr(process, "needs_data", False):
        if data.compact and data.x.numel() > 2**29:
            raise OptionError(f"{process.describe()} looks at every image, and {n:,} compact images are too many "
                              f"to hold as floats; use --limit (at most {2**29 // (data.x[0].numel()):,}) or a "
                              f"process that does not depend on the data")
        m = process.sample_for(as_float_images(data.x), gen)
    else:
        m = process.sample(n, h, w, gen)
    if (m.flatten(1).sum(1) == 0).any():
        # A fully missing example carries no information; a process that makes one is misconfigured.
        raise OptionError(f"{process.describe()} produced an example with no observed pixel; lower the "
                          f"missing rate")
    if data.compact:
        m = m.to(torch.uint8)  # a quarter of float32's memory, like the images
    return IncompleteDataset(data.name, data.x, m, data.labels, ground_truth=True,
                             missingness=process.describe())
