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
