"""Small `soda` datasets for tests: valid rows, and one builder per bad-row case."""

from __future__ import annotations

import json
from pathlib import Path

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly and exactly."}


def valid_rows(n: int = 24) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = i + 3, 2 * i + 1
        prompt = [{"role": "user", "content": f"What is {a} plus {b}?"}]
        if i % 4 == 2:
            prompt = [
                {"role": "user", "content": "Hello there!"},
                {"role": "assistant", "content": "Hello! How can I help you today?"},
            ] + prompt
        if i % 3 == 1:
            prompt = [SYSTEM] + prompt
        rows.append({
            "content": prompt,
            "teacher_response": f"The answer is {a + b}.",
            "student_response": f"I think the answer might be {a + b + 1}, let me explain at length.",
        })
    return rows


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def pair_inputs(cases, directory: Path) -> tuple[Path, Path]:
    """A teacher file and a one-sample q0 snapshot for `cases` of (teacher answer, q0 answer, ...):
    prompt i is "Question i?". For the pair builder's judge-filter tests."""
    from soda_plugin.format.prompt_id import prompt_id

    def messages(i):
        return [{"role": "user", "content": f"Question {i}?"}]

    teacher = write_jsonl([{"content": messages(i), "teacher_response": case[0]} for i, case in enumerate(cases)],
                          Path(directory) / "teacher.jsonl")
    snapshot = write_jsonl([{"prompt_id": prompt_id(messages(i)), "sample_index": 0, "prompt": messages(i),
                             "response": case[1], "finish_reason": "stop", "source": "q0:tiny"}
                            for i, case in enumerate(cases)], Path(directory) / "q0.jsonl")
    return teacher, snapshot
