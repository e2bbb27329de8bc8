"""Answer prompts with one engine, shard by shard, each shard written atomically (`store.py`).

Every launcher (`launchers.py`, `ray_launcher.py`) ends here or writes the same rows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..log import get_logger
from . import store
from .engine import SamplingSettings, SnapshotEngine, prompt_token_limit
from .records import SnapshotRow

LOG = get_logger(__name__)

Todo = Sequence[tuple[str, list[dict[str, str]]]]  # (prompt id, messages) still to answer


@dataclass(frozen=True)
class ShardJob:
    """Where and how a launcher writes its answers (the same for every engine of a run)."""

    out_dir: Path
    settings: SamplingSettings
    source: str
    shard_size: int
    max_prompt_tokens: int | None = None
    progress: bool = True


@dataclass
class Generated:
    """What a launcher wrote this run: answer rows, their completion tokens, those cut at
    `max_tokens`."""

    written: int = 0
    tokens: int = 0
    truncated: int = 0

    def add(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.written += 1
            self.tokens += max(row["response_tokens"], 0)
            self.truncated += row["finish_reason"] == "length"


def snapshot_rows(pid: str, messages: list[dict[str, str]], completions: Sequence, source: str) -> list[dict]:
    """One prompt's `n` snapshot rows."""
    return [SnapshotRow(
        prompt_id=pid, sample_index=sample, prompt=messages, response=c.text, finish_reason=c.finish_reason.value,
        prompt_tokens=c.prompt_tokens, response_tokens=c.completion_tokens, source=source,
    ).to_dict() for sample, c in enumerate(completions)]


def split_too_long(engine: SnapshotEngine, todo: Todo, max_prompt_tokens: int | None
                   ) -> tuple[list[tuple[str, list[dict[str, str]]]], list[dict]]:
    """(`todo` within the prompt-token limit, a `too_long*.jsonl` record for each prompt over it)."""
    limit = prompt_token_limit(engine, max_prompt_tokens)
    counts = engine.prompt_token_counts([messages for _, messages in todo]) if limit and todo else None
    if counts is None:
        return list(todo), []
    kept = [item for item, count in zip(todo, counts) if count <= limit]
    too_long = [{"prompt_id": pid, "prompt_tokens": count, "limit": limit, "prompt": messages}
                for (pid, messages), count in zip(todo, counts) if count > limit]
    return kept, too_long


def warn_too_long(left_out: int, of: int, listed_in: Path) -> None:
    if left_out:
        LOG.warning("snapshot: %d of %d prompts are over the prompt-token limit and are left out; listed in %s",
                    left_out, of, listed_in)


def leave_out_too_long(engine: SnapshotEngine, todo: Todo, out_dir: Path, max_prompt_tokens: int | None,
                       shard_prefix: str = "") -> list[tuple[str, list[dict[str, str]]]]:
    """`todo` without the prompts over the limit; those are listed in `too_long*.jsonl`
    with their length and logged, never dropped silently."""
    kept, too_long = split_too_long(engine, todo, max_prompt_tokens)
    store.write_too_long(out_dir, too_long, shard_prefix)
    warn_too_long(len(too_long), len(todo), store.too_long_path(out_dir, shard_prefix))
    return kept


def generate_shards(engine: SnapshotEngine, todo: Todo, job: ShardJob, *, shard_prefix: str = "",
                    done_before: int = 0, total: int | None = None, progress: bool | None = None) -> Generated:
    """Answer `todo` shard by shard into `job.out_dir`; prompts over the limit are listed, not answered."""
    from tqdm.auto import tqdm

    todo = leave_out_too_long(engine, todo, job.out_dir, job.max_prompt_tokens, shard_prefix)
    started = time.perf_counter()
    generated = Generated()
    bar = tqdm(total=total if total is not None else len(todo), initial=done_before, desc="q0 snapshot",
               unit="prompt", disable=not (job.progress if progress is None else progress))
    shard = store.next_shard_index(job.out_dir, shard_prefix)
    for start in range(0, len(todo), job.shard_size):
        chunk = todo[start : start + job.shard_size]
        answers = engine.generate([messages for _, messages in chunk], job.settings, [pid for pid, _ in chunk])
        rows = [row for (pid, messages), completions in zip(chunk, answers)
                for row in snapshot_rows(pid, messages, completions, job.source)]
        store.write_shard(job.out_dir, shard, rows, prefix=shard_prefix)
        shard += 1
        generated.add(rows)
        bar.update(len(chunk))
        bar.set_postfix(tok_s=f"{generated.tokens / max(time.perf_counter() - started, 1e-9):.1f}")
    bar.close()
    return generated


def count_answers(out_dir: Path, prompt_ids: set[str]) -> Generated:
    """The tally of the rows on disk for `prompt_ids` (what other processes wrote)."""
    counted = Generated()
    counted.add(row for row in store.iter_rows(out_dir) if row["prompt_id"] in prompt_ids)
    return counted
