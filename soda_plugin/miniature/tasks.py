"""The miniature's task families: questions a program answers exactly, in one concise style.

Every family can generate questions from a seeded RNG and *solve* a question from its
text alone (a regex reads the numbers or words back), so the local teacher is a real black
box: it sees only the chat messages, like any API. The teacher answers with one line,
`Answer: <value>`, which is what the exact-match metric reads.

The families are ones SmolLM2-135M-Instruct can already do or nearly do, but answers in
its own way: it reasons aloud past the answer, restates the question, does not stop, or
never commits to a final value (docs/miniature.md has the probe). Multi-digit arithmetic,
dates, sorting and spelling backwards were dropped: a 135M model does not learn those
algorithms from ~200 rows, so no method moved it and nothing could be compared.
"""

from __future__ import annotations

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
    solve: Callable[[str], str | None]  # question -> final value, None if not ours


# Arithmetic: one-step sums, differences and single-digit products -------------------
_OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
_ARITH = re.compile(r"^What is (\d+) (plus|minus|times) (\d+)\?$")


def _make_arithmetic(rng: random.Random) -> str:
    op = rng.choice(sorted(_OPS))
    if op == "plus":
        a, b = rng.randint(2, 49), rng.randint(2, 49)
    elif op == "minus":
        a = rng.randint(10, 60)
        b = rng.randint(2, a - 1)
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
    return f"What is {a} {op} {b}?"


def _solve_arithmetic(question: str) -> str | None:
    match = _ARITH.match(question)
    return str(_OPS[match[2]](int(match[1]), int(match[3]))) if match else None


# Successor / predecessor --------------------------------------------------------------
_NEXT = re.compile(r"^What number comes (after|before) (\d+)\?$")


def _make_successor(rng: random.Random) -> str:
    return f"What number comes {rng.choice(('after', 'before'))} {rng.randint(11, 998)}?"


def _solve_successor(question: str) -> str | None:
    match = _NEXT.match(question)
    return str(int(match[2]) + (1 if match[1] == "after" else -1)) if match else None


# Comparison ---------------------------------------------------------------------------
_COMPARE = re.compile(r"^Which number is (larger|smaller), (\d+) or (\d+)\?$")


def _make_compare(rng: random.Random) -> str:
    a, b = rng.sample(range(10, 100), 2)
    return f"Which number is {rng.choice(('larger', 'smaller'))}, {a} or {b}?"


def _solve_compare(question: str) -> str | None:
    match = _COMPARE.match(question)
    if not match:
        return None
    pick = max if match[1] == "larger" else min
    return str(pick(int(match[2]), int(match[3])))


# Unit conversion by powers of ten: copying digits and appending zeros ----------------
_UNITS = {  # (from, to): factor
    ("kilometers", "meters"): 1000, ("meters", "centimeters"): 100, ("centimeters", "millimeters"): 10,
    ("meters", "millimeters"): 1000, ("kilograms", "grams"): 1000, ("liters", "milliliters"): 1000,
    ("decades", "years"): 10, ("centuries", "years"): 100,
}
_CONVERT = re.compile(r"^Convert (\d+) (\w+) to (\w+)\.$")


def _make_conversion(rng: random.Random) -> str:
    src, dst = rng.choice(sorted(_UNITS))
    return f"Convert {rng.randint(2, 60)} {src} to {dst}."


def _solve_conversion(question: str) -> str | None:
    match = _CONVERT.match(question)
    if not match or (match[2], match[3]) not in _UNITS:
        return None
    return f"{int(match[1]) * _UNITS[(match[2], match[3])]} {match[3]}"


