"""The preference builder: teacher answers (chosen) joined with snapshot answers (rejected).

    build_pairs([teacher.jsonl], ["snapshots/q0"], "outputs/pairs")  # -> data/train-*.parquet

Modules: `reasons` (drop reasons, truncation policy), `sources` (reading inputs),
`length` (the token-length check), `judge_filter` (teacher vs q0 by a judge), `writer`
(parquet output), `card` (dataset card and report), `builder` (the join), `degrade`
(degraded rejection source), `hub` (upload).
"""

from ..format.rows import TeacherFields
from .builder import BuildReport, NoPairsError, build_pairs, iter_pairs
from .degrade import degrade_rows, degrade_snapshot
from .hub import push_to_hub
from .judge_filter import FilterAction, JudgeFilterConfig, Mark, UnjudgedPairsError, UnjudgedPolicy
from .reasons import DropReason, TruncatedPolicy
from .sources import SnapshotInput
from .writer import PAIR_COLUMNS

__all__ = [
    "BuildReport", "DropReason", "FilterAction", "JudgeFilterConfig", "Mark", "NoPairsError", "PAIR_COLUMNS",
    "SnapshotInput", "TeacherFields", "TruncatedPolicy", "UnjudgedPairsError", "UnjudgedPolicy", "build_pairs",
    "degrade_rows", "degrade_snapshot", "iter_pairs", "push_to_hub",
]
