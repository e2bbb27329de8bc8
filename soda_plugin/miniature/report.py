"""The miniature's tables: Markdown helpers and how each figure is formatted."""

from __future__ import annotations

from typing import Mapping, Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def spread(values: Sequence[float], digits: int = 1) -> str:
    """Mean of per-seed values and their range: `12.3 (10.1-14.0)`; one value alone."""
    if not values:
        raise ValueError("no values to summarise")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def timing_table(seconds: Mapping[str, float]) -> str:
    return markdown_table(["stage", "wall time (s)"], [[name, f"{value:.0f}"] for name, value in seconds.items()]
                          + [["**total**", f"{sum(seconds.values()):.0f}"]])