# First or last word of a list ----------------------------------------------------------
_WORDS = tuple("""
planet window garden silver rocket forest candle bridge pencil marble thunder harbor meadow lantern canyon
falcon violet copper island puzzle anchor basket castle dragon engine feather glacier hammer jacket kettle
ladder magnet needle orange parrot quartz rabbit saddle tablet umbrella velvet walnut yellow zipper bottle
button carpet cactus dinner donkey fabric finger guitar helmet insect jungle kitten lemon mirror monkey napkin
oyster pepper pillow pocket ribbon salmon shadow spider stable sunset ticket tomato turtle valley wallet wizard
""".split())
_PICK = re.compile(r"^What is the (first|last) word in this list: ([a-z, ]+)\?$")


def _make_pick(rng: random.Random) -> str:
    words = rng.sample(_WORDS, rng.randint(3, 5))
    return f"What is the {rng.choice(('first', 'last'))} word in this list: {', '.join(words)}?"


def _solve_pick(question: str) -> str | None:
    match = _PICK.match(question)
    if not match:
        return None
    words = [w.strip() for w in match[2].split(",")]
    return words[0] if match[1] == "first" else words[-1]


# Plurals: a curated table, so every question has one accepted answer ----------------
_IRREGULAR = {
    "child": "children", "mouse": "mice", "goose": "geese", "tooth": "teeth", "foot": "feet", "man": "men",
    "woman": "women", "person": "people", "ox": "oxen", "louse": "lice", "knife": "knives", "wife": "wives",
    "leaf": "leaves", "wolf": "wolves", "loaf": "loaves", "half": "halves", "shelf": "shelves", "thief": "thieves",
    "calf": "calves", "cactus": "cacti", "fungus": "fungi", "crisis": "crises", "analysis": "analyses",
    "potato": "potatoes", "hero": "heroes",
}
_REGULAR = """
cat dog book car tree river cloud chair table door house lamp phone road bird apple bottle pencil garden window
planet rocket candle bridge marble harbor lantern falcon island puzzle anchor basket castle dragon engine feather
hammer jacket kettle ladder magnet needle parrot rabbit saddle tablet umbrella wallet turtle ticket tomato_ pillow
ribbon spider sunset valley wizard button carpet dinner donkey finger guitar helmet insect kitten lemon mirror
monkey napkin pepper pocket shadow
""".replace("tomato_", "").split()
_SIBILANT = "box fox bus dish brush church bench watch glass class match peach beach dress kiss tax wish torch".split()
_CONSONANT_Y = "city baby party story lady puppy berry cherry body country family penny army pony fly".split()
PLURALS: dict[str, str] = {
    **{w: w + "s" for w in _REGULAR}, **{w: w + "es" for w in _SIBILANT},
    **{w: w[:-1] + "ies" for w in _CONSONANT_Y}, **_IRREGULAR,
}
_PLURAL = re.compile(r"^What is the plural of '([a-z]+)'\?$")


def _make_plural(rng: random.Random) -> str:
    return f"What is the plural of '{rng.choice(sorted(PLURALS))}'?"


def _solve_plural(question: str) -> str | None:
    match = _PLURAL.match(question)
    return PLURALS.get(match[1]) if match else None


FAMILIES: tuple[Family, ...] = (
    Family("arithmetic", _make_arithmetic, _solve_arithmetic),
    Family("successor", _make_successor, _solve_successor),
    Family("compare", _make_compare, _solve_compare),
    Family("conversion", _make_conversion, _solve_conversion),
    Family("pick", _make_pick, _solve_pick),
    Family("plural", _make_plural, _solve_plural),
)
FAMILY_NAMES = tuple(f.name for f in FAMILIES)


def solve(question: str) -> tuple[str, str] | None:
    """(family, final value) of a question any family recognises, else None."""
    for family in FAMILIES:
        value = family.solve(question.strip())
        if value is not None:
            return family.name, value
    return None


def teacher_answer(question: str) -> str | None:
    """The teacher's reply: the one line `Answer: <value>`; None if the question is not ours."""
    solved = solve(question)
    return None if solved is None else f"{ANSWER_PREFIX} {solved[1]}"


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
        tasks[question] = Task(family.name, question, family.solve(question))
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
