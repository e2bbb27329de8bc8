"""Answers the pair builder must not train on, flagged when they are collected.

A flagged row is still written (it was paid for; a re-run must not ask again) and the
builder drops it, counted per reason. Refusals are found by a heuristic: an answer that
*opens* with a stock refusal ("I'm sorry, but I can't ...", "I cannot help with ...",
"As an AI language model, I cannot ..."). Only the opening is read, so a long answer that
mentions what it cannot do further on is not flagged.
"""

from __future__ import annotations

import re
from enum import Enum

FLAGS_FIELD = "flags"
REFUSAL_WINDOW_CHARS = 200  # a refusal states itself in its first sentence or two


class TeacherFlag(str, Enum):
    EMPTY = "empty"  # no text, or only whitespace
    TRUNCATED = "truncated"  # finish_reason "length": cut at max_tokens
    REFUSAL = "refusal"  # opens with a stock refusal
    CONTENT_FILTER = "content_filter"  # finish_reason "content_filter": the provider cut it


_CANNOT = r"(?:can(?:'|no)t|can not|won't|will not|am unable to|'m unable to|am not able to|'m not able to|must decline)"
_REFUSAL_OPENINGS = re.compile(
    r"^\W*(?:"
    rf"(?:i'm|i am) (?:very |really |so )?(?:sorry|afraid)\b[^.!?\n]{{0,80}}?\b(?:i |but )?{_CANNOT}"
    rf"|i {_CANNOT} (?!help but)(?:help|assist|comply|provide|fulfil|fulfill|do that|do this|create|generate|write|answer|engage|support)"
    rf"|(?:i'm|i am) unable to (?:help|assist|comply|provide|fulfil|fulfill)"
    rf"|as an ai(?: language model| assistant)?,? i {_CANNOT}"
    rf"|sorry,? (?:but )?i {_CANNOT}"
    r")",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    opening = text[:REFUSAL_WINDOW_CHARS].replace("\u2019", "'").lower()
    return _REFUSAL_OPENINGS.search(opening) is not None


def answer_flags(text: str, finish_reason: str) -> list[str]:
    """The flags of one answer, in `TeacherFlag` order; `[]` for a usable answer."""
    flags = []
    if not text.strip():
        flags.append(TeacherFlag.EMPTY.value)
    if finish_reason == "length":
        flags.append(TeacherFlag.TRUNCATED.value)
    if text.strip() and is_refusal(text):
        flags.append(TeacherFlag.REFUSAL.value)
    if finish_reason == "content_filter":
        flags.append(TeacherFlag.CONTENT_FILTER.value)
    return flags
