"""Batch mode (`--batch`): the same prompts, rows and output file as the online mode,
sent through the provider's batch API (about half the price, answers within 24 h) by the
shared batch core (`client/batch_core.py`: request files, journal, polling within
`--batch-max-wait`, resubmission within `--batch-rounds`, resume after a kill).

The custom id of each request is its prompt id; each answer is appended as a row the
moment it is read, and the journal is `<out stem>.batches.jsonl` beside the output. What
still has no answer is counted per kind, as online.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

from ..client import ChatResult, ClientSettings
from ..client.batch_core import BatchOptions, BatchRunner, BatchStats, BatchWaitError, chat_body
from ..client.batch_journal import journal_path
from ..format.rows import TeacherFields
from ..log import get_logger
from .collect import CollectionSummary, Messages, TeacherRequest, start_collection, write_answer
from .exclude import EvalExclusion
from .output import TeacherOutputFile, finish_manifest

LOG = get_logger(__name__)


def _answer_writer(output: TeacherOutputFile, todo: dict[str, Messages], fields: TeacherFields,
                   summary: CollectionSummary, model: str) -> Callable[[str, ChatResult], None]:
    """`on_result` of the batch core: a row per answer to a prompt of this run; an answer
    to a prompt an earlier run sent that this input no longer holds is counted, not written."""

    def on_result(pid: str, result: ChatResult) -> None:
        if pid in todo:
            write_answer(output, fields, summary, pid, todo[pid], result, model)
        else:
            summary.batch.answers_not_written += 1

    return on_result


def run_batch_collection(prompts: Sequence[Messages], out: str | os.PathLike, *, settings: ClientSettings,
                         request: TeacherRequest, fields: TeacherFields = TeacherFields(),
                         exclusion: EvalExclusion | None = None, price_in: float = 0.0, price_out: float = 0.0,
                         options: BatchOptions = BatchOptions(), progress: bool = True,
                         sleep: Callable[[float], None] = time.sleep) -> CollectionSummary:
    """`collect.run_collection` through the batch API: same arguments, rows and summary
    (`summary.batch` adds the batch counts). Cost: the tokens at `price_in` / `price_out`
    times `options.discount`. Raises `BatchWaitError` after `options.max_wait_s`."""
    from tqdm.auto import tqdm

    options.check()
    started = time.perf_counter()
    output, manifest, summary = start_collection(
        prompts, out, settings=settings, request=request, fields=fields, exclusion=exclusion,
        manifest_extra={"mode": "batch", "journal": journal_path(out).name}, summary_extra={"batch": BatchStats()})
    plan = summary.plan
    todo = dict(plan.todo)
    bodies = {pid: chat_body(settings.model, request.messages_for(messages), request.params())
              for pid, messages in todo.items()}
    bar = tqdm(total=len(todo) + plan.done_before, initial=plan.done_before, desc="teacher (batch)",
               unit="prompt", disable=not progress)
    runner = BatchRunner(settings, journal_path(out), bodies, _answer_writer(output, todo, fields, summary,
                                                                                request.model),
                         done=output.existing.done, options=options, stats=summary.batch, label="teacher",
                         sync=output.sync, bar=bar, sleep=sleep)
    status = "running"
    try:
        runner.run()
        for pid, (kind, detail) in runner.failures().items():
            summary.count_failure(pid, kind, f"{kind}: {detail[:120]}")
        status = "incomplete" if summary.failed else "complete"
    finally:
        bar.close()
        output.close()
        runner.close()
        summary.usage, summary.seconds = runner.usage, time.perf_counter() - started
        summary.cost = runner.usage.cost(*options.prices(price_in, price_out))
        finish_manifest(out, {**manifest, "status": status if status != "running" else "interrupted"},
                        summary.to_dict())
    LOG.info("%s", summary.report())
    return summary


__all__ = ["BatchOptions", "BatchStats", "BatchWaitError", "run_batch_collection"]
