"""Join teacher answers with student snapshots into `soda` preference rows."""

from __future__ import annotations

import os
import sys
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..log import get_logger
from ..format.prompt_id import prompt_id as compute_prompt_id
from ..format.rows import BadRowError, BadRowReason, SodaFields, TeacherFields, normalize_answer, parse_row
from ..format.flags import TeacherFlag
from ..verdict.template import question_text
from .card import write_card_and_report
from .judge_filter import FilterAction, JudgeFilter, JudgeFilterConfig, Mark, UnjudgedPairsError, UnjudgedPolicy
from .length import LengthCheck
from .reasons import TRUNCATED, DropReason, TruncatedPolicy
from .sources import Sample, SnapshotIndex, SnapshotInput, iter_file_rows
from .writer import DATA_DIR, JUDGE_COLUMNS, PAIR_COLUMNS, ROWS_PER_FILE, PairWriter

LOG = get_logger(__name__)

BATCH_PAIRS = 4096


class NoPairsError(ValueError):
    """Every candidate was dropped: nothing to train on."""


@dataclass
class BuildReport:
    """What the builder read, kept and dropped (also written as `build_report.json`)."""

    teacher_rows: int = 0
    snapshot_rows: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    kept_by_source: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    judge_filter: dict[str, Any] | None = None  # `JudgeFilter.summary()` when the filter ran

    def table(self) -> str:
        """Kept and dropped counts, one line per reason (all reasons, zeros included), then
        the judge filter's marks when it ran."""
        lines = [f"{'kept':<28} {self.kept:>10}  pairs"]
        for reason in DropReason:
            lines.append(f"{reason.value:<28} {self.dropped.get(reason.value, 0):>10}  {reason.unit.value}")
        if self.judge_filter:
            counts = self.judge_filter["counts"]
            lines.append(f"judge filter ({self.judge_filter['settings']['action']}): judged {counts['judged']}, "
                         + ", ".join(f"{m.value} {counts[m.value]}" for m in Mark))
        return "\n".join(lines)


@dataclass
class _Batch:
    """Pairs waiting to be length-checked and written; prompts stored once per teacher row."""

    prompts: list[tuple[dict[str, str], ...]] = field(default_factory=list)
    teachers: list[str] = field(default_factory=list)
    pair_prompt: list[int] = field(default_factory=list)
    pids: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)


def _flag_drop(flags: list[str]) -> DropReason | None:
    """Why a flagged teacher answer is dropped; `truncated` is left to the truncation
    policy and `empty` was already caught as an empty answer."""
    if TeacherFlag.REFUSAL.value in flags:
        return DropReason.REFUSED_TEACHER_ANSWER
    if set(flags) - {TeacherFlag.TRUNCATED.value, TeacherFlag.EMPTY.value}:
        return DropReason.FLAGGED_TEACHER_ANSWER
    return None


def _teacher_drop(error: BadRowError, fields: TeacherFields) -> DropReason:
    if error.field == fields.teacher and error.reason in (BadRowReason.MISSING_FIELD, BadRowReason.EMPTY):
        return DropReason.EMPTY_TEACHER_ANSWER
    return DropReason.MALFORMED_TEACHER_ROW


