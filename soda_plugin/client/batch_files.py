"""Batch request files: one line per request (custom id + the chat-completions body the
online client sends), cut into files within the provider's limits (OpenAI: 50,000
requests and 200 MB per file)."""

from __future__ import annotations

import json
from typing import Iterable, Iterator, Sequence

from .batch_api import BATCH_ENDPOINT

Messages = list[dict[str, str]]


def request_line(pid: str, body: dict) -> bytes:
    """`body` is the chat-completions body (`model`, `messages`, sampling)."""
    line = {"custom_id": pid, "method": "POST", "url": BATCH_ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")


def split_requests(lines: Iterable[tuple[str, bytes]], *, max_requests: int, max_bytes: int,
                   too_large: list[tuple[str, int]]) -> Iterator[list[tuple[str, bytes]]]:
    """Consecutive files of at most `max_requests` lines and `max_bytes` bytes, built one
    at a time (only the file being uploaded is in memory); the `(prompt_id, bytes)` of
    each line too large for any file goes to `too_large` (reported, never sent).

    Examples:
        >>> too_large = []
        >>> files = split_requests([("a", b"x" * 4), ("b", b"y" * 4), ("c", b"z" * 9)], max_requests=5,
        ...                        max_bytes=8, too_large=too_large)
        >>> [[pid for pid, _ in f] for f in files], too_large
        ([['a', 'b']], [('c', 9)])
    """
    if max_requests < 1 or max_bytes < 1:
        raise ValueError(f"`--batch-max-requests` ({max_requests}) and `--batch-max-bytes` ({max_bytes}) must be >= 1.")
    current: list[tuple[str, bytes]] = []
    size = 0
    for pid, line in lines:
        if len(line) > max_bytes:
            too_large.append((pid, len(line)))
            continue
        if current and (len(current) == max_requests or size + len(line) > max_bytes):
            yield current
            current, size = [], 0
        current.append((pid, line))
        size += len(line)
    if current:
        yield current


def file_bytes(lines: Sequence[tuple[str, bytes]]) -> bytes:
    return b"".join(line for _, line in lines)


__all__ = ["file_bytes", "request_line", "split_requests"]
