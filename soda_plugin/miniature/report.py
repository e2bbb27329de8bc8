"""The miniature's `report.md` and its one-screen summary: tables over seeds, stage times."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass(frozen=True)
class SeedSummary:
    mean: float
    low: float | None  # 95 % interval over seeds (Student's t); None with one seed
    high: float | None
    n: int

    def format(self, digits: int = 1) -> str:
        if self.low is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def over_seeds(values: Sequence[float]) -> SeedSummary:
    """Mean and 95 % t-interval of per-seed values (the spread of training seeds)."""
    if not values:
        raise ValueError("no values to summarise")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return SeedSummary(mean, None, None, 1)
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return SeedSummary(mean, mean - half, mean + half, n)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def metric_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]], labels: Mapping[str, str]) -> str:
    """Rows = models (in `labels` order); columns = exact match and judge score over seeds
    (`metrics`: group -> metric -> seed -> value)."""
    rows = []
    for key, label in labels.items():
        if key not in metrics:
            continue
        exact, judge = list(metrics[key]["exact_match"].values()), list(metrics[key]["judge"].values())
        rows.append([label, str(len(exact)), over_seeds(exact).format(), over_seeds(judge).format()])
    return markdown_table(["model", "seeds", "exact match % (95 % CI)", "judge score (95 % CI)"], rows)


# metric in `summary.collect_metrics` -> (judge figure, scale), and its column heading
JUDGE_FIGURES = {"judge_student_first": ("student_first", 1.0), "judge_reference_first": ("reference_first", 1.0),
                 "judge_order_disagreement": ("order_disagreement", 100.0), "judge_tokens": ("model_tokens", 1.0),
                 "reference_tokens": ("reference_tokens", 1.0)}
JUDGE_HEADINGS = ["student first", "reference first", "orders disagree %", "tokens", "reference tokens"]


def judge_figures_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]], labels: Mapping[str, str]) -> str:
    """Rows = models; columns = the judge's figures over seeds (`JUDGE_FIGURES`)."""
    rows = []
    for key, label in labels.items():
        if key not in metrics or not all(metrics[key].get(m) for m in JUDGE_FIGURES):
            continue
        rows.append([label, str(len(metrics[key]["judge"]))]
                    + [over_seeds(list(metrics[key][m].values())).format() for m in JUDGE_FIGURES])
    if not rows:
        return "(the judge's results hold no per-order figures)"
    return markdown_table(["model", "seeds", *JUDGE_HEADINGS], rows)


def timing_table(seconds: Mapping[str, float]) -> str:
    return markdown_table(["stage", "wall time (s)"], [[name, f"{value:.0f}"] for name, value in seconds.items()])
