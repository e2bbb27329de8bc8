"""Run a q0 snapshot: dedupe prompts, skip those already done, generate shard by shard,
record provenance. Killing it at any moment and re-running it finishes the job with no
prompt lost and none duplicated (see `store.py`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..cost.recorder import CostRecorder
from ..log import get_logger
from ..format.prompt_id import prompt_id
from . import store
from .engine import Messages, SamplingSettings, SnapshotEngine
from .launchers import LAUNCHER_MANIFEST_KEYS, Launcher, as_launcher
from .records import SEEDING, SNAPSHOT_SCHEMA_VERSION
from .shards import ShardJob

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
    too_long: int = 0  # prompts left out: longer than the prompt-token limit (listed in too_long*.jsonl)

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        return (
            f"snapshot: {self.prompts_generated} prompts generated now, {self.prompts_done_before} already done, "
            f"{self.prompts_total} in all ({self.duplicates_dropped} duplicate prompts dropped); "
            f"{self.answers_written} answers, {self.completion_tokens} tokens in {self.seconds:.1f} s "
            f"= {self.tokens_per_second:.1f} tok/s; {self.truncated} answers truncated at max_tokens"
            + (f"; {self.too_long} prompts left out as too long (listed in too_long*.jsonl)" if self.too_long else "")
        )


def unique_prompts(prompts: Sequence[Messages]) -> tuple[list[tuple[str, list[dict[str, str]]]], int]:
    seen: dict[str, list[dict[str, str]]] = {}
    for messages in prompts:
        seen.setdefault(prompt_id(messages), [dict(m) for m in messages])
    return list(seen.items()), len(prompts) - len(seen)


def missing_prompts(items: Sequence[tuple[str, list[dict[str, str]]]],
                    out_dir: str | Path) -> list[tuple[str, list[dict[str, str]]]]:
    """The (id, messages) of `items` that no complete shard in `out_dir` holds yet, in order:
    what a run (or a resume, with any launcher) still has to generate."""
    done = store.done_prompt_ids(out_dir)
    return [(pid, messages) for pid, messages in items if pid not in done]


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
    launcher: SnapshotEngine | Launcher,
    prompts: Sequence[Messages],
    out_dir: str | Path,
    settings: SamplingSettings,
    *,
    source: str,
    revision: str | None = None,
    shard_size: int = 256,
    progress: bool = True,
    max_prompt_tokens: int | None = None,
) -> SnapshotSummary:
    """Generate `settings.n` answers for every prompt not yet in `out_dir`.

    `launcher`: an engine (answers in this process), or a `launchers.DataParallel` or
    `ray_launcher.RayLaunch` whose engines run elsewhere. Prompts longer than
    `max_prompt_tokens` (or than the engine's context) are left out and listed in
    `out_dir/too_long*.jsonl`; a later run with a higher limit takes them.
    """
    launcher = as_launcher(launcher)
    out_dir = Path(out_dir)
    items, duplicates = unique_prompts(prompts)
    info = launcher.info
    identity = {"model": info.model, "revision": revision, "backend": info.backend,
                "sampling": settings.to_dict(), "source": source, "schema": SNAPSHOT_SCHEMA_VERSION,
                "seeding": None if settings.greedy else SEEDING}
    manifest = store.read_manifest(out_dir)
    _check_same_run(manifest, identity)
    todo = missing_prompts(items, out_dir)
    done = len(items) - len(todo)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest = {key: value for key, value in (manifest or {"started_at": now, "resumed_at": []}).items()
                if key not in LAUNCHER_MANIFEST_KEYS}
    manifest.update(identity, engine_version=info.engine_version, engine=info.extra, prompts_total=len(items),
                    status="running", **launcher.manifest())
    if done:
        manifest["resumed_at"] = [*manifest.get("resumed_at", []), now]
    store.write_manifest(out_dir, manifest)

    job = ShardJob(out_dir, settings, source, shard_size, max_prompt_tokens, progress)
    started = time.perf_counter()
    with CostRecorder(out_dir, stage="snapshot", gpus=launcher.gpus()) as recorder:
        generated = launcher.generate(todo, job, done_before=done, total=len(items))
        recorder.gpus = launcher.gpus_used(generated)
        manifest.update(launcher.manifest(generated))
    seconds = time.perf_counter() - started
    too_long = store.count_too_long(out_dir)
    summary = SnapshotSummary(len(items), done, len(todo) - too_long, duplicates, generated.written,
                              generated.tokens, generated.truncated, seconds, too_long)
    store.write_manifest(out_dir, {**manifest, "status": "complete",
                                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   "last_run": summary.__dict__})
    LOG.info(summary.report())
    return summary
