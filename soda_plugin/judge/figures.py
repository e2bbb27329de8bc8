"""What the judge reports for one model on one set of prompts: the GPT-4o Score and its
interval, the score from each presentation order, how often the orders disagree, the
answer lengths beside the reference's, and (optionally) the score at equal length.

Definitions (docs/judge.md):
- per order o: 100 x mean over prompts of S_o/(S_o+R_o); the score is their mean.
- outcome of an order: `win` (S > R), `tie` (S = R) or `loss` (S < R). The orders
  disagree on a prompt when its two outcomes differ (a tie against a win counts); a
  flip is the strict case, a win in one order and a loss in the other.
- length-controlled: OLS of the prompt score (x 100) on x = ln((1 + L_model)/(1 + L_ref)),
  token counts L; the intercept is the score where the answer is as long as the reference.

Examples:
    >>> p = PromptVerdicts("a", student_first=(8, 6), reference_first=(6, 8), model_tokens=9, reference_tokens=9)
    >>> outcome(*p.student_first), outcome(*p.reference_first), p.score
    ('win', 'loss', 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..verdict.scoring import benchmark_score, order_score


@dataclass(frozen=True)
class PromptVerdicts:
    """One scored prompt: (student, reference) scores in each order, after clamping (not
    the verdict's positions), and both answers' lengths."""

    prompt_id: str
    student_first: tuple[float, float]
    reference_first: tuple[float, float]
    model_tokens: int
    reference_tokens: int

    @property
    def score(self) -> float:
        return (order_score(*self.student_first) + order_score(*self.reference_first)) / 2

    @property
    def log_length_ratio(self) -> float:
        return math.log((1 + self.model_tokens) / (1 + self.reference_tokens))


def outcome(student: float, reference: float) -> str:
    return "win" if student > reference else "tie" if student == reference else "loss"


@dataclass(frozen=True)
class SubsetScore:
    """The figures on one set of prompts; every field is None (and `n` 0) when it is empty."""

    n: int
    score: float | None
    ci_low: float | None
    ci_high: float | None
    student_first: float | None  # 100 x mean S/(S+R), student shown first
    reference_first: float | None  # 100 x mean S/(S+R), reference shown first
    order_disagreement: float | None  # fraction of prompts whose two outcomes differ
    order_flips: float | None  # fraction of prompts won in one order and lost in the other
    model_tokens: float | None  # mean answer length
    reference_tokens: float | None  # mean reference length on the same prompts
    length_controlled: float | None = None  # score at equal length (only with `length_controlled=True`)
    length_slope: float | None = None  # score points per unit of log length ratio
    length_extrapolated: bool | None = None  # equal length (x = 0) lies outside the observed x


def length_regression(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    """(intercept, slope) of the OLS fit y = a + b x. With no spread in x the slope is
    undefined: the intercept is then the mean when every x is 0 (all at equal length), else None."""
    n = len(x)
    if not n:
        return None, None
    x_mean, y_mean = sum(x) / n, sum(y) / n
    spread = sum((v - x_mean) ** 2 for v in x)
    if spread <= 1e-12:
        return (y_mean if abs(x_mean) <= 1e-12 else None), None
    slope = sum((xi - x_mean) * (yi - y_mean) for xi, yi in zip(x, y)) / spread
    return y_mean - slope * x_mean, slope


def subset_score(prompts: Sequence[PromptVerdicts], resamples: int, seed: int,
                 length_controlled: bool = False) -> SubsetScore:
    """The figures over `prompts` (in a fixed order: the bootstrap resamples by position)."""
    summary = benchmark_score([p.score for p in prompts], resamples, seed)
    n = len(prompts)
    if not n:
        return SubsetScore(0, None, None, None, None, None, None, None, None, None)
    outcomes = [(outcome(*p.student_first), outcome(*p.reference_first)) for p in prompts]
    intercept = slope = extrapolated = None
    if length_controlled:
        x = [p.log_length_ratio for p in prompts]
        intercept, slope = length_regression(x, [100 * p.score for p in prompts])
        extrapolated = not min(x) <= 0 <= max(x)
    return SubsetScore(
        n, summary.score, summary.ci_low, summary.ci_high,
        100 * sum(order_score(*p.student_first) for p in prompts) / n,
        100 * sum(order_score(*p.reference_first) for p in prompts) / n,
        sum(a != b for a, b in outcomes) / n,
        sum({a, b} == {"win", "loss"} for a, b in outcomes) / n,
        sum(p.model_tokens for p in prompts) / n, sum(p.reference_tokens for p in prompts) / n,
        intercept, slope, extrapolated)
