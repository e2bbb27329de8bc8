"""Text metrics of model answers in the miniature.

The teacher always answers with exactly one line, `Answer: <value>`. These functions
measure how a model's greedy answers differ from that style: whether they keep the format,
stop, ramble past the answer, restate the question, how long they run relative to the
teacher, and how far they moved from a reference model's answers. All are pure functions
of the text and the snapshot rows (`prompt_id`, `response`, `finish_reason`,
`response_tokens`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

_FORMAT = re.compile(r"Answer: \S[^\n]*")
RESTATE_NGRAM = 4


# Per-answer predicates -----------------------------------------------------------------

def follows_format(response: str) -> bool:
    """True iff the stripped response is exactly one line `Answer: <value>`."""
    return _FORMAT.fullmatch(response.strip()) is not None


def _is_answer_line(line: str) -> bool:
    return line.lstrip().casefold().startswith("answer:")


def has_answer_line(response: str) -> bool:
    """True iff some line starts (after leading whitespace) with `Answer:`, case-insensitive."""
    return any(_is_answer_line(line) for line in response.splitlines())


def rambles(response: str) -> bool:
    """True iff there is an `Answer:` line and non-whitespace text follows the end of the first one.

    Text on the `Answer:` line itself does not count, nor does a response with no
    `Answer:` line (that is a format failure, measured by `has_answer_line`).
    """
    lines = response.splitlines()
    for index, line in enumerate(lines):
        if _is_answer_line(line):
            return any(rest.strip() for rest in lines[index + 1:])
    return False


def _words(text: str) -> list[str]:
    """Casefolded words of `text`, every character but letters, digits and spaces read as a space."""
    return "".join(c if c.isalnum() else " " for c in text.casefold()).split()


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def restates(question: str, response: str) -> bool:
    """True iff a 4-word n-gram of the question appears contiguously in the response.

    Words are lowercased with punctuation read as spaces. A question shorter than four
    words counts as restated when all of it appears contiguously in the response.
    """
    q_words, r_words = _words(question), _words(response)
    if not q_words:
        return False
    n = min(RESTATE_NGRAM, len(q_words))
    return not _ngrams(q_words, n).isdisjoint(_ngrams(r_words, n))


def normalized(response: str) -> str:
    """The response casefolded, with whitespace runs collapsed to one space, stripped."""
    return " ".join(response.casefold().split())


def _levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """Edit distance (insert, delete, substitute) between two token sequences."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, token_a in enumerate(a, start=1):
        current = [i]
        for j, token_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (token_a != token_b)))
        previous = current
    return previous[-1]


def token_edit_distance(a: str, b: str) -> float:
    """Levenshtein distance over whitespace tokens of the normalized strings, over the longer length; in [0, 1]."""
    tokens_a, tokens_b = normalized(a).split(), normalized(b).split()
    longest = max(len(tokens_a), len(tokens_b))
    if longest == 0:
        return 0.0
    return _levenshtein(tokens_a, tokens_b) / longest


# Aggregates ----------------------------------------------------------------------------

@dataclass
class AnswerMetrics:
    """Text figures of one run's answers; rates are percentages (0-100)."""

    n: int
    stop_rate: float
    truncation_rate: float
    format_rate: float
    answer_line_rate: float
    ramble_rate: float
    restate_rate: float
    mean_tokens: float
    length_ratio: float  # mean over prompts of response tokens / teacher tokens
    over_2x_teacher_rate: float

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return asdict(self)


@dataclass
class Movement:
    """How far one run's answers moved from a reference run's on the same prompts."""

    changed_rate: float  # % of prompts whose normalized response differs
    mean_edit_distance: float  # mean token edit distance, 0-1
    n: int

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return asdict(self)


def _rows_for(rows: Mapping[str, dict], prompt_ids: Iterable[str], what: str = "rows") -> list[dict]:
    """The rows of `prompt_ids` in order; a missing one raises ValueError naming it."""
    out = []
    for pid in prompt_ids:
        if pid not in rows:
            raise ValueError(f"{what} have no answer for prompt_id {pid!r}")
        out.append(rows[pid])
    if not out:
        raise ValueError("no prompt ids to measure")
    return out


def _percent(flags: Sequence[bool]) -> float:
    return 100.0 * sum(flags) / len(flags)


def _teacher_tokens(teacher_tokens: Mapping[str, int], prompt_ids: Sequence[str]) -> list[int]:
    """Teacher answer lengths of `prompt_ids`; a missing or non-positive one raises ValueError."""
    out = []
    for pid in prompt_ids:
        if pid not in teacher_tokens:
            raise ValueError(f"teacher_tokens has no entry for prompt_id {pid!r}")
        if teacher_tokens[pid] <= 0:
            raise ValueError(f"teacher_tokens[{pid!r}] must be positive, got {teacher_tokens[pid]}")
        out.append(int(teacher_tokens[pid]))
    return out


def answer_metrics(rows: Mapping[str, dict], questions: Mapping[str, str],
                   teacher_tokens: Mapping[str, int]) -> AnswerMetrics:
    """`AnswerMetrics` of `rows` (prompt_id -> snapshot row) over every prompt id in `questions`."""
    prompt_ids = list(questions)
    answers = _rows_for(rows, prompt_ids)
    teacher = _teacher_tokens(teacher_tokens, prompt_ids)
    responses = [row["response"] for row in answers]
    tokens = [int(row["response_tokens"]) for row in answers]
    return AnswerMetrics(
        n=len(answers),
        stop_rate=_percent([row["finish_reason"] == "stop" for row in answers]),
        truncation_rate=_percent([row["finish_reason"] == "length" for row in answers]),
        format_rate=_percent([follows_format(r) for r in responses]),
        answer_line_rate=_percent([has_answer_line(r) for r in responses]),
        ramble_rate=_percent([rambles(r) for r in responses]),
        restate_rate=_percent([restates(questions[pid], r) for pid, r in zip(prompt_ids, responses)]),
        mean_tokens=sum(tokens) / len(tokens),
        length_ratio=sum(t / t_ref for t, t_ref in zip(tokens, teacher)) / len(tokens),
        over_2x_teacher_rate=_percent([t > 2 * t_ref for t, t_ref in zip(tokens, teacher)]),
    )


def movement(rows: Mapping[str, dict], reference_rows: Mapping[str, dict],
             prompt_ids: Iterable[str]) -> Movement:
    """How many of `rows`' answers differ from `reference_rows`' (normalized), and by how much."""
    prompt_ids = list(prompt_ids)
    answers = [row["response"] for row in _rows_for(rows, prompt_ids)]
    references = [row["response"] for row in _rows_for(reference_rows, prompt_ids, "reference rows")]
    pairs = list(zip(answers, references))
    return Movement(changed_rate=_percent([normalized(a) != normalized(r) for a, r in pairs]),
                    mean_edit_distance=sum(token_edit_distance(a, r) for a, r in pairs) / len(pairs),
                    n=len(pairs))
