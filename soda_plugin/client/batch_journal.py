"""The batch core's journal (the teacher's is `<out stem>.batches.jsonl` beside its output,
the judge's `<cache dir>/batches.<phase>.jsonl`): what has been sent, so that a run killed
at any point (SIGKILL included) finds its batches again and never submits a request twice.
`prompt_ids` are the requests' custom ids (the teacher's prompt ids, the judge's cache keys).

One JSON line per event, fsynced before the run moves on:

    {"event": "file", "file_id": "file-1", "prompt_ids": ["3deb...", ...]}   after an upload
    {"event": "batch", "batch_id": "batch-1", "file_id": "file-1"}           after a batch is created
    {"event": "closed", "batch_id": "batch-1", "status": "expired", "rows": 80, "retry": {"expired": 20}}

A file with no batch is turned into one on resume (after looking for a batch the server
made from it before a kill); a batch with no `closed` line is polled again. A prompt is
sent again only once the batch that carried it is closed without a row for it. The
journal holds ids and counts only: never the API key, the base URL or the prompts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def journal_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.batches.jsonl")


@dataclass
class JournalState:
    files: dict[str, list[str]] = field(default_factory=dict)  # file id -> prompt ids, in upload order
    batch_of_file: dict[str, str] = field(default_factory=dict)
    closed: dict[str, dict[str, Any]] = field(default_factory=dict)  # batch id -> its closed event
    torn_tail_bytes: int = 0

    def open_batches(self) -> list[str]:
        return [b for b in self.batch_of_file.values() if b not in self.closed]

    def unbatched_files(self) -> list[str]:
        return [f for f in self.files if f not in self.batch_of_file]

    def in_flight(self) -> set[str]:
        """Prompt ids in a file not yet turned into a batch, or in a batch not yet closed."""
        open_files = [f for f, b in self.batch_of_file.items() if b not in self.closed] + self.unbatched_files()
        return {pid for f in open_files for pid in self.files[f]}

    def file_of(self, batch_id: str) -> str:
        return next(f for f, b in self.batch_of_file.items() if b == batch_id)

    def sent_in_closed_batches(self) -> set[str]:
        return {pid for f, b in self.batch_of_file.items() if b in self.closed for pid in self.files[f]}

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "file":
            self.files[event["file_id"]] = list(event["prompt_ids"])
        elif kind == "batch":
            self.batch_of_file[event["file_id"]] = event["batch_id"]
        elif kind == "closed":
            self.closed[event["batch_id"]] = event
        else:
            raise ValueError(f"unknown journal event {kind!r}")


def read_journal(path: str | os.PathLike) -> tuple[JournalState, int]:
    """The state a journal records (empty when there is none) and the length of its intact
    part; reads only (`torn_tail_bytes` > 0: a cut last line, -1: a last line without its
    newline)."""
    path, state, good_end = Path(path), JournalState(), 0
    if not path.is_file():
        return state, good_end
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                event = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                if not line.endswith(b"\n"):  # a write cut by a kill: only the last line
                    state.torn_tail_bytes = len(line)
                    break
                raise ValueError(f"{path}:{number}: not a JSON line ({error}); only a last line may "
                                 "be half-written. Fix or remove that line, then re-run.") from error
            state.apply(event)
            good_end += len(line)
            if not line.endswith(b"\n"):
                state.torn_tail_bytes = -1
                break
    return state, good_end


class BatchJournal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.state, good_end = read_journal(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("ab")
        if self.state.torn_tail_bytes > 0:
            self._handle.truncate(good_end)
        elif self.state.torn_tail_bytes < 0:
            self._handle.write(b"\n")

    def record(self, event: dict[str, Any]) -> None:
        """Apply `event` and make it durable before returning."""
        self._handle.write((json.dumps(event, sort_keys=True) + "\n").encode())
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.state.apply(event)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()


__all__ = ["BatchJournal", "JournalState", "journal_path", "read_journal"]
