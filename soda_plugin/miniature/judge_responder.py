"""The local teacher's judge role: it reads a request rendered from the judge template
(`soda_plugin.verdict.template`) and rates each answer on the task itself, like a strong
judge would: the right final value scores high (higher when about as concise as the
teacher's), a wrong or missing one scores low. Verdict format: "s1 s2", then a reason.
"""

from __future__ import annotations

from functools import lru_cache

from . import tasks

CORRECT, CORRECT_VERBOSE, WRONG, UNANSWERABLE = 10, 8, 2, 1


def rate(question: str, answer: str) -> int:
    """1-10 for `answer` to one of the miniature's questions."""
    solved = tasks.solve(question)
    if solved is None or not answer.strip():
        return UNANSWERABLE
    if not tasks.exact_match(answer, solved[1]):
        return WRONG
    teacher = tasks.teacher_answer(question) or ""
    return CORRECT if len(answer) <= 2 * len(teacher) else CORRECT_VERBOSE


@lru_cache(maxsize=None)
def _template():
    from ..verdict.template import load_template

    return load_template()


def judge_verdict(messages: list[dict]) -> str | None:
    """The verdict text for a judge request, or None when the request is not one."""
    user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    request = _template().parse_request(user)
    if request is None:
        return None
    question = request["question"].strip()
    s1, s2 = rate(question, request["answer_1"].strip()), rate(question, request["answer_2"].strip())
    return f"{s1} {s2}\nScored on whether each final value is correct, then on concision."
