"""The results document as a grid, read by the tables (`report`) and the chart (`chart`)."""

from __future__ import annotations

from typing import Any

from ..evalsets import BENCHMARKS


def benchmark_title(benchmark: str) -> str:
    spec = BENCHMARKS.get(benchmark)
    return spec.title if spec else benchmark


def score_grid(document: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """`model -> benchmark -> result record`, models and benchmarks in run order."""
    grid: dict[str, dict[str, dict[str, Any]]] = {model: {} for model in document["models"]}
    for record in document["results"]:
        grid.setdefault(record["model"], {})[record["benchmark"]] = record
    return grid


def headline(record: dict[str, Any]) -> dict[str, Any]:
    """The figures a table leads with: the paired ones (every model on the same prompts);
    a record without them (an older `results.json`, a hand-made one) is its own headline."""
    return record.get("paired") or record
