"""Section 3 of the paper made computable: tiny discrete missing-data problems.

Each of n features takes a value in a finite set P; I = P^n are the data vectors and M = {0, 1}^n the masks
(1 = observed). For a mask distribution q and a fill value tau, the transition matrix T_{q,tau} (|I| x |I|)
maps a data distribution p_x to the distribution of the masked vectors f_tau(x, m) = x*m + tau*(1-m):

    T_{q,tau}(t, s) = sum of q(m) over the masks m with f_tau(s, m) = t.

Theorem 1: for a fixed q, every T_{q,tau} with tau in P has the same null space, so whether p_x can be
recovered from masked samples (the non-negative solution of T p = T p_x is unique) does not depend on tau
(corollary 1). `identifiability` decides uniqueness exactly with one pair of linear programs per vector.
Everything here is numpy/scipy on matrices of at most a few hundred rows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

MAX_VECTORS = (
    81  # |P|^n above this is no longer "tiny" (3 values on 4 pixels): refused with a readable message
)


@dataclass(frozen=True)
class DiscreteProblem:
    """n pixels with values in `values`; vectors and masks listed in a fixed (lexicographic) order."""

    n: int
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"need at least one pixel; got n={self.n}")
        if len(self.values) < 2 or len(set(self.values)) != len(self.values):
            raise ValueError(f"need at least two distinct pixel values; got {list(self.values)}")
        if len(self.values) ** self.n > MAX_VECTORS:
            raise ValueError(
                f"{len(self.values)}^{self.n} = {len(self.values) ** self.n} data vectors is too "
                f"many for this exact analysis (at most {MAX_VECTORS}); use fewer pixels or values"
            )

    @property
    def vectors(self) -> list[tuple[int, ...]]:
        return list(itertools.product(self.values, repeat=self.n))

    @property
    def masks(self) -> list[tuple[int, ...]]:
        return list(itertools.product((0, 1), repeat=self.n))

    def vector_label(self, v: tuple[int, ...]) -> str:
        return "".join(str(a) for a in v)

    def mask_label(self, m: tuple[int, ...]) -> str:
        """A mask as text, e.g. 'o_o' for observed, missing, observed."""
        return "".join("o" if b else "_" for b in m)


def mask_distribution(problem: DiscreteProblem, kind: str, rate: float = 0.5) -> np.ndarray:
    """A distribution q over `problem.masks`.

    kind: 'dropout' (each feature missing independently with probability `rate`), 'dropout-never-full'
    (dropout conditioned on at least one feature missing, so q(1) = 0 as in the paper's discussion),
    'one-observed' (exactly one feature observed, uniformly) or 'one-missing' (exactly one feature missing).
    """
    masks = np.array(problem.masks, dtype=float)
    observed = masks.sum(1)
    n = problem.n
    if kind in ("dropout", "dropout-never-full"):
        if not 0.0 < rate < 1.0:
            raise ValueError(f"missing rate must lie strictly between 0 and 1; got {rate}")
        q = (1 - rate) ** observed * rate ** (n - observed)
        if kind == "dropout-never-full":
            q[observed == n] = 0.0
    elif kind == "one-observed":
        q = (observed == 1).astype(float)
    elif kind == "one-missing":
        q = (observed == n - 1).astype(float)
    else:
        raise ValueError(
            f"unknown mask distribution {kind!r}; choose dropout, dropout-never-full, "
            f"one-observed or one-missing"
        )
    return normalise(q, "mask distribution")


def normalise(weights: np.ndarray | list[float], what: str = "distribution") -> np.ndarray:
    """Weights scaled to sum to one; negative, non-finite or all-zero weights raise ValueError."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError(f"{what} weights must be finite and non-negative")
    total = w.sum()
    if total <= 0:
        raise ValueError(f"{what} weights are all zero")
    return w / total


def data_distribution(problem: DiscreteProblem, kind: str, support: int = 3, seed: int = 0) -> np.ndarray:
    """A data distribution p_x over `problem.vectors`: 'uniform', or 'sparse' (random weights on `support`
    random vectors, the situation in which the paper says recovery can still be unique)."""
    size = len(problem.values) ** problem.n
    if kind == "uniform":
        return np.full(size, 1.0 / size)
    if kind == "sparse":
        if not 1 <= support <= size:
            raise ValueError(f"support must be between 1 and {size}; got {support}")
        rng = np.random.default_rng(seed)
        p = np.zeros(size)
        idx = rng.choice(size, size=support, replace=False)
        p[idx] = rng.uniform(0.2, 1.0, size=support)
        return normalise(p)
    raise ValueError(f"unknown data distribution {kind!r}; choose uniform or sparse")


def transition_matrix(problem: DiscreteProblem, q: np.ndarray, tau: int) -> np.ndarray:
    """T_{q,tau}: column s holds the distribution of f_tau(s, m) for m ~ q (columns sum to one)."""
    q = np.asarray(q, dtype=float)
    masks = problem.masks
    if q.shape != (len(masks),):
        raise ValueError(f"q must have one weight per mask ({len(masks)}); got shape {q.shape}")
    if tau not in problem.values:
        raise ValueError(f"tau = {tau} is not one of the feature values {list(problem.values)}")
    vectors = problem.vectors
    index = {v: i for i, v in enumerate(vectors)}
    t = np.zeros((len(vectors), len(vectors)))
    for s_idx, s in enumerate(vectors):
        for m, weight in zip(masks, q, strict=True):
            if weight == 0:
                continue
            masked = tuple(a if b else tau for a, b in zip(s, m, strict=True))
            t[index[masked], s_idx] += weight
    return t


def null_space(matrix: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """An orthonormal basis of the null space, as columns (shape (cols, nullity))."""
    _, sing, vt = np.linalg.svd(matrix)
    cutoff = tol * max(matrix.shape) * (sing[0] if sing.size else 1.0)
    rank = int((sing > cutoff).sum())
    return vt[rank:].T.copy()


def same_subspace(a: np.ndarray, b: np.ndarray, tol: float = 1e-8) -> bool:
    """Whether two bases (as columns) span the same subspace (equal orthogonal projectors)."""
    if a.shape != b.shape:
        return False
    if a.shape[1] == 0:
        return True
    return bool(np.allclose(a @ a.T, b @ b.T, atol=tol))


@dataclass
class Theorem1Check:
    """T_{q,tau} for every tau in P, with each null space and whether they all coincide."""

    matrices: dict[int, np.ndarray]
    ranks: dict[int, int]
    null_spaces: dict[int, np.ndarray]
    equal: bool
    full_rank: bool  # q(1) > 0 makes T invertible: every p_x is recoverable

    @property
    def nullity(self) -> int:
        return next(iter(self.null_spaces.values())).shape[1]


def check_theorem1(problem: DiscreteProblem, q: np.ndarray) -> Theorem1Check:
    matrices = {tau: transition_matrix(problem, q, tau) for tau in problem.values}
    spaces = {tau: null_space(t) for tau, t in matrices.items()}
    ranks = {tau: t.shape[1] - spaces[tau].shape[1] for tau, t in matrices.items()}
    first = next(iter(spaces.values()))
    equal = all(same_subspace(first, s) for s in spaces.values())
    size = len(problem.vectors)
    return Theorem1Check(matrices, ranks, spaces, equal, full_rank=all(r == size for r in ranks.values()))


@dataclass
class Identifiability:
    """Whether T p = T p_x, p >= 0 has p_x as its only solution.

    `ranges[i]` is (min, max) of p(vector i) over all solutions; an alternative solution is given when
    recovery is not unique.
    """

    unique: bool
    ranges: np.ndarray  # (|I|, 2)
    alternative: np.ndarray | None  # another non-negative solution, or None when unique


def identifiability(t: np.ndarray, p_x: np.ndarray, tol: float = 1e-7) -> Identifiability:
    """Decide uniqueness exactly: for each s, minimise and maximise p(s) subject to T p = T p_x, p >= 0."""
    from scipy.optimize import linprog

    p_x = np.asarray(p_x, dtype=float)
    size = t.shape[1]
    if p_x.shape != (size,):
        raise ValueError(f"p_x must have {size} entries; got shape {p_x.shape}")
    y = t @ p_x
    ranges = np.zeros((size, 2))
    best_gap, alternative = 0.0, None
    for s in range(size):
        c = np.zeros(size)
        c[s] = 1.0
        bounds = [(0, None)] * size
        lo = linprog(c, A_eq=t, b_eq=y, bounds=bounds, method="highs")
        hi = linprog(-c, A_eq=t, b_eq=y, bounds=bounds, method="highs")
        if lo.status != 0 or hi.status != 0:
            raise RuntimeError(f"linear program failed for vector {s}: {lo.message or hi.message}")
        ranges[s] = (lo.x[s], hi.x[s])
        for sol in (lo.x, hi.x):
            gap = float(np.abs(sol - p_x).max())
            if gap > best_gap:
                best_gap, alternative = gap, np.clip(sol, 0.0, None)
    unique = bool((ranges[:, 1] - ranges[:, 0]).max() <= tol)
    return Identifiability(unique, ranges, None if unique else alternative)
