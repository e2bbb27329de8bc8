"""Paired statistics for the miniature experiment.

The data is a matrix E[s, i] (seeds x prompts): 0/1 exact match, or a real-valued score
per prompt, in the same prompt order for every model. Intervals are percentile bootstraps
that resample seeds and prompts together (two-level), and differences between two models
apply the very same seed and prompt draws to both (paired). A single run gets a Wilson
score interval instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

TWO_LEVEL = "two-level bootstrap (seeds x prompts)"
PROMPTS_ONLY = "bootstrap over prompts"
WILSON = "Wilson score"

# Caps one chunk of resamples at about this many count cells (rows x prompts).
_CHUNK_CELLS = 1 << 20


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% interval and how it was obtained."""

    mean: float
    low: float
    high: float
    resamples: int
    n_seeds: int
    n_prompts: int
    method: str

    def format(self, digits: int = 1) -> str:
        """`mean [low, high]`, e.g. `12.3 [4.5, 20.1]`."""
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return asdict(self)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n`, in percent (0-100)."""
    if n <= 0:
        raise ValueError(f"Wilson interval needs n > 0, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Only guards float rounding at k == 0 or k == n; the exact bounds are inside [0, 1].
    low, high = max(0.0, center - half), min(1.0, center + half)
    return 100.0 * low, 100.0 * high


def percent_interval(values_0_1: ArrayLike) -> Interval:
    """Mean in percent of one run's 0/1 values, with the Wilson score interval."""
    values = np.asarray(values_0_1, dtype=float).ravel()
    if values.size == 0:
        raise ValueError("percent_interval needs at least one value")
    if not np.all((values == 0) | (values == 1)):
        raise ValueError("percent_interval needs 0/1 values")
    successes = int(values.sum())
    low, high = wilson_interval(successes, values.size)
    return Interval(mean=100.0 * successes / values.size, low=low, high=high, resamples=0,
                    n_seeds=1, n_prompts=int(values.size), method=WILSON)


def _as_matrix(values: ArrayLike, name: str = "values") -> np.ndarray:
    """`values` as a float (seeds x prompts) matrix; a 1-D array is one seed."""
    matrix = np.asarray(values, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be (seeds x prompts), got shape {matrix.shape}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"{name} needs at least one seed and one prompt, got shape {matrix.shape}")
    return matrix


def _draw_counts(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """(rows x n) counts of how often each of n items is drawn, n draws with replacement per row."""
    draws = rng.integers(0, n, size=(rows, n))
    offsets = (np.arange(rows) * n)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=rows * n).reshape(rows, n)


def _resampled_means(matrix: np.ndarray, resamples: int, rng: np.random.Generator,
                     resample_seeds: bool) -> np.ndarray:
    """Means of `resamples` bootstrap draws of `matrix`.

    A draw picks seeds with replacement and prompts with replacement, the same prompts for
    every drawn seed. Its mean is c_s^T E c_p / (S * P) with c_s, c_p the draw counts,
    which avoids materialising the resampled matrices.
    """
    n_seeds, n_prompts = matrix.shape
    chunk = max(1, _CHUNK_CELLS // max(n_seeds, n_prompts))
    out = np.empty(resamples)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        if resample_seeds:
            seed_counts = _draw_counts(rng, rows, n_seeds)
        else:
            seed_counts = np.ones((rows, n_seeds), dtype=np.int64)
        prompt_counts = _draw_counts(rng, rows, n_prompts)
        totals = ((seed_counts @ matrix) * prompt_counts).sum(axis=1)
        out[start:start + rows] = totals / (n_seeds * n_prompts)
    return out


def _bootstrap(matrix: np.ndarray, resamples: int, seed: int, scale: float) -> Interval:
    """Percentile bootstrap of the mean of `matrix`: two-level with several seeds, else over prompts."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n_seeds, n_prompts = matrix.shape
    two_level = n_seeds > 1
    means = _resampled_means(matrix, resamples, np.random.default_rng(seed), resample_seeds=two_level)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(mean=float(matrix.mean()) * scale, low=float(low) * scale, high=float(high) * scale,
                    resamples=resamples, n_seeds=n_seeds, n_prompts=n_prompts,
                    method=TWO_LEVEL if two_level else PROMPTS_ONLY)


def _paired(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """a - b as a (seeds x prompts) matrix; shapes must match."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired arrays need equal shapes, got a {a_arr.shape} and b {b_arr.shape}")
    return _as_matrix(a_arr - b_arr, "a - b")


def bootstrap_mean(values: ArrayLike, resamples: int = 10000, seed: int = 0, scale: float = 100.0) -> Interval:
    """Mean of (seeds x prompts) `values` times `scale`, with a 95% percentile bootstrap interval."""
    return _bootstrap(_as_matrix(values), resamples, seed, scale)


def paired_difference(a: ArrayLike, b: ArrayLike, resamples: int = 10000, seed: int = 0,
                      scale: float = 100.0) -> Interval:
    """Mean of a - b times `scale`, with the same seed and prompt draws applied to both (paired)."""
    # The resampled mean is linear in the data, so resampling a - b is resampling both with one draw.
    return _bootstrap(_paired(a, b), resamples, seed, scale)


def per_seed_differences(a: ArrayLike, b: ArrayLike, resamples: int = 10000, seed: int = 0,
                         scale: float = 100.0) -> list[Interval]:
    """One prompt-only paired bootstrap of a - b per seed row, each with the same `seed`."""
    diff = _paired(a, b)
    return [_bootstrap(row[None, :], resamples, seed, scale) for row in diff]


def discordant(a: ArrayLike, b: ArrayLike) -> dict[str, int]:
    """For 0/1 arrays, counts over all seeds and prompts of a_only, b_only, both and neither right."""
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired arrays need equal shapes, got a {a_arr.shape} and b {b_arr.shape}")
    for name, arr in (("a", a_arr), ("b", b_arr)):
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"discordant needs 0/1 values, {name} has others")
    a_right, b_right = a_arr == 1, b_arr == 1
    return {"a_only": int(np.sum(a_right & ~b_right)), "b_only": int(np.sum(~a_right & b_right)),
            "both": int(np.sum(a_right & b_right)), "neither": int(np.sum(~a_right & ~b_right))}
