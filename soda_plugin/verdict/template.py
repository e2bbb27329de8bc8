"""The versioned pairwise judge prompt: render a request, read a request back, parse a verdict.

A template file (`templates/<version>.txt`) has comment lines (`#`) then two sections,
`=== system ===` and `=== user ===`. The user section holds the placeholders `{question}`,
`{answer_1}` and `{answer_2}`, each exactly once. The verdict's first non-empty line must
hold exactly the two scores, Assistant 1's then Assistant 2's. A score outside the
template's scale (1-10) is not unparsable: `clamp_to_scale` moves it to the nearest end
and says so, and the caller counts it.

Examples:
    >>> parse_verdict("8 6\\nAssistant 1 is more detailed.")
    (8.0, 6.0)
    >>> clamp_to_scale(parse_verdict("0 7"))
    ((1.0, 7.0), True)
    >>> parse_verdict("Assistant 1: 8")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    UnparsableVerdictError: the verdict's first line must be two scores like `8 6`, got 'Assistant 1: 8'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_TEMPLATE = "pairwise_v1"
PLACEHOLDERS = ("question", "answer_1", "answer_2")
SCORE_MIN, SCORE_MAX = 1.0, 10.0

_SECTION = re.compile(r"^=== (system|user) ===$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(question|answer_1|answer_2)\}")
_NUMBER = r"(\d+(?:\.\d+)?)"
# "8 6", "8, 6", "8.5 7": two numbers and nothing else on the line.
_SCORE_LINE = re.compile(rf"^\s*{_NUMBER}\s*(?:,\s*|\s+){_NUMBER}\s*$")


class UnparsableVerdictError(ValueError):
    """The judge's answer does not start with two scores in range."""


@dataclass(frozen=True)
class JudgeTemplate:
    version: str  # the file's stem, e.g. `pairwise_v1`
    system: str
    user: str
    scale: tuple[float, float] = (SCORE_MIN, SCORE_MAX)  # what the user section asks for

    @property
    def sha(self) -> str:
        """16 hex chars over the text actually sent: an edit without a version bump still
        changes the cache key, and comment edits do not."""
        return hashlib.sha256(f"{self.system}\0{self.user}".encode("utf-8")).hexdigest()[:16]

    def render(self, question: str, answer_1: str, answer_2: str) -> list[dict[str, str]]:
        """The judge request's messages. One pass of substitution, so a placeholder that
        appears inside an answer is left as text."""
        values = {"question": question, "answer_1": answer_1, "answer_2": answer_2}
        user = _PLACEHOLDER.sub(lambda match: values[match.group(1)], self.user)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def parse_request(self, user_content: str) -> dict[str, str] | None:
        """The question and both answers of a rendered request, or None when `user_content`
        is not this template's request: what a program acting as judge needs."""
        match = self._request_pattern().fullmatch(user_content)
        return match.groupdict() if match else None

    def _request_pattern(self) -> re.Pattern:
        parts = _PLACEHOLDER.split(self.user)  # literal, name, literal, name, ...
        pattern = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*)" for i, part in enumerate(parts))
        return re.compile(pattern, re.DOTALL)


def load_template(version: str = DEFAULT_TEMPLATE, directory: str | Path = TEMPLATES_DIR) -> JudgeTemplate:
    """Read `<directory>/<version>.txt`.

    Raises:
        ValueError: the file is missing, or lacks a section or a placeholder.
    """
    path = Path(directory) / f"{version}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in Path(directory).glob("*.txt"))
        raise ValueError(f"no judge template `{version}` in {directory}; choose one of {known}.")
    text = path.read_text(encoding="utf-8")
    pieces = _SECTION.split(text)
    sections = {pieces[i]: pieces[i + 1].strip("\n") for i in range(1, len(pieces) - 1, 2)}
    if set(sections) != {"system", "user"}:
        raise ValueError(f"{path}: needs exactly one `=== system ===` and one `=== user ===` section.")
    for name in PLACEHOLDERS:
        if sections["user"].count(f"{{{name}}}") != 1:
            raise ValueError(f"{path}: the user section must contain `{{{name}}}` exactly once.")
    return JudgeTemplate(version, sections["system"], sections["user"])


def parse_verdict(text: str) -> tuple[float, float]:
    """(score of Assistant 1, score of Assistant 2) from the verdict's first non-empty line,
    as written: a score outside the scale is returned as is (see `clamp_to_scale`).

    Raises:
        UnparsableVerdictError: the line is not exactly two non-negative numbers.
    """
    first = next((line for line in text.splitlines() if line.strip()), "")
    match = _SCORE_LINE.match(first)
    if not match:
        raise UnparsableVerdictError(f"the verdict's first line must be two scores like `8 6`, got {first[:80]!r}")
    return float(match.group(1)), float(match.group(2))


def clamp_to_scale(scores: tuple[float, float], scale: tuple[float, float] = (SCORE_MIN, SCORE_MAX)
                   ) -> tuple[tuple[float, float], bool]:
    """`scores` moved into `scale` (a 0 on a 1-10 scale becomes 1), and whether any moved.
    Clamping keeps a verdict such as `0 8` for an empty answer instead of dropping its
    prompt, and keeps S + R > 0 for S/(S+R)."""
    low, high = scale
    clamped = (min(max(scores[0], low), high), min(max(scores[1], low), high))
    return clamped, clamped != tuple(scores)


def question_text(messages: Sequence[Mapping[str, str]]) -> str:
    """The `{question}` shown to the judge: a single user turn as is; a conversation
    (system prompt or earlier turns) as `Role: content` paragraphs, last user turn last."""
    if len(messages) == 1:
        return str(messages[0]["content"])
    return "\n\n".join(f"{str(m['role']).capitalize()}: {m['content']}" for m in messages)
