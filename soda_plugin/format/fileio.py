"""File helpers shared by the chain, the snapshot, the builder and the demo."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temp file beside `path`, fsync it, then rename it over `path`:
    a reader (or a re-run after a kill) sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def iter_json_lines(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """`(line number, value)` for each non-blank line of a JSON-lines file; a line that is
    not JSON comes as its `json.JSONDecodeError`, for the caller to raise or count."""
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, error


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file; a bad line is an error naming the file and line."""
    for number, value in iter_json_lines(path):
        if isinstance(value, json.JSONDecodeError):
            raise ValueError(f"{path}:{number}: not a JSON line ({value}); fix or remove that line.") from value
        yield value