class _Builder:
    def __init__(self, index: SnapshotIndex, writer: PairWriter, fields: TeacherFields,
                 truncated: TruncatedPolicy, first_sample_only: bool, length: LengthCheck | None,
                 batch_pairs: int, judge: JudgeFilter | None = None):
        self.index, self.writer, self.fields, self.judge = index, writer, fields, judge
        self.soda_fields = SodaFields(messages=fields.messages, teacher=fields.teacher)
        self.truncated, self.first_sample_only, self.length = truncated, first_sample_only, length
        self.batch_pairs = batch_pairs
        self.drops: Counter = Counter(index.drops)
        self.kept_by_source: Counter = Counter()
        self.seen: set[str] = set()
        self.batch = _Batch()
        self.teacher_rows = 0

    def add_teacher_row(self, row: Any) -> None:
        index = self.teacher_rows
        self.teacher_rows += 1
        if not isinstance(row, dict):
            self.drops[DropReason.MALFORMED_TEACHER_ROW] += 1
            return
        try:
            parsed = parse_row(row, self.soda_fields, index=index, need_student=False)
        except BadRowError as error:
            self.drops[_teacher_drop(error, self.fields)] += 1
            return
        pid = row.get(self.fields.prompt_id)
        if pid is None:
            pid = compute_prompt_id(parsed.messages)
        elif not isinstance(pid, str) or not pid:
            self.drops[DropReason.MALFORMED_TEACHER_ROW] += 1
            return
        if pid in self.seen:
            self.drops[DropReason.DUPLICATE_TEACHER_PROMPT] += 1
            return
        self.seen.add(pid)
        flags = row.get(self.fields.flags) or []
        if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
            self.drops[DropReason.MALFORMED_TEACHER_ROW] += 1
            return
        truncated = row.get(self.fields.finish_reason) == TRUNCATED or TeacherFlag.TRUNCATED.value in flags
        if truncated and self.truncated.drops_truncated_teacher:
            self.drops[DropReason.TRUNCATED_TEACHER_ANSWER] += 1
            return
        flag_drop = _flag_drop(flags)
        if flag_drop is not None:
            self.drops[flag_drop] += 1
            return
        samples = self.index.pop(pid)
        if not samples:
            self.drops[DropReason.NO_STUDENT_ANSWER] += 1
            return
        self._add_pairs(pid, parsed.messages, parsed.teacher, samples)
        if len(self.batch) >= self.batch_pairs:
            self.flush()

    def _add_pairs(self, pid: str, messages, teacher: str, samples: list[Sample]) -> None:
        batch, position, first_seen = self.batch, None, set()
        teacher_norm = normalize_answer(teacher)
        for sample in samples:
            if self.first_sample_only:
                if sample.snapshot in first_seen:
                    self.drops[DropReason.NOT_FIRST_SAMPLE] += 1
                    continue
                first_seen.add(sample.snapshot)
            reason = self._pair_drop(teacher_norm, sample)
            if reason is not None:
                self.drops[reason] += 1
                continue
            if position is None:
                position = len(batch.prompts)
                batch.prompts.append(messages)
                batch.teachers.append(teacher)
            batch.pair_prompt.append(position)
            batch.pids.append(pid)
            batch.samples.append(sample)

    def _pair_drop(self, teacher_norm: str, sample: Sample) -> DropReason | None:
        if not sample.response.strip():
            return DropReason.EMPTY_STUDENT_ANSWER
        if sample.finish_reason == TRUNCATED and self.truncated.drops_truncated_student:
            return DropReason.TRUNCATED_STUDENT_ANSWER
        if normalize_answer(sample.response) == teacher_norm:
            return DropReason.CHOSEN_EQUALS_REJECTED
        return None

    def flush(self) -> None:
        batch, self.batch = self.batch, _Batch()
        if not batch:
            return
        students = [s.response for s in batch.samples]
        keep = range(len(batch))
        if self.length is not None:
            fits = self.length.fits(batch.prompts, batch.teachers, batch.pair_prompt, students)
            keep = [i for i, ok in enumerate(fits) if ok]
            self.drops[DropReason.TOO_LONG] += len(batch) - len(keep)
        if not keep:
            return
        extra = ()
        if self.judge is not None:
            keep, extra = self._judge(batch, students, keep)
            if not keep:
                return
        messages = [[dict(m) for m in p] for p in batch.prompts]
        values = (
            [messages[batch.pair_prompt[i]] for i in keep],
            [batch.teachers[batch.pair_prompt[i]] for i in keep],
            [students[i] for i in keep],
            [batch.pids[i] for i in keep],
            [batch.samples[i].sample_index for i in keep],
            [batch.samples[i].source for i in keep],
            [batch.samples[i].finish_reason for i in keep],
        )
        self.writer.write(dict(zip(PAIR_COLUMNS + JUDGE_COLUMNS[:len(extra)], values + extra)))
        self.kept_by_source.update(batch.samples[i].source for i in keep)

    def _judge(self, batch: _Batch, students: list[str], keep) -> tuple[list[int], tuple[list, list]]:
        """The pairs the judge filter keeps, and their `judge_verdict` and score columns."""
        questions = [question_text(batch.prompts[batch.pair_prompt[i]]) for i in keep]
        verdicts = self.judge.judge(questions, [batch.teachers[batch.pair_prompt[i]] for i in keep],
                                    [students[i] for i in keep])
        drop = self.judge.config.action is FilterAction.DROP
        kept, marks, scores = [], [], []
        for i, verdict in zip(keep, verdicts):
            if drop and verdict.mark is Mark.TEACHER_NOT_BETTER:
                self.drops[DropReason.TEACHER_NOT_BETTER] += 1
                continue
            kept.append(i)
            marks.append(verdict.mark.value)
            scores.append(verdict.teacher_score)
        return kept, (marks, scores)


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    data = out_dir / DATA_DIR
    if data.exists() and any(data.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"`{data}` already holds files; choose an empty `out_dir` or pass `overwrite=True` "
                "(`--overwrite`) to replace them."
            )
        shutil.rmtree(data)
    out_dir.mkdir(parents=True, exist_ok=True)


