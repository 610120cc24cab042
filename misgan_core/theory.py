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

from .errors import OptionError

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
            raise OptionError(f"need at least one pixel; got n={self.n}")
        if len(self.values) < 2 or len(set(self.values)) != len(self.values):
            raise OptionError(f"need at least two distinct pixel values; got {list(self.values)}")
        if len(self.values) ** self.n > MAX_VECTORS:
            raise OptionError(
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
            raise OptionError(f"missing rate must lie strictly between 0 and 1; got {rate}")
        q = (1 - rate) ** observed * rate ** (n - observed)
        if kind == "dropout-never-full":
            q[observed == n] = 0.0
    elif kind == "one-observed":
        q = (observed == 1).astype(float)
    elif kind == "one-missing":
        q = (observed == n - 1).astype(float)
    else:
        raise OptionError(
                          f"unknown mask distribution {kind!r}; choose dropout, dropout-never-full, "
                          f"one-observed or one-missing"
        )
    return normalise(q, "mask distribution")


def normalise(weights: np.ndarray | list[float], what: str = "distribution") -> np.ndarray:
    """Weights scaled to sum to one; negative, non-finite or all-zero weights raise ValueError."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or (w < 0).any():
        raise OptionError(f"{what} weights must be finite and non-negative")
    total = w.sum()
    if total <= 0:
        raise OptionError(f"{what} weights are all zero")
    return w / total


def data_distribution(problem: DiscreteProblem, kind: str, support: int = 3, seed: int = 0) -> np.ndarray:
    """A data distribution p_x over `problem.vectors`: 'uniform', or 'sparse' (random weights on `support`
    random vectors, the situation in which the paper says recovery can still be unique)."""
    size = len(problem.values) ** problem.n
    if kind == "uniform":
        return np.full(size, 1.0 / size)
    if kind == "sparse":
        if not 1 <= support <= size:
            raise OptionError(f"support must be between 1 and {size}; got {support}")
        rng = np.random.default_rng(seed)
        p = np.zeros(size)
        idx = rng.choice(size, size=support, replace=False)
        p[idx] = rng.uniform(0.2, 1.0, size=support)
        return normalise(p)
    raise OptionError(f"unknown data distribution {kind!r}; choose uniform or sparse")


def transition_matrix(problem: DiscreteProblem, q: np.ndarray, tau: int) -> np.ndarray:
    """T_{q,tau}: column s holds the distribution of f_tau(s, m) for m ~ q (columns sum to one)."""
    q = np.asarray(q, dtype=float)
    masks = problem.masks
    if q.shape != (len(masks),):
        raise OptionError(f"q must have one weight per mask ({len(masks)}); got shape {q.shape}")
    if tau not in problem.values:
        raise OptionError(f"tau = {tau} is not one of the feature values {list(problem.values)}")
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
        raise OptionError(f"p_x must have {size} entries; got shape {p_x.shape}")
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


# ---------------------------------------------------------------------------------------------
# When the mask depends on the value (MNAR)
#
# Under MNAR the mask is drawn given the complete vector, so the model is a joint law pi(x, m) =
# p_x(x) q(m | x), and the data show only the observed-data law O(m, x_obs) = sum over the x that agree with
# x_obs on m's observed entries of pi(x, m). Whether p_x is determined by O depends on the mechanisms one
# allows:
#   unrestricted  any q(m | x): pi is any joint law and O = A pi is linear, so every null vector of A whose
#                 x-marginal is non-zero moves p_x without moving O. Not identifiable (Mohan and Pearl 2021).
#   self-masking  q(m | x) = prod_d r_d(x_d)^m_d (1 - r_d(x_d))^(1 - m_d): pixel d's chance of being observed
#                 depends only on its own value. With dependent pixels each one is a shadow variable for the
#                 others (Miao and Tchetgen Tchetgen 2016), and p_x is identified; with independent pixels
#                 each pixel is a one-variable problem (|P| - 1 + |P| unknowns, |P| observed numbers): not.

MNAR_MECHANISMS = ("unrestricted", "self-masking")


@dataclass(frozen=True)
class MNARCheck:
    mechanism: str
    parameters: int                # free parameters of (p_x, the mechanism)
    observed: int                  # free numbers in the observed-data law
    rank: int                      # rank of d(observed law) / d(parameters) at the truth
    identified: bool               # p_x is the only one that gives this observed law
    alternative: np.ndarray | None  # another p_x with the same observed law, when there is one
    observed_gap: float            # max |O(alternative) - O(truth)|: ~0 when the alternative is real
    spread: float                  # max |p_x - p_x'| over the laws found that fit O exactly


def observation_matrix(problem: DiscreteProblem) -> np.ndarray:
    """A: joint law pi(x, m) (column x * |M| + m) -> observed-data law O(m, x_obs) (one row per mask and
    assignment of its observed entries)."""
    vectors, masks = problem.vectors, problem.masks
    rows: dict[tuple, int] = {}
    entries = []
    for i, x in enumerate(vectors):
        for j, m in enumerate(masks):
            key = (m, tuple(a for a, b in zip(x, m, strict=True) if b))
            rows.setdefault(key, len(rows))
            entries.append((rows[key], i * len(masks) + j))
    a = np.zeros((len(rows), len(vectors) * len(masks)))
    for r, c in entries:
        a[r, c] = 1.0
    return a


def self_masking_joint(problem: DiscreteProblem, p_x: np.ndarray, observed_prob: np.ndarray) -> np.ndarray:
    """pi(x, m) for self-masking with observed_prob[d, k] = P(pixel d observed | x_d = values[k])."""
    value_index = {v: k for k, v in enumerate(problem.values)}
    masks = np.array(problem.masks)
    pi = np.zeros((len(problem.vectors), len(masks)))
    for i, x in enumerate(problem.vectors):
        r = np.array([observed_prob[d, value_index[v]] for d, v in enumerate(x)])
        pi[i] = p_x[i] * np.prod(np.where(masks == 1, r, 1 - r), axis=1)
    return pi.reshape(-1)


def brightness_masking(problem: DiscreteProblem, high: float = 0.9, low: float = 0.3) -> np.ndarray:
    """A self-masking mechanism in which brighter values are observed less often: P(observed | value) falls
    linearly from `high` (smallest value) to `low` (largest), the same for every pixel."""
    r = np.linspace(high, low, len(problem.values))
    return np.tile(r, (problem.n, 1))


def dependent_pixels(problem: DiscreteProblem, strength: float = 0.8) -> np.ndarray:
    """A p_x in which the pixels tend to share a value (probability `strength` on the constant vectors)."""
    vectors = problem.vectors
    constant = np.array([len(set(v)) == 1 for v in vectors], dtype=float)
    p = strength * constant / constant.sum() + (1 - strength) * (1 - constant) / max(1, (1 - constant).sum())
    return normalise(p)


def independent_pixels(problem: DiscreteProblem, seed: int = 0) -> np.ndarray:
    """A p_x whose pixels are independent, each with its own random marginal."""
    rng = np.random.default_rng(seed)
    marginals = rng.uniform(0.2, 1.0, size=(problem.n, len(problem.values)))
    marginals /= marginals.sum(1, keepdims=True)
    index = {v: k for k, v in enumerate(problem.values)}
    return normalise([np.prod([marginals[d, index[v]] for d, v in enumerate(x)]) for x in problem.vectors])


def mnar_check(problem: DiscreteProblem, p_x: np.ndarray, observed_prob: np.ndarray, mechanism: str,
               starts: int = 16, seed: int = 0) -> MNARCheck:
    """Is p_x identified from the observed-data law of (p_x, a self-masking truth), when the analyst allows
    `mechanism` ('unrestricted' or 'self-masking')?"""
    if mechanism not in MNAR_MECHANISMS:
        raise OptionError(f"unknown mechanism {mechanism!r}; choose one of {', '.join(MNAR_MECHANISMS)}")
    p_x = normalise(p_x, "data distribution")
    n_vec, n_mask = len(problem.vectors), len(problem.masks)
    a = observation_matrix(problem)
    truth = self_masking_joint(problem, p_x, observed_prob)
    observed = a @ truth
    marginal = np.kron(np.eye(n_vec), np.ones((1, n_mask)))  # pi -> p_x
    if mechanism == "unrestricted":
        tangent = null_space(np.ones((1, a.shape[1])))  # directions that keep pi summing to one
        rank = int(np.linalg.matrix_rank(a @ tangent, tol=1e-9))
        # The range of each p_x(x) over all joint laws with this observed law (two linear programs per x).
        from scipy.optimize import linprog

        best, alternative = 0.0, None
        for i in range(n_vec):
            for sign in (1.0, -1.0):
                res = linprog(-sign * marginal[i], A_eq=a, b_eq=observed, bounds=(0, None), method="highs")
                if res.status == 0 and abs(float(marginal[i] @ res.x) - p_x[i]) > best:
                    best, alternative = abs(float(marginal[i] @ res.x) - p_x[i]), res.x
        if alternative is None or best < 1e-9:
            return MNARCheck(mechanism, a.shape[1] - 1, a.shape[0] - 1, rank, True, None, 0.0, 0.0)
        return MNARCheck(mechanism, a.shape[1] - 1, a.shape[0] - 1, rank, False, marginal @ alternative,
                         float(np.abs(a @ alternative - observed).max()), best)

    from scipy.optimize import least_squares

    n_values = len(problem.values)

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = np.concatenate([theta[:n_vec - 1], [0.0]])
        p = np.exp(logits - logits.max())
        r = 1 / (1 + np.exp(-theta[n_vec - 1:].reshape(problem.n, n_values)))
        return p / p.sum(), r

    def observed_law(theta: np.ndarray) -> np.ndarray:
        p, r = unpack(theta)
        return a @ self_masking_joint(problem, p, r)

    params = n_vec - 1 + problem.n * n_values
    theta0 = np.concatenate([np.log(np.clip(p_x[:-1], 1e-12, None) / max(p_x[-1], 1e-12)),
                             np.log(observed_prob / (1 - observed_prob)).reshape(-1)])
    h = 1e-6
    jac = np.stack([(observed_law(theta0 + h * e) - observed_law(theta0 - h * e)) / (2 * h)
                    for e in np.eye(params)], axis=1)
    rank = int(np.linalg.matrix_rank(jac, tol=1e-7))
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(starts):
        fit = least_squares(lambda t: observed_law(t) - observed, rng.normal(0, 1.5, params), xtol=1e-14,
                            ftol=1e-14, gtol=1e-14, max_nfev=4000)
        if np.abs(fit.fun).max() < 1e-9:
            fits.append(unpack(fit.x)[0])
    distances = [float(np.abs(f - p_x).max()) for f in fits]
    spread = max(distances, default=0.0)
    identified = rank == params and spread < 1e-4
    alternative = fits[int(np.argmax(distances))] if fits and not identified else None
    gap = float(np.abs(a @ self_masking_joint(problem, alternative, _refit_r(problem, alternative, a, observed))
                       - observed).max()) if alternative is not None else 0.0
    return MNARCheck(mechanism, params, a.shape[0] - 1, rank, identified, alternative, gap, spread)


def _refit_r(problem: DiscreteProblem, p: np.ndarray, a: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The self-masking mechanism that best reproduces `observed` together with data law p."""
    from scipy.optimize import least_squares

    shape = (problem.n, len(problem.values))
    fit = least_squares(lambda t: a @ self_masking_joint(problem, p, 1 / (1 + np.exp(-t.reshape(shape))))
                        - observed, np.zeros(shape[0] * shape[1]), xtol=1e-14, ftol=1e-14, gtol=1e-14)
    return 1 / (1 + np.exp(-fit.x.reshape(shape)))
