"""A program that plays the judge model behind `chat_server.ChatServer`.

Reference requests (no judge system prompt) get `reference q=8 for: <prompt>` (another
quality with `reference_quality`). Judge requests are read back with the template's own
`parse_request`; each answer's score is the `q=N` it contains (5 without one; `q=0` gives a
0, outside the scale), or its `qf=N` when it is shown first, written as the template asks:
`S1 S2` then an explanation; `qf=N` and `q=A/B` (A as Assistant 1, B as Assistant 2) play a
judge with a position bias. An answer containing `BADk` makes the first k verdicts on that
exact request unparsable; `ALWAYSBAD` makes every one unparsable. `questions` and
`reference_prompts` record what the judge was shown and asked.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

from chat_server import Reply
from soda_plugin.verdict import load_template

TEMPLATE = load_template()
REFERENCE_QUALITY = 8


def quality(answer: str, position: int = 2) -> int:
    """The score of `answer` shown as Assistant `position` (1 or 2)."""
    biased = re.search(r"q=(\d+)/(\d+)", answer)
    if biased:
        return int(biased.group(position))
    first = re.search(r"qf=(\d+)", answer)
    if position == 1 and first:
        return int(first.group(1))
    match = re.search(r"q=(\d+)", answer)
    return int(match.group(1)) if match else 5


def reference_text(prompt: str, reference_quality: int = REFERENCE_QUALITY) -> str:
    return f"reference q={reference_quality} for: {prompt}"


class JudgeResponder:
    def __init__(self, reference_quality: int = REFERENCE_QUALITY):
        self.reference_quality = reference_quality
        self.lock = threading.Lock()
        self.verdict_requests: Counter = Counter()  # user content -> judge requests seen
        self.reference_requests = 0
        self.reference_prompts: list[str] = []
        self.questions: set[str] = set()

    def __call__(self, request: dict) -> Reply:
        messages = request["messages"]
        parts = TEMPLATE.parse_request(messages[-1]["content"]) if messages[0]["content"] == TEMPLATE.system else None
        if parts is None:
            with self.lock:
                self.reference_requests += 1
                self.reference_prompts.append(messages[-1]["content"])
            return Reply(reference_text(messages[-1]["content"], self.reference_quality), "stop", 10, 20)
        with self.lock:
            self.questions.add(parts["question"])
            self.verdict_requests[messages[-1]["content"]] += 1
            seen = self.verdict_requests[messages[-1]["content"]]
        answers = parts["answer_1"] + parts["answer_2"]
        bad = re.search(r"BAD(\d+)", answers)
        if "ALWAYSBAD" in answers or (bad and seen <= int(bad.group(1))):
            return Reply("Both assistants did well overall.", "stop", 50, 8)
        verdict = f"{quality(parts['answer_1'], 1)} {quality(parts['answer_2'], 2)}\nAssistant 1 and 2 compared."
        return Reply(verdict, "stop", 50, 8)