def build_pairs(
    teacher_files: Sequence[str | os.PathLike],
    snapshots: Sequence[SnapshotInput | str],
    out_dir: str | os.PathLike,
    *,
    fields: TeacherFields = TeacherFields(),
    truncated: TruncatedPolicy | str = TruncatedPolicy.DROP,
    first_sample_only: bool = False,
    tokenizer: Any = None,
    sequence_len: int | None = None,
    teacher_name: str | None = None,
    student_name: str | None = None,
    overwrite: bool = False,
    batch_pairs: int = BATCH_PAIRS,
    rows_per_file: int = ROWS_PER_FILE,
    judge_filter: JudgeFilterConfig | None = None,
) -> BuildReport:
    """Build SODA preference rows: chosen = teacher answer, rejected = a snapshot answer.

    Snapshots are indexed by `prompt_id` in memory (answers only); teacher rows are
    streamed, joined, filtered and written in batches, so memory holds the snapshots once
    plus one batch. Each snapshot sample of a prompt gives one pair (`first_sample_only`
    keeps the lowest `sample_index` per snapshot). The length check runs only when both
    `tokenizer` and `sequence_len` are given. With `judge_filter`, the pairs that pass every
    other check are judged teacher vs q0 in both orders (cached) and those the teacher
    does not win are dropped or flagged (`judge_filter.py` has the rule).

    Args:
        teacher_files: `.jsonl`/`.parquet` files with `fields.messages` and `fields.teacher`.
        snapshots: snapshot directories or files (`PATH` or `PATH=LABEL` strings allowed).
        out_dir: gets `data/train-*.parquet`, `README.md` and `build_report.json`.
        truncated: policy for answers with `finish_reason: length`.
        tokenizer, sequence_len: the student's tokenizer and the recipe's `sequence_len`.
        teacher_name, student_name: shown on the dataset card.
        judge_filter: the judge and what its verdicts do; adds the `judge_verdict` and
            `judge_teacher_score` columns. In batch mode the whole build is one block
            (`batch_pairs` is ignored): every verdict goes into one batch run, not one run
            (one wait of up to 24 h) per block.

    Returns:
        The counts, also written to `build_report.json`.

    Raises:
        NoPairsError: when every candidate was dropped (the report is still written).
        UnjudgedPairsError: pairs lack a verdict and `judge_filter.unjudged` is `fail`
            (nothing is written; the verdicts received are cached).

    Examples:
        A teacher row `{"content": [{"role": "user", "content": "2+2?"}], "teacher_response": "4"}`
        and a snapshot row `{"prompt_id": prompt_id(content), "sample_index": 0, "response": "5",
        "finish_reason": "stop", "source": "q0:tiny", ...}` give the one pair
        `{"content": [{"role": "user", "content": "2+2?"}], "teacher_response": "4",
        "student_response": "5", "prompt_id": "…", "sample_index": 0,
        "rejected_source": "q0:tiny", "rejected_finish_reason": "stop"}`.
    """
    out_dir = Path(out_dir)
    truncated = TruncatedPolicy(truncated)
    inputs = [s if isinstance(s, SnapshotInput) else SnapshotInput.parse(str(s)) for s in snapshots]
    if not teacher_files or not inputs:
        raise ValueError("give at least one teacher file (`--teacher`) and one snapshot (`--snapshot`).")
    if (tokenizer is None) != (sequence_len is None):
        raise ValueError("the length check needs both `tokenizer` and `sequence_len` (or neither).")
    length = LengthCheck(tokenizer, sequence_len) if tokenizer is not None else None
    if judge_filter is not None and judge_filter.batch is not None:
        # Memory: the pairs' texts once more besides the snapshot index, which holds every
        # q0 answer already; against that, one provider wait in all instead of one per block.
        batch_pairs = sys.maxsize
    _prepare_out_dir(out_dir, overwrite)

    index = SnapshotIndex.build(inputs)
    _warn_degraded_dropped(index, truncated)
    writer = PairWriter(out_dir, rows_per_file, judge_columns=judge_filter is not None)
    judge = JudgeFilter(judge_filter, out_dir) if judge_filter is not None else None
    builder = _Builder(index, writer, fields, truncated, first_sample_only, length, batch_pairs, judge)
    try:
        for path in teacher_files:
            for row in iter_file_rows(path):
                builder.add_teacher_row(row)
        builder.flush()
        if judge is not None and judge.unjudged and judge_filter.unjudged is UnjudgedPolicy.FAIL:
            raise UnjudgedPairsError(_unjudged_message(judge))
    except BaseException:
        writer.abort()
        raise
    finally:
        if judge is not None:
            judge.close()
    builder.drops[DropReason.NO_TEACHER_ROW] += index.leftover()
    files = writer.close()

    report = BuildReport(
        teacher_rows=builder.teacher_rows,
        snapshot_rows=dict(index.rows_read),
        kept=writer.rows,
        dropped={reason.value: builder.drops.get(reason, 0) for reason in DropReason},
        kept_by_source=dict(sorted(builder.kept_by_source.items())),
        files=[str(p.relative_to(out_dir)) for p in files],
        judge_filter=judge.summary(builder.drops.get(DropReason.TEACHER_NOT_BETTER, 0)) if judge else None,
    )
    settings = {
        "truncated": truncated.value, "first_sample_only": first_sample_only,
        "sequence_len": sequence_len,
        "tokenizer": getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None,
        "judge_filter": judge_filter.action.value if judge_filter else "off",
    }
    write_card_and_report(out_dir, report, inputs, [str(p) for p in teacher_files], settings,
                          teacher_name=teacher_name, student_name=student_name)
    LOG.info("soda pairs: kept %d pairs in %s\n%s", report.kept, out_dir, report.table())
    if not report.kept:
        raise NoPairsError(f"every candidate pair was dropped; nothing written to `{out_dir / DATA_DIR}`:\n{report.table()}")
    return report


