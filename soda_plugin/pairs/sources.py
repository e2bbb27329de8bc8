"""Reading the builder's inputs: teacher files (streamed) and snapshots (indexed by prompt).

Teacher data and file snapshots may be `.jsonl` or `.parquet`; a snapshot may also be a
directory written by `soda_plugin.snapshot.store` (`run.json` + `shards/`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from ..format.fileio import iter_jsonl
from ..snapshot import store
from .reasons import FINISH_REASONS, DropReason

PARQUET_BATCH_ROWS = 4096


def iter_file_rows(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Rows of one `.jsonl` or `.parquet` file, streamed (parquet in record batches)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        yield from iter_jsonl(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()
    else:
        raise ValueError(f"unsupported input file `{path}`: use `.jsonl` or `.parquet` (or a snapshot directory).")


@dataclass(frozen=True)
class SnapshotInput:
    """One rejection source: a snapshot directory or file, and an optional label.

    Without `label`, each pair's `rejected_source` is the row's `source` column, else the
    manifest's model, else the file or directory name.
    """

    path: Path
    label: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "SnapshotInput":
        """`PATH` or `PATH=LABEL` (as given on the command line)."""
        path, sep, label = spec.partition("=")
        if sep and not label:
            raise ValueError(f"snapshot `{spec}` has an empty label; write `PATH=LABEL` or just `PATH`.")
        return cls(Path(path), label or None)

    @property
    def manifest(self) -> dict[str, Any] | None:
        return store.read_manifest(self.path) if self.path.is_dir() else None

    def rows(self) -> Iterator[dict[str, Any]]:
        if self.path.is_dir():
            if not store.shard_paths(self.path):
                raise ValueError(f"snapshot directory `{self.path}` has no `{store.SHARDS}/{store.SHARD_GLOB}` files.")
            return store.iter_rows(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"snapshot `{self.path}` is neither a snapshot directory nor a file.")
        return iter_file_rows(self.path)

    def default_source(self) -> str:
        model = (self.manifest or {}).get("model")
        return f"q0:{model}" if model else self.path.name


class Sample(NamedTuple):
    """What the builder keeps of one snapshot row."""

    snapshot: int  # position of its SnapshotInput
    sample_index: int
    response: str
    finish_reason: str
    source: str


def _valid_sample(row: Any, snapshot: int, default_source: str, label: str | None) -> tuple[str, Sample] | None:
    if not isinstance(row, dict):
        return None
    pid, index, response, finish = (row.get(k) for k in ("prompt_id", "sample_index", "response", "finish_reason"))
    if not isinstance(pid, str) or not pid or isinstance(index, bool) or not isinstance(index, int):
        return None
    if response is None:
        response = ""  # a failed generation: counted as an empty student answer
    if not isinstance(response, str) or finish not in FINISH_REASONS:
        return None
    source = label or row.get("source") or default_source
    if not isinstance(source, str):
        return None
    return pid, Sample(snapshot, index, response, finish, source)


@dataclass
class SnapshotIndex:
    """Snapshot answers by prompt_id: only what a pair needs, popped once joined."""

    by_prompt: dict[str, list[Sample]] = field(default_factory=dict)
    rows_read: Counter = field(default_factory=Counter)  # per snapshot path
    drops: Counter = field(default_factory=Counter)

    @classmethod
    def build(cls, inputs: list[SnapshotInput]) -> "SnapshotIndex":
        index = cls()
        for position, snapshot in enumerate(inputs):
            index.add(position, snapshot)
        return index

    def add(self, position: int, snapshot: SnapshotInput) -> None:
        default_source = snapshot.default_source()
        by_prompt, read = self.by_prompt, 0
        for row in snapshot.rows():
            read += 1
            parsed = _valid_sample(row, position, default_source, snapshot.label)
            if parsed is None:
                self.drops[DropReason.MALFORMED_SNAPSHOT_ROW] += 1
                continue
            pid, sample = parsed
            samples = by_prompt.setdefault(pid, [])
            if any(s.snapshot == position and s.sample_index == sample.sample_index for s in samples):
                self.drops[DropReason.DUPLICATE_SNAPSHOT_SAMPLE] += 1
                continue
            samples.append(sample)
        self.rows_read[str(snapshot.path)] += read

    def pop(self, pid: str) -> list[Sample]:
        """The prompt's samples, by snapshot then sample index; removed from the index."""
        samples = self.by_prompt.pop(pid, None) or []
        return sorted(samples, key=lambda s: (s.snapshot, s.sample_index))

    def leftover(self) -> int:
        return sum(len(samples) for samples in self.by_prompt.values())
