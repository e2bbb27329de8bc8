"""Validate local `type: soda` files row by row as written, before Axolotl loads them.

Axolotl's JSON loader unifies each column's type across rows, so a number or a list in
one row changes (or blames) the good rows of the same column, and a torn line surfaces as
datasets' own `JSONDecodeError` with no usable line number. For each `type: soda` entry
whose `path` is a local `.jsonl`/`.json`/`.parquet` file (or a folder of such files, as
the pair builder writes), soda therefore reads the file
itself (one JSON object per line, or one JSON array, or the Parquet rows as loaded),
validates every row in the view the stage trains (SFT: prompt and teacher; DPO: also the
student) and writes the good rows, unchanged, to a clean JSON-lines copy under
`<dataset_prepared_path>/soda_rows/`. The entry is pointed at that copy; its name holds a
hash of the source's bytes and of the view, so Axolotl's dataset cache still hits.

- `soda.on_bad_row: error`: the first bad row stops the run in the main process, named
  `FILE:LINE` (or `FILE row N`), with the field and the reason.
- `skip`: bad rows are counted per reason, listed in `<copy>.skipped.jsonl`, and logged.
- In the SFT view (warmup, SeqKD), answers the teacher tool flagged (empty, truncated,
  refusal, content filter; `rows.teacher_flags`) are left out under either policy, as the
  pair builder leaves them out of DPO: counted per flag, listed and logged, never an error.

Hub datasets and `save_to_disk` folders are validated as loaded, in the dataset map
(`dataset_type`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from .args import SODA_TYPES
from .. import constants
from ..format.fileio import atomic_write_text, iter_json_lines
from ..log import get_logger
from ..format.rows import BadRowError, BadRowReason, BadRowTally, OnBadRow, SodaFields, SodaRow, parse_row, teacher_flags

LOG = get_logger(__name__)

CLEAN_SUBDIR = "soda_rows"
_SUFFIXES = (".jsonl", ".json", ".parquet")
# Axolotl's default `dataset_prepared_path` (`axolotl.utils.data.shared`).
_DEFAULT_PREPARED_PATH = "last_run_prepared"
# Bumped when the clean copy's layout changes, so old copies are not reused.
_CLEAN_FORMAT = "1"
# File-name prefixes by which `datasets` puts a folder's files in splits other than `train`.
_OTHER_SPLITS = ("test", "validation", "valid", "dev", "eval")


@dataclass(frozen=True)
class SourceRow:
    """One row of a source file, with where it is in that file."""

    index: int
    where: str
    value: Any


def _iter_json_lines(path: Path) -> Iterator[SourceRow]:
    for number, value in iter_json_lines(path):
        where = f"{path}:{number}"
        if isinstance(value, json.JSONDecodeError):
            value = BadRowError(
                number, "(line)", BadRowReason.NOT_JSON,
                f"is not a JSON line ({value.msg} at column {value.colno}); fix or remove that line", where,
            )
        yield SourceRow(number, where, value)


def _starts_with_array(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("[")
    return False


def iter_source_rows(path: str | os.PathLike) -> Iterator[SourceRow]:
    """Rows of a local file as written. A line that is not JSON comes as a `BadRowError` value."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, row in enumerate(pq.read_table(path).to_pylist()):
            yield SourceRow(number, f"{path} row {number}", row)
    elif path.suffix == ".json" and _starts_with_array(path):
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            where = f"{path}:{error.lineno}"
            yield SourceRow(error.lineno, where, BadRowError(
                error.lineno, "(file)", BadRowReason.NOT_JSON, f"is not valid JSON ({error.msg})", where))
            return
        for number, item in enumerate(items):
            yield SourceRow(number, f"{path} item {number}", item)
    else:
        yield from _iter_json_lines(path)


def _clean_record(row: SodaRow) -> dict[str, Any]:
    record: dict[str, Any] = {constants.DEFAULT_FIELD_MESSAGES: list(row.messages),
                              constants.DEFAULT_FIELD_TEACHER: row.teacher}
    if row.student is not None:
        record[constants.DEFAULT_FIELD_STUDENT] = row.student
    return record


@dataclass
class CleanResult:
    path: Path
    rows: int
    kept: int
    skipped: dict[str, int]
    flagged: dict[str, int] = field(default_factory=dict)  # SFT view: per teacher flag


def _fingerprint(sources: list[Path], fields: SodaFields, need_student: bool, policy: OnBadRow) -> str:
    digest = hashlib.sha256()
    for source in sources:
        digest.update(f"{source.name}\0".encode())
        with source.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    view = json.dumps([_CLEAN_FORMAT, fields.messages, fields.teacher, fields.student, need_student, policy.value])
    digest.update(view.encode())
    return digest.hexdigest()[:16]


