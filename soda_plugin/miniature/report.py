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


def timing_table(seconds: Mapping[str, float], wall_seconds: float | None = None) -> str:
    """Stage times, their sum, and the run's wall time when given (less than the sum where
    stages ran beside each other)."""
    rows = [[name, f"{value:.0f}"] for name, value in seconds.items()] + [["**total**", f"{sum(seconds.values()):.0f}"]]
    if wall_seconds is not None:
        rows.append(["**wall time, first stage to report**", f"{wall_seconds:.0f}"])
    return markdown_table(["stage", "wall time (s)"], rows)
