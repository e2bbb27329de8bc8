"""On-disk layout of a snapshot run, written so that a kill at any moment loses nothing.

    <dir>/run.json                  manifest: model, backend, engine version, sampling, times
    <dir>/shards/shard-000000.jsonl complete shards only; each is written to a temp file,
                                    fsynced and renamed, so a half-written shard is never
                                    read (its temp name does not match `shard-*.jsonl`)
    <dir>/too_long.jsonl            prompts left out of the last run because they exceed
                                    the prompt-token limit (one file per data-parallel rank:
                                    `too_long-r003-.jsonl`); rewritten by every run

Every shard holds all `n` samples of the prompts it covers, so a prompt is either done
(all its rows in one complete shard) or not started.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..format.fileio import atomic_write_text

MANIFEST = "run.json"
SHARDS = "shards"
SHARD_GLOB = "shard-*.jsonl"


def shard_paths(directory: str | os.PathLike) -> list[Path]:
    return sorted((Path(directory) / SHARDS).glob(SHARD_GLOB))


def next_shard_index(directory: str | os.PathLike, prefix: str = "") -> int:
    """The next free index among shards named `shard-<prefix><index>.jsonl`.

    Data-parallel ranks write with their own prefix (`r003-`), so they never collide.
    """
    indices = [
        int(path.stem[len("shard-") + len(prefix):])
        for path in shard_paths(directory)
        if path.stem.startswith(f"shard-{prefix}") and path.stem[len("shard-") + len(prefix):].isdigit()
    ]
    return max(indices) + 1 if indices else 0


def write_shard(directory: str | os.PathLike, index: int, rows: Iterable[dict[str, Any]], prefix: str = "") -> Path:
    path = Path(directory) / SHARDS / f"shard-{prefix}{index:06d}.jsonl"
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def iter_rows(directory: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Rows of every complete shard, in shard order."""
    for path in shard_paths(directory):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


def done_prompt_ids(directory: str | os.PathLike) -> set[str]:
    return {row["prompt_id"] for row in iter_rows(directory)}


def too_long_path(directory: str | os.PathLike, prefix: str = "") -> Path:
    return Path(directory) / (f"too_long-{prefix}.jsonl" if prefix else "too_long.jsonl")


def write_too_long(directory: str | os.PathLike, rows: list[dict[str, Any]], prefix: str = "") -> None:
    path = too_long_path(directory, prefix)
    if rows:
        atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    elif path.exists():
        path.unlink()


def count_too_long(directory: str | os.PathLike) -> int:
    return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in Path(directory).glob("too_long*.jsonl"))


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(directory) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(directory) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
