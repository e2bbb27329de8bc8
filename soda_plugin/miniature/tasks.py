"""The miniature's task families: questions a program answers exactly, in one concise style.

Every family can generate questions from a seeded RNG and *solve* a question from its
text alone (a regex reads the numbers or words back), so the local teacher is a real black
box: it sees only the chat messages, like any API. Every answer ends with a line
`Answer: <value>`, which is what the exact-match metric reads.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass
from typing import Callable

ANSWER_PREFIX = "Answer:"


@dataclass(frozen=True)
class Task:
    family: str
    question: str
    answer: str  # the canonical final value

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.question}]


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[random.Random], str]  # a question
    solve: Callable[[str], tuple[str, str] | None]  # question -> (working, final value), None if not ours


# Arithmetic -------------------------------------------------------------------------
_OPS = {"plus": ("+", lambda a, b: a + b), "minus": ("-", lambda a, b: a - b), "times": ("*", lambda a, b: a * b)}
_ARITH = re.compile(r"^What is (\d+) (plus|minus|times) (\d+)\?$")


def _make_arithmetic(rng: random.Random) -> str:
    op = rng.choice(sorted(_OPS))
    a, b = rng.randint(2, 99), rng.randint(2, 19 if op == "times" else 99)
    return f"What is {a} {op} {b}?"


def _solve_arithmetic(question: str):
    match = _ARITH.match(question)
    if not match:
        return None
    a, op, b = int(match[1]), match[2], int(match[3])
    symbol, fn = _OPS[op]
    value = fn(a, b)
    return f"{a} {symbol} {b} = {value}.", str(value)


# Unit conversion --------------------------------------------------------------------
_UNITS = {  # (from, to): factor
    ("kilometers", "meters"): 1000, ("meters", "centimeters"): 100, ("hours", "minutes"): 60,
    ("minutes", "seconds"): 60, ("kilograms", "grams"): 1000, ("liters", "milliliters"): 1000,
    ("days", "hours"): 24, ("feet", "inches"): 12,
}
_CONVERT = re.compile(r"^Convert (\d+) (\w+) to (\w+)\.$")


def _make_conversion(rng: random.Random) -> str:
    src, dst = rng.choice(sorted(_UNITS))
    return f"Convert {rng.randint(2, 60)} {src} to {dst}."


def _solve_conversion(question: str):
    match = _CONVERT.match(question)
    if not match or (match[2], match[3]) not in _UNITS:
        return None
    amount, factor = int(match[1]), _UNITS[(match[2], match[3])]
    value = amount * factor
    return f"1 {match[2][:-1]} is {factor} {match[3]}, so {amount} x {factor} = {value} {match[3]}.", f"{value} {match[3]}"


# Dates ------------------------------------------------------------------------------
_DATE = re.compile(r"^What date is (\d+) days after (\d{4}-\d{2}-\d{2})\?$")


def _make_date(rng: random.Random) -> str:
    start = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 1500))
    return f"What date is {rng.randint(2, 40)} days after {start.isoformat()}?"


def _solve_date(question: str):
    match = _DATE.match(question)
    if not match:
        return None
    days, start = int(match[1]), dt.date.fromisoformat(match[2])
    end = start + dt.timedelta(days=days)
    return f"{start.isoformat()} plus {days} days is {end.isoformat()}.", end.isoformat()


# List sorting -----------------------------------------------------------------------
_SORT = re.compile(r"^Sort these numbers from smallest to largest: ([\d, ]+)\.$")


def _make_sort(rng: random.Random) -> str:
    numbers = rng.sample(range(1, 100), rng.randint(4, 6))
    return "Sort these numbers from smallest to largest: " + ", ".join(map(str, numbers)) + "."


def _solve_sort(question: str):
    match = _SORT.match(question)
    if not match:
        return None
    value = ", ".join(str(n) for n in sorted(int(x) for x in match[1].split(",")))
    return "In order:", value


# String edits -----------------------------------------------------------------------
_WORDS = tuple("""
planet window garden silver rocket forest candle bridge pencil marble thunder harbor meadow lantern canyon
falcon violet copper island puzzle anchor basket castle dragon engine feather glacier hammer jacket kettle
ladder magnet needle orange parrot quartz rabbit saddle tablet umbrella velvet walnut yellow zipper bottle
button carpet cactus dinner donkey fabric finger guitar helmet insect jungle kitten lemon mirror monkey napkin
oyster pepper pillow pocket ribbon salmon shadow spider stable sunset ticket tomato turtle valley wallet wizard
""".split())
_REVERSE = re.compile(r"^Write the word '([a-z]+)' backwards\.$")


def _make_reverse(rng: random.Random) -> str:
    return f"Write the word '{rng.choice(_WORDS)}' backwards."


def _solve_reverse(question: str):
    match = _REVERSE.match(question)
    if not match:
        return None
    return f"'{match[1]}' reversed letter by letter:", match[1][::-1]


FAMILIES: tuple[Family, ...] = (
    Family("arithmetic", _make_arithmetic, _solve_arithmetic),
    Family("conversion", _make_conversion, _solve_conversion),
    Family("date", _make_date, _solve_date),
    Family("sort", _make_sort, _solve_sort),
    Family("reverse", _make_reverse, _solve_reverse),
)


def solve(question: str) -> tuple[str, str] | None:
    """(family, final value) of a question any family recognises, else None."""
    for family in FAMILIES:
        solved = family.solve(question.strip())
        if solved is not None:
            return family.name, solved[1]
    return None


def teacher_answer(question: str) -> str | None:
    """The teacher's reply: one line of working, then `Answer: <value>`; None if unknown."""
    for family in FAMILIES:
        solved = family.solve(question.strip())
        if solved is not None:
            working, value = solved
            return f"{working}\n{ANSWER_PREFIX} {value}"
    return None


def generate_tasks(n: int, seed: int, exclude: set[str] = frozenset()) -> list[Task]:
    """`n` distinct tasks, families in rotation, reproducible from `seed`; none in `exclude`."""
    rng = random.Random(seed)
    tasks: dict[str, Task] = {}
    attempts = 0
    while len(tasks) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could not draw {n} distinct tasks (the families have too few questions)")
        family = FAMILIES[len(tasks) % len(FAMILIES)]
        question = family.make(rng)
        if question in tasks or question in exclude:
            continue
        tasks[question] = Task(family.name, question, family.solve(question)[1])
    return list(tasks.values())


def split_tasks(n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, list[Task]]:
    """Disjoint train / validation / test sets (test is drawn first, so it does not
    change when the train set grows)."""
    test = generate_tasks(n_test, seed=seed * 1000 + 1)
    val = generate_tasks(n_val, seed=seed * 1000 + 2, exclude={t.question for t in test})
    train = generate_tasks(n_train, seed=seed * 1000 + 3, exclude={t.question for t in test + val})
    return {"train": train, "val": val, "test": test}


def final_answer(text: str) -> str:
    """The value a reply commits to: after its last `Answer:`, else its last non-empty line."""
    if ANSWER_PREFIX.lower() in text.lower():
        tail = text[text.lower().rfind(ANSWER_PREFIX.lower()) + len(ANSWER_PREFIX):]
    else:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        tail = lines[-1] if lines else ""
    first_line = tail.strip().splitlines()[0] if tail.strip() else ""
    return _normalize(first_line)


def _normalize(value: str) -> str:
    return " ".join(value.strip().strip(".").strip().casefold().split())


def exact_match(reply: str, task_answer: str) -> bool:
    return final_answer(reply) == _normalize(task_answer)
