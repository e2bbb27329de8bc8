"""A degraded rejection source for the ablation: another model's answers, cut short.

`degrade_snapshot` truncates each answer to a random fraction (at most `keep_fraction`,
at least half of it) of its words and marks it truncated. The other degradation of the
paper's ablation, high-temperature sampling, needs no code here: run the snapshot tool
with a high `--temperature` and give that snapshot to the builder with a label.

Degraded answers carry `finish_reason: length`, so build with `truncated: teacher_only`
(or `keep`); the default `drop` would drop them all.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..snapshot import store
from .reasons import TRUNCATED

DEGRADED_PREFIX = "degraded:"
ROWS_PER_SHARD = 10_000
_WORD = re.compile(r"\S+")


def degrade_text(text: str, fraction: float) -> str:
    """The first `max(1, round(words * fraction))` words of `text`, formatting kept."""
    ends = [m.end() for m in _WORD.finditer(text)]
    if not ends:
        return text
    return text[: ends[max(1, round(len(ends) * fraction)) - 1]]


def degrade_rows(rows: Iterable[dict[str, Any]], *, keep_fraction: float = 0.5, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Degraded copies of snapshot rows. The cut of each answer depends only on `seed`,
    its prompt_id and sample_index, so it does not change with row order."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"`keep_fraction` must be in (0, 1], got {keep_fraction}.")
    for row in rows:
        rng = random.Random(f"{seed}:{row['prompt_id']}:{row['sample_index']}")
        fraction = rng.uniform(keep_fraction / 2, keep_fraction)
        response = row.get("response") or ""
        cut = degrade_text(response, fraction)
        tokens = row.get("response_tokens") or 0
        yield {
            **row,
            "response": cut,
            "finish_reason": TRUNCATED,
            # Estimated: the answer was cut by words, not re-tokenized.
            "response_tokens": round(tokens * len(cut) / len(response)) if response else 0,
            "source": DEGRADED_PREFIX + str(row.get("source") or "unknown"),
        }


def degrade_snapshot(rows: Iterable[dict[str, Any]], directory: str | os.PathLike, *,
                     keep_fraction: float = 0.5, seed: int = 0,
                     source_manifest: dict[str, Any] | None = None) -> Path:
    """Write a degraded snapshot that the builder reads like any other.

    Args:
        rows: snapshot rows, e.g. `store.iter_rows(other_model_snapshot)`; all samples of a
            prompt must be adjacent (as a snapshot writes them).
        directory: the new snapshot directory (must not hold shards yet).
        source_manifest: the manifest of the snapshot `rows` come from, recorded inside.

    Examples:
        `{"response": "one two three four", "source": "q0:m", ...}` with `keep_fraction=0.5`
        becomes `{"response": "one two" (or "one"), "finish_reason": "length",
        "source": "degraded:q0:m", ...}`.
    """
    directory = Path(directory)
    if store.shard_paths(directory):
        raise FileExistsError(f"`{directory}` already holds snapshot shards; choose a new directory.")
    shard, batch, last_pid, written = 0, [], None, 0
    for row in degrade_rows(rows, keep_fraction=keep_fraction, seed=seed):
        # Shards end only between prompts: a shard holds all samples of its prompts.
        if len(batch) >= ROWS_PER_SHARD and row["prompt_id"] != last_pid:
            store.write_shard(directory, shard, batch)
            shard, batch = shard + 1, []
        batch.append(row)
        last_pid = row["prompt_id"]
        written += 1
    if batch:
        store.write_shard(directory, shard, batch)
    model = (source_manifest or {}).get("model")
    store.write_manifest(directory, {
        "backend": "degraded",
        "model": DEGRADED_PREFIX + str(model) if model else None,
        "degradation": {"method": "truncate_words", "keep_fraction": keep_fraction, "seed": seed},
        "sampling": (source_manifest or {}).get("sampling"),
        "degraded_from": source_manifest,
        "rows": written,
    })
    return directory