def _unjudged_message(judge: JudgeFilter) -> str:
    marks = judge.counts.marks
    return (f"{judge.unjudged} of {judge.counts.judged} judged pairs have no verdict in both orders "
            f"({marks[Mark.UNPARSABLE]} unparsable after {judge.config.judge.parse_attempts} requests, "
            f"{marks[Mark.FAILED]} failed requests: {dict(judge.calls.stats.verdicts_failed)}) and "
            "`judge_filter_unjudged` is `fail`, so nothing was written. Every verdict received is cached in "
            f"`{judge.cache_dir}`: re-run to ask only for the missing ones, or pass `--judge-filter-unjudged keep` "
            "to keep such pairs marked `unjudged_*`.")


def _warn_degraded_dropped(index: SnapshotIndex, truncated: TruncatedPolicy) -> None:
    if not truncated.drops_truncated_student:
        return
    for samples in index.by_prompt.values():
        if any(s.source.startswith("degraded:") for s in samples):
            LOG.warning(
                "a degraded snapshot is an input but `truncated: drop` drops every truncated student "
                "answer, and degraded answers are truncated by construction; use `--truncated teacher_only`."
            )
            return


def iter_pairs(out_dir: str | os.PathLike) -> Iterable[dict[str, Any]]:
    """The written pairs, in order (for tests and inspection)."""
    for path in sorted((Path(out_dir) / DATA_DIR).glob("train-*.parquet")):
        yield from iter_file_rows(path)
