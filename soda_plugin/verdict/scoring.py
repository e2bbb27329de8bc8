"""The GPT-4o Score arithmetic: per order S/(S+R), per prompt the mean of both orders,
per benchmark 100 x the mean over prompts with a seeded percentile bootstrap interval.

Examples:
    >>> prompt_score(student_first=(8, 8), reference_first=(9, 6))  # (8/16 + 6/15) / 2
    0.45
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Sequence


class Order(str, Enum):
    """Which answer the judge sees as Assistant 1."""

    STUDENT_FIRST = "student_first"
    REFERENCE_FIRST = "reference_first"


def student_and_reference(order: Order, scores: tuple[float, float]) -> tuple[float, float]:
    """(S, R) from a verdict's (Assistant 1, Assistant 2) scores."""
    return scores if order is Order.STUDENT_FIRST else (scores[1], scores[0])


def order_score(student: float, reference: float) -> float:
    """S/(S+R): 0.5 is parity with the reference. Scores are >= 1, so S+R > 0."""
    return student / (student + reference)


def prompt_score(student_first: tuple[float, float], reference_first: tuple[float, float]) -> float:
    """Mean of S/(S+R) over both presentation orders (each verdict as (Assistant 1, Assistant 2))."""
    fractions = [order_score(*student_and_reference(order, scores))
                 for order, scores in ((Order.STUDENT_FIRST, student_first), (Order.REFERENCE_FIRST, reference_first))]
    return sum(fractions) / 2


@dataclass(frozen=True)
class BenchmarkScore:
    score: float | None  # 100 x mean; None with no scored prompt
    ci_low: float | None
    ci_high: float | None
    n_scored: int


def bootstrap_interval(values: Sequence[float], resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap of the mean of `values` (resampling prompts with replacement).
    Deterministic for a given seed, number of resamples and value order."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def benchmark_score(prompt_scores: Sequence[float], resamples: int = 1000, seed: int = 0) -> BenchmarkScore:
    """100 x the mean prompt score, with its 95 % bootstrap interval (also x 100)."""
    if resamples < 1:
        raise ValueError(f"`resamples` must be >= 1, got {resamples}")
    if not prompt_scores:
        return BenchmarkScore(None, None, None, 0)
    low, high = bootstrap_interval(prompt_scores, resamples, seed)
    return BenchmarkScore(100 * sum(prompt_scores) / len(prompt_scores), 100 * low, 100 * high, len(prompt_scores))
