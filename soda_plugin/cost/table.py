"""Compare runs by their `cost.json` files: one markdown row per run, ratios to the first run.

A run folder's cost is every `cost.json` in it and in its sub-folders (a SODA run holds
`warmup/cost.json` and its own DPO `cost.json`): wall time, optimizer steps and GPU-hours
are summed over the stages, peak memory is the highest over stages and ranks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .recorder import COST_FILENAME, COST_SCHEMA

GIB = 1024**3
NONE = "–"


class CostFileError(ValueError):
    """A `cost.json` that cannot be read, or a run folder without any."""


@dataclass(frozen=True)
class StageCost:
    stage: str
    path: Path
    finished: bool
    started_at: str
    wall_seconds: float
    optimizer_steps: int | None
    gpu_hours: float
    peak_allocated_bytes: int | None
    peak_device_used_bytes: int | None
    peak_rss_bytes: int | None


@dataclass(frozen=True)
class RunCost:
    name: str
    stages: tuple[StageCost, ...]

    @property
    def wall_seconds(self) -> float:
        return sum(s.wall_seconds for s in self.stages)

    @property
    def optimizer_steps(self) -> int | None:
        steps = [s.optimizer_steps for s in self.stages if s.optimizer_steps is not None]
        return sum(steps) if steps else None

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours for s in self.stages)

    @property
    def peak_allocated_bytes(self) -> int | None:
        return _max(s.peak_allocated_bytes for s in self.stages)

    @property
    def peak_device_used_bytes(self) -> int | None:
        return _max(s.peak_device_used_bytes for s in self.stages)

    @property
    def peak_rss_bytes(self) -> int | None:
        return _max(s.peak_rss_bytes for s in self.stages)


def _max(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _field(record: dict[str, Any], key: str, path: Path) -> Any:
    if key not in record:
        raise CostFileError(f"{path}: no `{key}` field; not a cost file soda wrote")
    return record[key]


def read_stage(path: str | os.PathLike) -> StageCost:
    """One `cost.json`, its per-rank peaks reduced to their maximum."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CostFileError(f"{path}: cannot be read as JSON ({err})") from None
    if not isinstance(record, dict) or record.get("schema") != COST_SCHEMA:
        raise CostFileError(f"{path}: not a cost file of schema {COST_SCHEMA} (schema: "
                            f"{record.get('schema') if isinstance(record, dict) else None!r})")
    ranks = _field(record, "per_rank", path)
    steps = _field(record, "optimizer_steps", path)
    return StageCost(
        stage=str(_field(record, "stage", path)), path=path, finished=bool(_field(record, "finished", path)),
        started_at=str(record.get("started_at") or ""), wall_seconds=float(_field(record, "wall_seconds", path)),
        optimizer_steps=None if steps is None else int(steps), gpu_hours=float(_field(record, "gpu_hours", path)),
        peak_allocated_bytes=_max(rank.get("peak_allocated_bytes") for rank in ranks),
        peak_device_used_bytes=_max(rank.get("peak_device_used_bytes") for rank in ranks),
        peak_rss_bytes=_max(rank.get("peak_rss_bytes") for rank in ranks),
    )


def read_run(path: str | os.PathLike) -> RunCost:
    """Every stage recorded in the run folder `path` and its sub-folders, oldest first."""
    root = Path(path)
    if not root.is_dir():
        raise CostFileError(f"{path}: not a folder")
    files = sorted(root.rglob(COST_FILENAME))
    if not files:
        raise CostFileError(f"{path}: no {COST_FILENAME} in it or its sub-folders (a stage writes one into its "
                            "output folder when it ends; was this run trained with this soda?)")
    # Within one start time, the deeper folder first: a sub-stage (warmup/) feeds its parent.
    stages = sorted((read_stage(f) for f in files), key=lambda s: (s.started_at, -len(s.path.parts), str(s.path)))
    return RunCost(name=str(path), stages=tuple(stages))


def _gib(value: int | None) -> str:
    return NONE if value is None else f"{value / GIB:.2f}"


def _ratio(value: float | None, first: float | None) -> str:
    return NONE if value is None or not first else f"{value / first:.2f}×"


def _memory_ratio(run: RunCost, first: RunCost) -> str:
    """Peak GPU allocated when both runs have it, else peak RSS; the cell says which."""
    if run.peak_allocated_bytes is not None and first.peak_allocated_bytes is not None:
        return f"{_ratio(run.peak_allocated_bytes, first.peak_allocated_bytes)} (GPU)"
    return f"{_ratio(run.peak_rss_bytes, first.peak_rss_bytes)} (RSS)"


def _stages(run: RunCost) -> str:
    return " + ".join(s.stage if s.finished else f"{s.stage} (unfinished)" for s in run.stages)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


COLUMNS: Sequence[tuple[str, Callable[[RunCost, RunCost], str]]] = (
    ("run", lambda run, first: run.name),
    ("stages", lambda run, first: _stages(run)),
    ("wall time (s)", lambda run, first: f"{run.wall_seconds:.1f}"),
    ("optimizer steps", lambda run, first: NONE if run.optimizer_steps is None else str(run.optimizer_steps)),
    ("GPU-hours", lambda run, first: f"{run.gpu_hours:.3f}"),
    ("peak GPU allocated (GiB)", lambda run, first: _gib(run.peak_allocated_bytes)),
    ("peak device used (GiB)", lambda run, first: _gib(run.peak_device_used_bytes)),
    ("peak RSS (GiB)", lambda run, first: _gib(run.peak_rss_bytes)),
    ("wall time ×", lambda run, first: _ratio(run.wall_seconds, first.wall_seconds)),
    ("peak memory ×", _memory_ratio),
)


def format_table(runs: Sequence[RunCost]) -> str:
    """One markdown table, a row per run, ratios to `runs[0]`, and the footnotes."""
    if not runs:
        raise ValueError("no runs to compare")
    first = runs[0]
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(cell(run, first)) for _, cell in COLUMNS) + " |" for run in runs]
    lines += [
        "",
        f"Ratios are to the first run ({first.name}). peak memory ×: peak GPU allocated (torch's allocator, max over "
        "ranks) where both runs have it (GPU), else the process's peak RSS (RSS).",
        "Summed over the stages: wall time, optimizer steps, GPU-hours; peaks: the highest over stages and ranks. "
        "peak device used counts every process on the GPU (vLLM, other jobs).",
    ]
    if any(not s.finished for run in runs for s in run.stages):
        lines.append("(unfinished): the stage raised before it ended; its numbers cover the time up to the failure.")
    return "\n".join(lines)


__all__ = ["CostFileError", "RunCost", "StageCost", "format_table", "read_run", "read_stage"]
