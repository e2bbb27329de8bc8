"""An append-only JSONL cache: a kill loses at most the line being written, never a paid
answer already recorded, and a half-written last line is ignored (and counted) on load."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_key(payload: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a request (never includes credentials)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class JsonlCache:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[str, Any] = {}
        self.torn_lines = 0
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        self.torn_lines += 1  # a write cut by a kill
                        continue
                    self.entries[record["key"]] = record["value"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> Any:
        return self.entries.get(key)

    def put(self, key: str, value: Any) -> None:
        if self.torn_lines and self.path.stat().st_size and not self._ends_with_newline():
            self._handle.write("\n")  # start after a torn line, never glued to it
        self._handle.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.entries[key] = value

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def close(self) -> None:
        self._handle.close()