def clean_source(
    source: str | os.PathLike | list[Path], fields: SodaFields, *, need_student: bool, policy: OnBadRow,
    out_dir: str | os.PathLike,
) -> CleanResult:
    """Validate every row of `source` (a file, or the files of one folder in order) and
    write the good ones to a clean JSON-lines copy.

    Raises:
        BadRowError: under `error`, at the first bad row, located in its file.
        ValueError: every row was skipped.
    """
    sources = [Path(f) for f in source] if isinstance(source, list) else [Path(source)]
    label = str(sources[0].parent if len(sources) > 1 else sources[0])
    tally = BadRowTally(policy)
    kept: list[str] = []
    skipped: list[str] = []
    flagged: Counter[str] = Counter()
    rows = 0
    for item in (row for path in sources for row in iter_source_rows(path)):
        rows += 1
        if not need_student and isinstance(item.value, Mapping) and (flags := teacher_flags(item.value)):
            flagged[flags[0]] += 1
            skipped.append(json.dumps({"where": item.where, "field": "flags", "reason": f"teacher_flag:{flags[0]}",
                                       "detail": f"flagged {flags} by the teacher tool"}))
            continue
        try:
            if isinstance(item.value, BadRowError):
                raise item.value
            parsed = parse_row(item.value, fields, index=item.index, need_student=need_student, where=item.where)
        except BadRowError as error:
            tally.record(error)  # raises under `error`
            skipped.append(json.dumps({"where": error.where, "field": error.field,
                                       "reason": error.reason.value, "detail": error.detail}))
            continue
        kept.append(json.dumps(_clean_record(parsed), ensure_ascii=False))
    view = "DPO" if need_student else "SFT"
    if not kept:
        raise ValueError(f"soda: every row of {label} was skipped in the {view} view; nothing to train on.")
    out = Path(out_dir) / f"{Path(label).stem}-{_fingerprint(sources, fields, need_student, policy)}.jsonl"
    if not out.is_file():  # same name, same bytes: a copy from an earlier run (or rank) is reused
        atomic_write_text(out, "\n".join(kept) + "\n")
    report = out.with_suffix(".skipped.jsonl")
    if skipped:
        atomic_write_text(report, "\n".join(skipped) + "\n")
    if flagged:
        LOG.warning("soda: %d of %d teacher answers in %s are flagged by the teacher tool and not trained on "
                    "in the SFT view (%s); each one is listed in %s", sum(flagged.values()), rows, label,
                    ", ".join(f"{k}={v}" for k, v in sorted(flagged.items())), report)
    if tally.total:
        LOG.warning("%s; each one is listed in %s", tally.summary(rows, f"{label} ({view} view)"), report)
    return CleanResult(out, rows, len(kept), dict(tally.counts), dict(flagged))


def _local_files(entry: Mapping[str, Any]) -> list[Path] | None:
    """The files Axolotl would read for `entry`, in its order, or None where soda leaves
    the reading to Axolotl (Hub ids, `save_to_disk` folders, `data_files`, splits)."""
    path = entry.get("path")
    if not isinstance(path, str) or entry.get("data_files") or entry.get("name"):
        return None
    candidate = Path(path)
    if candidate.is_file():
        return [candidate] if candidate.suffix in _SUFFIXES else None
    if not candidate.is_dir() or (candidate / "dataset_info.json").exists() or entry.get("split") not in (None, "train"):
        return None
    files = sorted(p for p in candidate.rglob("*") if p.is_file() and not p.name.startswith("."))
    suffixes = {p.suffix for p in files}
    if not files or len(suffixes) != 1 or not suffixes <= set(_SUFFIXES) or any(p.name.startswith(_OTHER_SPLITS) for p in files):
        return None
    return files


def clean_soda_datasets(cfg: Any, *, need_student: bool, policy: OnBadRow, keys=("datasets", "test_datasets")) -> int:
    """Point every local `type: soda` entry of `cfg` at a validated clean copy; returns how many.

    The copy uses soda's default column names, so the entry's `field_*` keys are removed.
    """
    soda_block = cfg.get("soda") or {}
    out_dir = Path(cfg.get("dataset_prepared_path") or _DEFAULT_PREPARED_PATH) / CLEAN_SUBDIR
    cleaned = 0
    for key in keys:
        for entry in cfg.get(key) or []:
            if entry.get("type") not in SODA_TYPES or (source := _local_files(entry)) is None:
                continue
            fields = SodaFields.from_dataset_config(entry, soda_block)
            result = clean_source(source, fields, need_student=need_student, policy=policy, out_dir=out_dir)
            entry["path"] = str(result.path)
            entry["ds_type"] = "json"
            for field_key in (constants.DATASET_KEY_MESSAGES, constants.DATASET_KEY_TEACHER,
                              constants.DATASET_KEY_STUDENT):
                if field_key in entry:
                    entry[field_key] = None
            cleaned += 1
    return cleaned
