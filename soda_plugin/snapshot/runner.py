"""Run a q0 snapshot: dedupe prompts, skip those already done, generate shard by shard,
record provenance. Killing it at any moment and re-running it finishes the job with no
prompt lost and none duplicated (see `store.py`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..cost.recorder import CostRecorder
from ..log import get_logger
from ..format.prompt_id import prompt_id
from . import store
from .engine import EngineInfo, Messages, SamplingSettings, SnapshotEngine, prompt_token_limit
from .records import SEEDING, SNAPSHOT_SCHEMA_VERSION, SnapshotRow

if TYPE_CHECKING:
    from .ray_launcher import RayLaunch

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


def leave_out_too_long(engine: SnapshotEngine, todo: Sequence[tuple[str, list[dict[str, str]]]], out_dir: Path,
                       max_prompt_tokens: int | None, shard_prefix: str = "") -> list[tuple[str, list[dict[str, str]]]]:
    """`todo` without the prompts over the limit; those are listed in `too_long*.jsonl`
    with their length and logged, never dropped silently."""
    limit = prompt_token_limit(engine, max_prompt_tokens)
    counts = engine.prompt_token_counts([messages for _, messages in todo]) if limit and todo else None
    if counts is None:
        store.write_too_long(out_dir, [], shard_prefix)
        return list(todo)
    kept = [item for item, count in zip(todo, counts) if count <= limit]
    too_long = [{"prompt_id": pid, "prompt_tokens": count, "limit": limit, "prompt": messages}
                for (pid, messages), count in zip(todo, counts) if count > limit]
    store.write_too_long(out_dir, too_long, shard_prefix)
    if too_long:
        LOG.warning("snapshot: %d of %d prompts are longer than %d tokens and are left out; listed in %s",
                    len(too_long), len(todo), limit, store.too_long_path(out_dir, shard_prefix))
    return kept


def _generate_into(engine: SnapshotEngine, todo: Sequence[tuple[str, list[dict[str, str]]]], out_dir: Path,
                   settings: SamplingSettings, source: str, shard_size: int, progress: bool,
                   shard_prefix: str = "", done_before: int = 0, total: int | None = None,
                   max_prompt_tokens: int | None = None) -> tuple[int, int, int]:
    """Generate `todo` shard by shard; returns (answers written, completion tokens, truncated)."""
    from tqdm.auto import tqdm

    todo = leave_out_too_long(engine, todo, out_dir, max_prompt_tokens, shard_prefix)

    started = time.perf_counter()
    tokens = truncated = written = 0
    bar = tqdm(total=total if total is not None else len(todo), initial=done_before, desc="q0 snapshot",
               unit="prompt", disable=not progress)
    shard = store.next_shard_index(out_dir, shard_prefix)
    for start in range(0, len(todo), shard_size):
        chunk = todo[start : start + shard_size]
        answers = engine.generate([messages for _, messages in chunk], settings, [pid for pid, _ in chunk])
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
        store.write_shard(out_dir, shard, rows, prefix=shard_prefix)
        shard += 1
        written += len(rows)
        bar.update(len(chunk))
        bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - started, 1e-9):.1f}")
    bar.close()
    return written, tokens, truncated


def _data_parallel_rank(rank: int, n_ranks: int, backend: str, model: str, engine_options: dict,
                        todo: list, out_dir: str, settings: SamplingSettings, source: str, shard_size: int,
                        max_prompt_tokens: int | None = None) -> None:
    """One data-parallel rank: its own engine on its own GPU(s), a contiguous slice of `todo`."""
    from .data_parallel import contiguous_shards
    from .engine import create_engine

    mine = [todo[i] for i in contiguous_shards(len(todo), n_ranks)[rank]]
    if not mine:
        return
    engine = create_engine(backend, model, **engine_options)
    try:
        _generate_into(engine, mine, Path(out_dir), settings, source, shard_size, progress=rank == 0,
                       shard_prefix=f"r{rank:03d}-", max_prompt_tokens=max_prompt_tokens)
    finally:
        engine.close()


def _count_new(out_dir: Path, new_ids: set[str]) -> tuple[int, int, int]:
    rows = [row for row in store.iter_rows(out_dir) if row["prompt_id"] in new_ids]
    tokens = sum(max(row["response_tokens"], 0) for row in rows)
    return len(rows), tokens, sum(row["finish_reason"] == "length" for row in rows)


def snapshot_gpus(info: EngineInfo, data_parallel: tuple | None, ray: "RayLaunch | None" = None) -> int | None:
    """GPUs the engines hold, for `cost.json`'s GPU-hours: the engines run in other processes,
    which the recorder (one process, world size 1) does not count. None: one in-process engine
    on one device, which the recorder counts itself."""
    if info.backend == "openai":
        return 0  # a server elsewhere: its GPUs are not this run's to count
    if ray is not None:
        return 0  # the workers' GPUs, known once the cluster is reached: set after the run
    per_engine = int(info.extra.get("tensor_parallel_size") or 1)  # transformers: one device per engine
    if data_parallel:
        return per_engine * data_parallel[0]
    return per_engine if info.backend == "vllm" else None


def run_snapshot(
    engine: SnapshotEngine | None,
    prompts: Sequence[Messages],
    out_dir: str | Path,
    settings: SamplingSettings,
    *,
    source: str,
    revision: str | None = None,
    shard_size: int = 256,
    progress: bool = True,
    data_parallel: tuple[int, str, str, dict, EngineInfo] | None = None,
    timeout_s: float | None = None,
    max_prompt_tokens: int | None = None,
    ray: "RayLaunch | None" = None,
) -> SnapshotSummary:
    """Generate `settings.n` answers for every prompt not yet in `out_dir`.

    Prompts longer than `max_prompt_tokens` (or than the engine's context) are left out
    and listed in `out_dir/too_long*.jsonl`; a later run with a higher limit takes them.

    With `data_parallel = (ranks, backend, model, engine_options, info)`, `engine` is
    `None` and each rank builds its own engine on its own GPU(s) (`data_parallel.py`).
    With `ray`, `engine` is `None` and each Ray worker builds its own (`ray_launcher.py`).
    """
    out_dir = Path(out_dir)
    items, duplicates = unique_prompts(prompts)
    info = engine.info() if engine is not None else ray.info if ray is not None else data_parallel[4]
    identity = {"model": info.model, "revision": revision, "backend": info.backend,
                "sampling": settings.to_dict(), "source": source, "schema": SNAPSHOT_SCHEMA_VERSION,
                "seeding": None if settings.greedy else SEEDING}
    manifest = store.read_manifest(out_dir)
    _check_same_run(manifest, identity)
    todo = missing_prompts(items, out_dir)
    done = len(items) - len(todo)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest = {**(manifest or {"started_at": now, "resumed_at": []}), **identity,
                "engine_version": info.engine_version, "engine": info.extra, "prompts_total": len(items),
                "status": "running"}
    if done:
        manifest["resumed_at"] = [*manifest.get("resumed_at", []), now]
    if data_parallel:
        manifest["data_parallel_size"] = data_parallel[0]
    manifest.pop("ray", None)  # describes the launcher of this run only
    if ray is not None:
        from .ray_launcher import ray_manifest

        manifest["ray"] = ray_manifest(ray, ray.workers)
    store.write_manifest(out_dir, manifest)

    started = time.perf_counter()
    with CostRecorder(out_dir, stage="snapshot", gpus=snapshot_gpus(info, data_parallel, ray)) as recorder:
        if ray is not None:
            from .ray_launcher import generate_with_ray

            tally = generate_with_ray(ray, todo, out_dir, settings, source, shard_size, max_prompt_tokens)
            recorder.gpus = tally.workers * tally.gpus_per_worker
            written, tokens, truncated = tally.written, tally.tokens, tally.truncated
            manifest["ray"] = ray_manifest(ray, tally.workers or ray.workers)
        elif data_parallel is None:
            written, tokens, truncated = _generate_into(engine, todo, out_dir, settings, source, shard_size, progress,
                                                        done_before=done, total=len(items),
                                                        max_prompt_tokens=max_prompt_tokens)
        else:
            from .data_parallel import cuda_visible_devices, run_data_parallel

            ranks, backend, model, options, _ = data_parallel
            gpus_per_rank = int(options.get("tensor_parallel_size", 1))
            run_data_parallel(
                _data_parallel_rank, ranks,
                args=(backend, model, options, todo, str(out_dir), settings, source, shard_size, max_prompt_tokens),
                timeout_s=timeout_s,
                rank_env=cuda_visible_devices(gpus_per_rank) if backend != "openai" else (lambda r: {}),
            )
            written, tokens, truncated = _count_new(out_dir, {pid for pid, _ in todo})
    seconds = time.perf_counter() - started
    too_long = store.count_too_long(out_dir)
    summary = SnapshotSummary(len(items), done, len(todo) - too_long, duplicates, written, tokens,
                              truncated, seconds, too_long)
    store.write_manifest(out_dir, {**manifest, "status": "complete",
                                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   "last_run": summary.__dict__})
    LOG.info(summary.report())
    return summary
