"""Closed choices of the pair builder: why a row is dropped, and the truncation policy."""

from __future__ import annotations

from enum import Enum


class Unit(str, Enum):
    """What a drop count counts."""

    TEACHER_ROW = "teacher rows"
    SNAPSHOT_ROW = "snapshot rows"
    PAIR = "candidate pairs"


class DropReason(str, Enum):
    """Why a row never became a pair. Each reason counts one kind of row (`unit`).

    Every snapshot row ends up exactly once in `kept` or under a snapshot-row or pair
    reason; every teacher row is used (it produced at least one candidate pair) or is
    counted under a teacher-row reason.
    """

    # Teacher rows, checked in this order.
    MALFORMED_TEACHER_ROW = "malformed_teacher_row"  # messages invalid, answer not a string
    EMPTY_TEACHER_ANSWER = "empty_teacher_answer"  # missing, empty or whitespace
    DUPLICATE_TEACHER_PROMPT = "duplicate_teacher_prompt"  # the first valid row is kept
    TRUNCATED_TEACHER_ANSWER = "truncated_teacher_answer"  # finish_reason "length" (or flag "truncated")
    REFUSED_TEACHER_ANSWER = "refused_teacher_answer"  # flag "refusal" (collect_teacher)
    FLAGGED_TEACHER_ANSWER = "flagged_teacher_answer"  # any other flag, e.g. "content_filter"
    NO_STUDENT_ANSWER = "no_student_answer"  # no snapshot has a row for this prompt
    # Snapshot rows.
    MALFORMED_SNAPSHOT_ROW = "malformed_snapshot_row"  # bad prompt_id/sample_index/response/finish_reason
    DUPLICATE_SNAPSHOT_SAMPLE = "duplicate_snapshot_sample"  # same (prompt_id, sample_index) again
    NOT_FIRST_SAMPLE = "not_first_sample"  # with `first_sample_only`
    NO_TEACHER_ROW = "no_teacher_row"  # its prompt has no usable teacher row
    # Candidate pairs (one per matched snapshot row).
    EMPTY_STUDENT_ANSWER = "empty_student_answer"
    TRUNCATED_STUDENT_ANSWER = "truncated_student_answer"
    CHOSEN_EQUALS_REJECTED = "chosen_equals_rejected"  # equal after `normalize_answer`
    TOO_LONG = "too_long"  # prompt + longer answer + end of turn > sequence_len tokens
    TEACHER_NOT_BETTER = "teacher_not_better"  # the judge filter's verdict (`judge_filter.py`), last

    @property
    def unit(self) -> Unit:
        return _UNITS[self]


_UNITS = {
    **{r: Unit.TEACHER_ROW for r in (
        DropReason.MALFORMED_TEACHER_ROW, DropReason.EMPTY_TEACHER_ANSWER,
        DropReason.DUPLICATE_TEACHER_PROMPT, DropReason.TRUNCATED_TEACHER_ANSWER,
        DropReason.REFUSED_TEACHER_ANSWER, DropReason.FLAGGED_TEACHER_ANSWER, DropReason.NO_STUDENT_ANSWER,
    )},
    **{r: Unit.SNAPSHOT_ROW for r in (
        DropReason.MALFORMED_SNAPSHOT_ROW, DropReason.DUPLICATE_SNAPSHOT_SAMPLE,
        DropReason.NOT_FIRST_SAMPLE, DropReason.NO_TEACHER_ROW,
    )},
    **{r: Unit.PAIR for r in (
        DropReason.EMPTY_STUDENT_ANSWER, DropReason.TRUNCATED_STUDENT_ANSWER,
        DropReason.CHOSEN_EQUALS_REJECTED, DropReason.TOO_LONG, DropReason.TEACHER_NOT_BETTER,
    )},
}


class TruncatedPolicy(str, Enum):
    """What to do with answers cut at the generation limit (`finish_reason: length`)."""

    DROP = "drop"  # drop the pair if either answer is truncated
    KEEP = "keep"  # keep every pair
    # Drop only pairs whose teacher answer is truncated: a truncated student answer is
    # still a valid negative (and the degraded source is truncated by construction).
    TEACHER_ONLY = "teacher_only"

    @property
    def drops_truncated_teacher(self) -> bool:
        return self is not TruncatedPolicy.KEEP

    @property
    def drops_truncated_student(self) -> bool:
        return self is TruncatedPolicy.DROP


TRUNCATED = "length"  # the finish_reason of an answer cut at the token limit
FINISH_REASONS = ("stop", TRUNCATED)
