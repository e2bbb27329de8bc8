"""Writing pairs as `data/train-*.parquet` in batches, a few files for large outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..constants import DEFAULT_FIELD_MESSAGES, DEFAULT_FIELD_STUDENT, DEFAULT_FIELD_TEACHER

DATA_DIR = "data"
SPLIT = "train"
ROWS_PER_FILE = 200_000

# Provenance columns written next to the three the `soda` type reads.
COLUMN_PROMPT_ID = "prompt_id"
COLUMN_SAMPLE_INDEX = "sample_index"
COLUMN_REJECTED_SOURCE = "rejected_source"
COLUMN_REJECTED_FINISH = "rejected_finish_reason"

PAIR_COLUMNS = (
    DEFAULT_FIELD_MESSAGES, DEFAULT_FIELD_TEACHER, DEFAULT_FIELD_STUDENT,
    COLUMN_PROMPT_ID, COLUMN_SAMPLE_INDEX, COLUMN_REJECTED_SOURCE, COLUMN_REJECTED_FINISH,
)
# Written only with the judge filter (`judge_filter.Mark` values; the teacher's mean
# T/(T+Q) over both orders, null when unjudged).
COLUMN_JUDGE_VERDICT = "judge_verdict"
COLUMN_JUDGE_SCORE = "judge_teacher_score"
JUDGE_COLUMNS = (COLUMN_JUDGE_VERDICT, COLUMN_JUDGE_SCORE)


def pair_schema(judge_columns: bool = False):
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    types = [pa.list_(message), pa.string(), pa.string(), pa.string(), pa.int64(), pa.string(), pa.string()]
    fields = list(zip(PAIR_COLUMNS, types))
    if judge_columns:
        fields += [(COLUMN_JUDGE_VERDICT, pa.string()), (COLUMN_JUDGE_SCORE, pa.float64())]
    return pa.schema(fields)


class PairWriter:
    """Appends column batches to parquet files; names them `train-00000-of-0000N` on close."""

    def __init__(self, out_dir: Path, rows_per_file: int = ROWS_PER_FILE, judge_columns: bool = False):
        self.data_dir = Path(out_dir) / DATA_DIR
        self.rows_per_file = rows_per_file
        self.schema = pair_schema(judge_columns)
        self.parts: list[Path] = []
        self.rows = 0
        self._writer = None
        self._rows_in_file = 0

    def write(self, columns: dict[str, list[Any]]) -> None:
        import pyarrow as pa

        table = pa.Table.from_pydict(columns, schema=self.schema)
        start = 0
        while start < table.num_rows:
            if self._writer is None or self._rows_in_file >= self.rows_per_file:
                self._open_next()
            take = min(table.num_rows - start, self.rows_per_file - self._rows_in_file)
            self._writer.write_table(table.slice(start, take))
            self._rows_in_file += take
            self.rows += take
            start += take

    def _open_next(self) -> None:
        import pyarrow.parquet as pq

        self._close_current()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        part = self.data_dir / f".part-{len(self.parts):05d}.parquet.tmp"
        self.parts.append(part)
        self._writer = pq.ParquetWriter(part, self.schema)
        self._rows_in_file = 0

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Finish the last file and give every file its final name."""
        self._close_current()
        final = []
        for number, part in enumerate(self.parts):
            path = self.data_dir / f"{SPLIT}-{number:05d}-of-{len(self.parts):05d}.parquet"
            part.replace(path)
            final.append(path)
        return final

    def abort(self) -> None:
        self._close_current()
        for part in self.parts:
            part.unlink(missing_ok=True)
