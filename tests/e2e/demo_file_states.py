"""What a re-run did to files already on disk, read from the files themselves (for the resume
tests: `test_demo_resume.py`, `test_snapshot_tool.py`, `test_judge_tool.py`)."""

import hashlib
from pathlib import Path

from soda_plugin.snapshot import store


def file_state(path: Path) -> tuple[str, int, int]:
    """Content hash, inode and mtime: equal before and after only if the file was neither
    rewritten nor replaced."""
    stat = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_ino, stat.st_mtime_ns


def shard_states(folder: Path) -> dict[Path, tuple[str, int, int]]:
    """Each complete shard of a snapshot (or answers) folder -> its `file_state`."""
    return {path: file_state(path) for path in store.shard_paths(folder)}
