"""Parsing and validation of one `soda` row, shared by the SFT and the DPO view.

A row holds the prompt messages (optional system message, then user/assistant turns that
end with a user turn), the teacher response and, for DPO, the student response. Nothing
bad passes silently: `parse_row` raises `BadRowError` naming the row and the field, and
the caller either re-raises it or counts it per reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from ..constants import (
    DATASET_KEY_MESSAGES,
    DATASET_KEY_STUDENT,
    DATASET_KEY_TEACHER,
    DEFAULT_FIELD_MESSAGES,
    DEFAULT_FIELD_STUDENT,
    DEFAULT_FIELD_TEACHER,
    FINISH_REASON_FIELD,
)
from .flags import FLAGS_FIELD, TeacherFlag


class BadRowReason(str, Enum):
    MISSING_FIELD = "missing_field"
    NOT_STRING = "not_string"
    EMPTY = "empty"
    BAD_MESSAGES = "bad_messages"
    ROLES_OUT_OF_ORDER = "roles_out_of_order"
    CHOSEN_EQUALS_REJECTED = "chosen_equals_rejected"
    NOT_JSON = "not_json"  # a line of a JSON-lines file that is not one JSON object


class OnBadRow(str, Enum):
    ERROR = "error"
    SKIP = "skip"


class BadRowError(ValueError):
    """A `soda` row that cannot be trained on.

    `where` locates it for the user: `FILE:LINE` for a JSON-lines file, `FILE row N` for
    other files, `soda row N` when the file is not known.
    """

    def __init__(self, index: int, field: str, reason: BadRowReason, detail: str, where: str | None = None):
        self.index = index
        self.field = field
        self.reason = BadRowReason(reason)
        self.detail = detail
        self.where = where or f"soda row {index}"
        super().__init__(
            f"{self.where}: field `{field}` {detail} (reason: {self.reason.value}). Fix the "
            "data, or set `soda.on_bad_row: skip` to drop such rows (they are counted and "
            "logged per reason)."
        )

    def located(self, where: str) -> "BadRowError":
        return type(self)(self.index, self.field, self.reason, self.detail, where)

    def __reduce__(self):
        # Raised inside Axolotl's dataset-map workers: the parent must rebuild it from a
        # pickle, or the pool's result thread dies and `axolotl train` hangs.
        return (type(self), (self.index, self.field, self.reason, self.detail, self.where))


@dataclass(frozen=True)
class SodaFields:
    """Column names of one dataset entry."""

    messages: str = DEFAULT_FIELD_MESSAGES
    teacher: str = DEFAULT_FIELD_TEACHER
    student: str = DEFAULT_FIELD_STUDENT

    @classmethod
    def from_dataset_config(
        cls, ds_cfg: Mapping[str, Any] | None, soda_cfg: Mapping[str, Any] | None = None
    ) -> "SodaFields":
        """Column names for dataset entry `ds_cfg`: the entry's `field_*` keys (also as
        recorded in `soda.dataset_fields`, since Axolotl's schema may drop them), else
        the defaults."""
        names = dict(ds_cfg or {})
        for recorded in (soda_cfg or {}).get("dataset_fields") or []:
            if (recorded.get("path"), recorded.get("name")) == (names.get("path"), names.get("name")):
                names.update({k: v for k, v in recorded.items() if v and k.startswith("field_")})
        return cls(
            messages=names.get(DATASET_KEY_MESSAGES) or DEFAULT_FIELD_MESSAGES,
            teacher=names.get(DATASET_KEY_TEACHER) or DEFAULT_FIELD_TEACHER,
            student=names.get(DATASET_KEY_STUDENT) or DEFAULT_FIELD_STUDENT,
        )


@dataclass(frozen=True)
class SodaRow:
    messages: tuple[dict[str, str], ...]
    teacher: str
    student: str | None = None


def _require_text(row: Mapping[str, Any], field: str, index: int) -> str:
    if field not in row or row[field] is None:
        raise BadRowError(index, field, BadRowReason.MISSING_FIELD, "is missing")
    value = row[field]
    if not isinstance(value, str):
        raise BadRowError(
            index, field, BadRowReason.NOT_STRING, f"is {type(value).__name__}, not a string"
        )
    if not value.strip():
        raise BadRowError(index, field, BadRowReason.EMPTY, "is empty or whitespace")
    return value


def parse_messages(row: Mapping[str, Any], field: str, index: int) -> tuple[dict[str, str], ...]:
    if field not in row or row[field] is None:
        raise BadRowError(index, field, BadRowReason.MISSING_FIELD, "is missing")
    raw = row[field]
    if not isinstance(raw, list) or not raw:
        raise BadRowError(
            index, field, BadRowReason.BAD_MESSAGES,
            f"must be a non-empty list of {{role, content}} messages, got {type(raw).__name__}",
        )
    messages = []
    for turn, message in enumerate(raw):
        where = f"{field}[{turn}]"
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise BadRowError(index, where, BadRowReason.BAD_MESSAGES, "is not a {role, content} message")
        content = message["content"]
        if not isinstance(content, str):
            raise BadRowError(
                index, f"{where}.content", BadRowReason.NOT_STRING,
                f"is {type(content).__name__}, not a string",
            )
        if not content.strip():
            raise BadRowError(index, f"{where}.content", BadRowReason.EMPTY, "is empty or whitespace")
        messages.append({"role": message["role"], "content": content})
    _check_role_order(messages, field, index)
    return tuple(messages)


def _check_role_order(messages: list[dict[str, str]], field: str, index: int) -> None:
    """Optional system first, then user/assistant alternating, ending with user."""
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    expected = "user"
    for turn, message in enumerate(turns):
        if message["role"] != expected:
            roles = [m["role"] for m in messages]
            raise BadRowError(
                index, field, BadRowReason.ROLES_OUT_OF_ORDER,
                f"has roles {roles}; expected an optional `system` first, then `user` and "
                "`assistant` alternating, ending with `user`",
            )
        expected = "assistant" if expected == "user" else "user"
    if not turns or turns[-1]["role"] != "user":
        roles = [m["role"] for m in messages]
        raise BadRowError(
            index, field, BadRowReason.ROLES_OUT_OF_ORDER,
            f"has roles {roles}; the prompt must end with a `user` turn",
        )


def normalize_answer(text: str) -> str:
    """The form in which two answers are compared for equality."""
    return " ".join(text.split())


def parse_row(
    row: Mapping[str, Any], fields: SodaFields, *, index: int, need_student: bool, where: str | None = None
) -> SodaRow:
    """Validate one row and return its typed form.

    Raises:
        BadRowError: naming the row (`where`, else its index), the field and the reason.
    """
    try:
        return _parse_row(row, fields, index=index, need_student=need_student)
    except BadRowError as error:
        if where is None:
            raise
        raise error.located(where) from None


def _parse_row(row: Mapping[str, Any], fields: SodaFields, *, index: int, need_student: bool) -> SodaRow:
    if not isinstance(row, Mapping):
        raise BadRowError(index, "(row)", BadRowReason.NOT_JSON, f"is a JSON {type(row).__name__}, not an object")
    messages = parse_messages(row, fields.messages, index)
    teacher = _require_text(row, fields.teacher, index)
    if not need_student:
        return SodaRow(messages=messages, teacher=teacher)
    student = _require_text(row, fields.student, index)
    if normalize_answer(teacher) == normalize_answer(student):
        raise BadRowError(
            index, fields.student, BadRowReason.CHOSEN_EQUALS_REJECTED,
            f"equals `{fields.teacher}` (after whitespace normalization), so the pair teaches nothing",
        )
    return SodaRow(messages=messages, teacher=teacher, student=student)


# A `finish_reason` that makes an answer unusable even where no `flags` column says so.
_FLAGGING_FINISH_REASONS = {"length": TeacherFlag.TRUNCATED.value, "content_filter": TeacherFlag.CONTENT_FILTER.value}


def teacher_flags(row: Mapping[str, Any]) -> list[str]:
    """Why the teacher tool marked this row's answer as not to be trained on: its `flags`
    (empty, truncated, refusal, content filter; see `format.flags`) and a `finish_reason`
    of `length` or `content_filter`. `[]` for a usable answer or a row without those columns.

    A truncated answer trained as an SFT target gets the end-of-turn token appended and
    teaches the student to stop mid-sentence; an empty one would stop the run as a bad row.
    """
    raw = row.get(FLAGS_FIELD) or []
    flags = [str(flag) for flag in raw] if isinstance(raw, (list, tuple)) else [str(raw)]
    extra = _FLAGGING_FINISH_REASONS.get(row.get(FINISH_REASON_FIELD))
    if extra and extra not in flags:
        flags.append(extra)
    return flags


class BadRowTally:
    """Counts skipped rows per reason; raises instead when the policy is `error`."""

    def __init__(self, policy: OnBadRow):
        self.policy = OnBadRow(policy)
        self.counts: Counter[str] = Counter()
        self.first_where: dict[str, str] = {}

    def record(self, error: BadRowError) -> None:
        if self.policy is OnBadRow.ERROR:
            raise error
        self.counts[error.reason.value] += 1
        self.first_where.setdefault(error.reason.value, error.where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, seen: int, where: str) -> str:
        parts = ", ".join(
            f"{reason}={count} (first at {self.first_where[reason]})"
            for reason, count in sorted(self.counts.items())
        )
        return f"soda: skipped {self.total} of {seen} rows in {where} (`soda.on_bad_row: skip`): {parts}"


@dataclass(frozen=True)
class TeacherFields:
    """Column names of the teacher files (`prompt_id`, `finish_reason` and `flags` are
    optional; `flags` is the list `soda teacher` writes, see `format.flags`)."""

    messages: str = DEFAULT_FIELD_MESSAGES
    teacher: str = DEFAULT_FIELD_TEACHER
    prompt_id: str = "prompt_id"
    finish_reason: str = "finish_reason"
    flags: str = "flags"
