"""The preference builder: teacher answers (chosen) joined with snapshot answers (rejected).

    build_pairs([teacher.jsonl], ["snapshots/q0"], "outputs/pairs")  # -> data/train-*.parquet

Modules: `reasons` (drop reasons, truncation policy), `sources` (reading inputs),
`length` (the token-length check), `writer` (parquet output), `card` (dataset card and
report), `builder` (the join), `degrade` (degraded rejection source), `hub` (upload).
"""

from .builder import BuildReport, NoPairsError, build_pairs, iter_pairs
from .degrade import degrade_rows, degrade_snapshot
from .hub import push_to_hub
from .reasons import DropReason, TruncatedPolicy
from .sources import SnapshotInput, TeacherFields
from .writer import PAIR_COLUMNS

__all__ = [
    "BuildReport", "DropReason", "NoPairsError", "PAIR_COLUMNS", "SnapshotInput", "TeacherFields",
    "TruncatedPolicy", "build_pairs", "degrade_rows", "degrade_snapshot", "iter_pairs", "push_to_hub",
]
