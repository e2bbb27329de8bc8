"""Run a q0 snapshot: dedupe prompts, skip those already done, generate shard by shard,
record provenance. Killing it at any moment and re-running it finishes the job with no
prompt lost and none duplicated (see `store.py`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..log import get_logger
from ..prompt_id import prompt_id
from . import store
from .engine import Messages, SamplingSettings, SnapshotEngine
from .records import SNAPSHOT_SCHEMA_VERSION, SnapshotRow

LOG = get_logger(__name__)


class SnapshotMismatchError(RuntimeError):
    """The output folder holds a snapshot made with other settings."""


@dataclass
class SnapshotSummary:
    prompts_total: int
    prompts_done_before: int
    prompts_generated: int
    duplicates_dropped: int
    answers_written: int
    completion_tokens: int
    truncated: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        return (
            f"snapshot: {self.prompts_generated} prompts generated now, {self.prompts_done_before} already done, "
            f"{self.prompts_total} in all ({self.duplicates_dropped} duplicate prompts dropped); "
            f"{self.answers_written} answers, {self.completion_tokens} tokens in {self.seconds:.1f} s "
            f"= {self.tokens_per_second:.1f} tok/s; {self.truncated} answers truncated at max_tokens"
        )


def unique_prompts(prompts: Sequence[Messages]) -> tuple[list[tuple[str, list[dict[str, str]]]], int]:
    seen: dict[str, list[dict[str, str]]] = {}
    for messages in prompts:
        seen.setdefault(prompt_id(messages), [dict(m) for m in messages])
    return list(seen.items()), len(prompts) - len(seen)


def _check_same_run(existing: dict | None, identity: dict) -> None:
    if existing is None:
        return
    changed = {k: (existing.get(k), v) for k, v in identity.items() if existing.get(k) != v}
    if changed:
        details = "; ".join(f"`{k}`: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise SnapshotMismatchError(
            f"the snapshot folder already holds answers made with other settings ({details}). "
            "Use a new output folder, or delete this one to start over."
        )


def run_snapshot(
    engine: SnapshotEngine,
    prompts: Sequence[Messages],
    out_dir: str | Path,
    settings: SamplingSettings,
    *,
    source: str,
    revision: str | None = None,
    shard_size: int = 256,
    progress: bool = True,
) -> SnapshotSummary:
    """Generate `settings.n` answers for every prompt not yet in `out_dir`."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    items, duplicates = unique_prompts(prompts)
    info = engine.info()
    identity = {"model": info.model, "revision": revision, "backend": info.backend,
                "sampling": settings.to_dict(), "source": source, "schema": SNAPSHOT_SCHEMA_VERSION}
    manifest = store.read_manifest(out_dir)
    _check_same_run(manifest, identity)
    done = store.done_prompt_ids(out_dir)
    todo = [(pid, messages) for pid, messages in items if pid not in done]
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest = {**(manifest or {"started_at": now, "resumed_at": []}), **identity,
                "engine_version": info.engine_version, "engine": info.extra, "prompts_total": len(items),
                "status": "running"}
    if done:
        manifest["resumed_at"] = [*manifest.get("resumed_at", []), now]
    store.write_manifest(out_dir, manifest)

    started = time.perf_counter()
    tokens = truncated = written = 0
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="q0 snapshot", unit="prompt", disable=not progress)
    shard = store.next_shard_index(out_dir)
    for start in range(0, len(todo), shard_size):
        chunk = todo[start : start + shard_size]
        answers = engine.generate([messages for _, messages in chunk], settings)
        rows = []
        for (pid, messages), completions in zip(chunk, answers):
            for sample, completion in enumerate(completions):
                rows.append(SnapshotRow(
                    prompt_id=pid, sample_index=sample, prompt=messages, response=completion.text,
                    finish_reason=completion.finish_reason.value, prompt_tokens=completion.prompt_tokens,
                    response_tokens=completion.completion_tokens, source=source,
                ).to_dict())
                tokens += max(completion.completion_tokens, 0)
                truncated += completion.finish_reason.value == "length"
        store.write_shard(out_dir, shard, rows)
        shard += 1
        written += len(rows)
        bar.update(len(chunk))
        bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - started, 1e-9):.1f}")
    bar.close()
    seconds = time.perf_counter() - started
    summary = SnapshotSummary(len(items), len(items) - len(todo), len(todo), duplicates, written, tokens, truncated, seconds)
    store.write_manifest(out_dir, {**manifest, "status": "complete",
                                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   "last_run": summary.__dict__})
    LOG.info(summary.report())
    return summary
