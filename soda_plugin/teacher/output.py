"""The teacher output file, appended one answer at a time so that no kill loses a paid
answer and a re-run asks only for what is missing.

Each answer is one JSON line, written with a single `write` and flushed at once: once
`append` returns, the row is in the kernel and survives any kill of this process
(SIGKILL included). The file is fsynced at most every `fsync_interval_s` and on close, so
a machine crash loses at most that last interval, which the re-run asks again. A line
cut by a crash mid-write can only be the last one; opening the file for appending cuts it
off (and counts it) so that the file stays valid JSON lines for the pair builder.

Beside the output, `<out>.run.json` records what made the answers (model, sampling,
system prompt); resuming with other settings is refused rather than mixing answers.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..format.fileio import atomic_write_text
from ..format.rows import TeacherFields
from .records import COMPLETION_TOKENS


class OutputMismatchError(RuntimeError):
    """The output file holds answers made with other settings."""


@dataclass
class ExistingOutput:
    """What an output file already holds."""

    done: set[str] = field(default_factory=set)
    rows: int = 0
    duplicate_rows: int = 0
    completion_tokens: int = 0  # over rows with a known count, for the dry-run estimate
    rows_with_tokens: int = 0
    torn_tail_bytes: int = 0  # bytes of a half-written last line
    good_end: int = 0  # offset just past the last complete line

    @property
    def mean_completion_tokens(self) -> float | None:
        return self.completion_tokens / self.rows_with_tokens if self.rows_with_tokens else None


def _count_row(found: ExistingOutput, row: Any, fields: TeacherFields, path: Path, number: int) -> None:
    pid = row.get(fields.prompt_id) if isinstance(row, dict) else None
    if not isinstance(pid, str) or not pid:
        raise ValueError(f"{path}:{number}: no `{fields.prompt_id}`; is this a teacher output file?")
    found.rows += 1
    if pid in found.done:
        found.duplicate_rows += 1
    found.done.add(pid)
    tokens = row.get(COMPLETION_TOKENS)
    if isinstance(tokens, int) and tokens > 0:
        found.completion_tokens += tokens
        found.rows_with_tokens += 1


def read_existing(path: str | os.PathLike, fields: TeacherFields = TeacherFields()) -> ExistingOutput:
    """Scan an output file (read only). A bad line anywhere but at the end is an error:
    it is not a torn write of ours, and the builder would stop on it later."""
    path, found = Path(path), ExistingOutput()
    if not path.is_file():
        return found
    last_line = b""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            last_line = line
            try:
                row = json.loads(line) if line.strip() else None
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                if not line.endswith(b"\n"):  # only the file's last line can lack its newline
                    found.torn_tail_bytes = len(line)
                    return found
                raise ValueError(f"{path}:{number}: not a JSON line ({error}); only a last line may be half-written. "
                                 "Fix or remove that line, then re-run.") from error
            found.good_end += len(line)
            if row is not None:
                _count_row(found, row, fields, path, number)
    if last_line and not last_line.endswith(b"\n"):
        found.torn_tail_bytes = -1  # complete JSON missing only its newline: the newline is added
    return found


class TeacherOutputFile:
    """Append-only writer; `open` repairs a torn last line first."""

    def __init__(self, path: str | os.PathLike, fields: TeacherFields = TeacherFields(), *,
                 fsync_interval_s: float = 1.0):
        self.path = Path(path)
        self.fields = fields
        self.existing = read_existing(self.path, fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("ab")
        if self.existing.torn_tail_bytes > 0:
            self._handle.truncate(self.existing.good_end)
        elif self.existing.torn_tail_bytes < 0:
            self._handle.write(b"\n")
        self._fsync_interval_s = fsync_interval_s
        self._last_fsync = time.monotonic()
        self.written = 0

    def append(self, row: dict[str, Any]) -> None:
        self._handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        self._handle.flush()
        self.written += 1
        if time.monotonic() - self._last_fsync >= self._fsync_interval_s:
            self.sync()

    def sync(self) -> None:
        """Make every row appended so far durable (before a journal says they are written)."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._last_fsync = time.monotonic()

    def close(self) -> None:
        if self._handle.closed:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()


def manifest_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.run.json")


def check_and_write_manifest(out: str | os.PathLike, identity: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Refuse to append answers made with other settings; record this run's settings."""
    path = manifest_path(out)
    existing = json.loads(path.read_text()) if path.is_file() else None
    if existing is not None:
        changed = {k: (existing.get(k), v) for k, v in identity.items() if existing.get(k) != v}
        if changed:
            details = "; ".join(f"`{k}`: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise OutputMismatchError(
                f"`{out}` already holds answers made with other settings ({details}). Write to a new `--out`, "
                f"or delete `{out}` and `{path}` to start over.")
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest = {**(existing or {"started_at": now, "runs": []}), **identity, **extra}
    manifest["runs"] = [*manifest.get("runs", []), now]
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def finish_manifest(out: str | os.PathLike, manifest: dict[str, Any], summary: dict[str, Any]) -> None:
    atomic_write_text(manifest_path(out), json.dumps({**manifest, "last_run": summary}, indent=2, sort_keys=True))


__all__ = ["ExistingOutput", "OutputMismatchError", "TeacherOutputFile", "check_and_write_manifest",
           "finish_manifest", "manifest_path", "read_existing"]
