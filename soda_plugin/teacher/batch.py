"""Batch mode (`--batch`): the same prompts, rows and output file as the online mode,
sent through the provider's batch API (about half the price, answers within 24 h).

Request files are built within `--batch-max-requests` / `--batch-max-bytes`, uploaded,
turned into batches and polled every `--batch-poll` seconds, for at most
`--batch-max-wait` seconds in all (then `BatchWaitError`; a re-run resumes the same
batches). A finished batch's output and error files are streamed and each answer is
appended as a row the moment it is read. Items that failed, expired, came back malformed
or missing are sent again in a new batch, up to `--batch-rounds` batches per prompt per
run; what still has no answer is counted per kind, as online. Every step is recorded in
the journal (`batch_journal.py`) before the next one, so a kill at any point loses
nothing and sends nothing twice.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

from ..client import ClientSettings, Usage
from ..client.batch_api import BatchAPI
from ..log import get_logger
from ..format.rows import TeacherFields
from .batch_files import file_bytes, request_line, split_requests
from .batch_journal import BatchJournal, journal_path
from .batch_results import BATCH_FAILED, EXPIRED, MALFORMED, MISSING, NOT_RESUBMITTED, parse_item
from .collect import CollectionSummary, Messages, TeacherRequest, public_url, start_collection, write_answer
from .exclude import EvalExclusion
from .output import TeacherOutputFile, finish_manifest

LOG = get_logger(__name__)

TERMINAL = {"completed": MISSING, "expired": EXPIRED, "failed": BATCH_FAILED, "cancelled": BATCH_FAILED}


class BatchWaitError(RuntimeError):
    """Batches still unfinished after `--batch-max-wait`; a re-run polls them again."""

    def __init__(self, message: str, batch_ids: tuple[str, ...] = ()):
        super().__init__(message)
        self.batch_ids = tuple(batch_ids)

    def __reduce__(self):
        return (type(self), (str(self), self.batch_ids))


@dataclass(frozen=True)
class BatchOptions:
    poll_s: float = 30.0
    max_wait_s: float = 25 * 3600.0  # the 24 h completion window, and an hour to finalize
    max_requests: int = 50_000
    max_bytes: int = 200_000_000
    rounds: int = 3  # batches a prompt may be sent in, per run
    discount: float = 0.5  # batch price / online price, applied to `--price-in` / `--price-out`


@dataclass
class BatchStats:
    files_uploaded: int = 0
    batches_created: int = 0
    batches_resumed: int = 0  # found open in the journal, or on the server, by a re-run
    items_submitted: int = 0
    items_resubmitted: int = 0  # sent again after a closed batch gave no answer
    unreadable_lines: int = 0  # result lines not JSON, or naming no prompt of their batch (the prompt is retried)
    answers_not_written: int = 0  # for prompts an earlier run sent that this run's input no longer holds
    statuses: Counter = field(default_factory=Counter)  # how the batches closed in this run ended
    api_retries: Counter = field(default_factory=Counter)

    def report(self) -> str:
        return (f"  batch: files uploaded {self.files_uploaded}, batches created {self.batches_created}, resumed "
                f"{self.batches_resumed}, closed {dict(self.statuses) or 0}; items submitted {self.items_submitted} "
                f"(resubmitted {self.items_resubmitted}), unreadable result lines {self.unreadable_lines}, "
                f"API retries {dict(self.api_retries) or 0}"
                + (f"; {self.answers_not_written} answers not written (their prompts are no longer in the input "
                   "or are excluded)" if self.answers_not_written else ""))

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in vars(self).items() if not isinstance(v, Counter)},
                "statuses": dict(self.statuses), "api_retries": dict(self.api_retries)}


class _BatchRun:
    def __init__(self, *, api: BatchAPI, journal: BatchJournal, output: TeacherOutputFile, todo: dict[str, Messages],
                 request: TeacherRequest, model: str, fields: TeacherFields, summary: CollectionSummary,
                 options: BatchOptions, bar, sleep: Callable[[float], None]):
        self.api, self.journal, self.output, self.todo = api, journal, output, todo
        self.request, self.model, self.fields, self.summary = request, model, fields, summary
        self.options, self.bar, self.sleep = options, bar, sleep
        self.stats: BatchStats = summary.batch
        self.usage = Usage()
        self.done = set(output.existing.done)
        self.tries: Counter = Counter()  # closed batches without an answer, per prompt, this run
        self.given_up: dict[str, tuple[str, str]] = {}  # prompt -> (kind, detail): not sent again this run

    # -- sending
    def _eligible(self) -> list[str]:
        in_flight = self.journal.state.in_flight()
        return [pid for pid in self.todo if pid not in self.done and pid not in in_flight and pid not in self.given_up]

    def _body(self, messages: Messages) -> dict[str, Any]:
        return {"model": self.model, "messages": self.request.messages_for(messages), **self.request.params()}

    def submit(self, pids: list[str]) -> None:
        sent_before = self.journal.state.sent_in_closed_batches()
        lines = ((pid, request_line(pid, self._body(self.todo[pid]))) for pid in pids)
        too_large: list[tuple[str, int]] = []
        files = split_requests(lines, max_requests=self.options.max_requests, max_bytes=self.options.max_bytes,
                               too_large=too_large)
        for number, chunk in enumerate(files):
            file_id = self.api.upload(f"soda-teacher-{int(time.time())}-{number}.jsonl", file_bytes(chunk))
            self.stats.files_uploaded += 1
            chunk_ids = [pid for pid, _ in chunk]
            self.journal.record({"event": "file", "file_id": file_id, "prompt_ids": chunk_ids})
            self._create(file_id)
            self.stats.items_submitted += len(chunk_ids)
            self.stats.items_resubmitted += sum(pid in sent_before for pid in chunk_ids)
        for pid, size in too_large:
            self.given_up[pid] = ("too_large", f"request of {size} bytes > --batch-max-bytes {self.options.max_bytes}")

    def _create(self, file_id: str) -> None:
        self.journal.record({"event": "batch", "batch_id": self.api.create(file_id), "file_id": file_id})
        self.stats.batches_created += 1

    def resume_unbatched(self) -> None:
        """Files uploaded by a killed run but not yet journaled as a batch."""
        for file_id in self.journal.state.unbatched_files():
            found = self.api.find_by_input_file(file_id)
            if found is None:
                self._create(file_id)
            else:
                self.journal.record({"event": "batch", "batch_id": found, "file_id": file_id})
                self.stats.batches_resumed += 1

    # -- receiving
    def close(self, batch_id: str, batch: Any) -> None:
        expected = set(self.journal.state.files[self.journal.state.file_of(batch_id)])
        failures: dict[str, tuple[str, str]] = {}
        garbled, anonymous = Counter(), Counter()  # per result file: malformed lines; those naming no prompt
        rows = 0

        def on_line(file_id: str, line: bytes) -> None:
            nonlocal rows
            item = parse_item(line, expected)
            garbled[file_id] += item.unreadable or item.prompt_id is None
            anonymous[file_id] += item.prompt_id is None
            if item.prompt_id is None:
                return
            if item.result is None:
                failures.setdefault(item.prompt_id, (item.kind, item.detail))
            elif item.prompt_id not in self.todo:
                # Sent by an earlier run, but no longer among the prompts (or now excluded): counted, not written.
                self.stats.answers_not_written += item.prompt_id not in self.done
            elif item.prompt_id not in self.done:
                self._write(item.prompt_id, item.result)
                rows += 1
                failures.pop(item.prompt_id, None)

        def restart(file_id: str) -> None:  # a download read again from the start counts its lines again
            garbled.pop(file_id, None)
            anonymous.pop(file_id, None)

        for file_id in filter(None, (batch.output_file_id, batch.error_file_id)):
            self.api.download(file_id, partial(on_line, file_id), on_restart=partial(restart, file_id))
        self.stats.unreadable_lines += sum(garbled.values())
        # A completed batch's line that names no prompt is one of its missing prompts: those count as malformed.
        unnamed = sum(anonymous.values()) and batch.status == "completed"
        unanswered = Counter()
        why = f"batch {batch_id} {batch.status}" + "".join(
            f"; {error.code}: {error.message}" for error in (getattr(batch.errors, "data", None) or [])[:2])
        for pid in expected - self.done:
            kind, detail = failures.get(pid) or ((MALFORMED, "unreadable result line") if unnamed
                                                 else (TERMINAL[batch.status], why))
            unanswered[kind] += 1
            self._failed_once(pid, kind, detail)
        self.output.sync()
        self.journal.record({"event": "closed", "batch_id": batch_id, "status": batch.status, "rows": rows,
                             "unanswered": dict(unanswered)})
        self.stats.statuses[batch.status] += 1

    def _write(self, pid: str, result) -> None:
        write_answer(self.output, self.fields, self.summary, pid, self.todo[pid], result, self.request.model)
        self.done.add(pid)
        self.usage.requests += 1
        self.usage.prompt_tokens += result.prompt_tokens
        self.usage.completion_tokens += result.completion_tokens
        self.bar.update(1)

    def _failed_once(self, pid: str, kind: str, detail: str) -> None:
        if pid not in self.todo:
            return
        self.tries[pid] += 1
        if kind in NOT_RESUBMITTED or self.tries[pid] >= self.options.rounds:
            self.given_up[pid] = (kind, detail)
        else:
            self.usage.retries[kind] += 1

    # -- the loop
    def run(self) -> None:
        deadline = time.monotonic() + self.options.max_wait_s
        self.stats.batches_resumed += len(self.journal.state.open_batches())
        self.resume_unbatched()
        while True:
            eligible = self._eligible()
            if eligible:
                self.submit(eligible)
            open_batches = self.journal.state.open_batches()
            if not open_batches:
                return
            closed_any = False
            for batch_id in open_batches:
                batch = self._retrieve(batch_id)
                if batch.status in TERMINAL:
                    self.close(batch_id, batch)
                    closed_any = True
            self.bar.set_postfix(open_batches=len(self.journal.state.open_batches()), failed=len(self.given_up),
                                 refresh=False)
            if closed_any:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise BatchWaitError(
                    f"{len(open_batches)} batches still unfinished after `--batch-max-wait` "
                    f"{self.options.max_wait_s:g} s ({', '.join(open_batches[:5])}); their answers are not lost: "
                    "re-run the same command to resume polling them (nothing is sent again).", tuple(open_batches))
            self.sleep(min(self.options.poll_s, left))

    def _retrieve(self, batch_id: str) -> Any:
        import openai

        try:
            return self.api.retrieve(batch_id)
        except openai.NotFoundError as error:
            raise ValueError(
                f"batch `{batch_id}` from the journal `{self.journal.path}` is unknown to `--base-url` "
                f"{public_url(self.api.settings.base_url)} (404): re-run with the `--base-url` and key that created "
                f"it, or delete the journal to send its prompts again.") from error

    def count_failures(self) -> None:
        for pid, (kind, detail) in self.given_up.items():
            if pid in self.done:
                continue
            self.summary.count_failure(pid, kind, f"{kind}: {detail[:120]}")


def run_batch_collection(prompts: Sequence[Messages], out: str | os.PathLike, *, settings: ClientSettings,
                         request: TeacherRequest, fields: TeacherFields = TeacherFields(),
                         exclusion: EvalExclusion | None = None, price_in: float = 0.0, price_out: float = 0.0,
                         options: BatchOptions = BatchOptions(), progress: bool = True,
                         sleep: Callable[[float], None] = time.sleep) -> CollectionSummary:
    """`collect.run_collection` through the batch API: same arguments, rows and summary
    (`summary.batch` adds the batch counts). Cost: the tokens at `price_in` / `price_out`
    times `options.discount`. Raises `BatchWaitError` after `options.max_wait_s`."""
    from tqdm.auto import tqdm

    if (options.rounds < 1 or options.poll_s <= 0 or options.max_wait_s <= 0 or options.discount < 0
            or options.max_requests < 1 or options.max_bytes < 1):
        raise ValueError(f"batch options out of range: {options}; `--batch-rounds`, `--batch-max-requests` and "
                         "`--batch-max-bytes` must be >= 1, `--batch-poll` and `--batch-max-wait` > 0, "
                         "`--batch-discount` >= 0.")
    started = time.perf_counter()
    output, manifest, summary = start_collection(
        prompts, out, settings=settings, request=request, fields=fields, exclusion=exclusion,
        manifest_extra={"mode": "batch", "journal": journal_path(out).name}, summary_extra={"batch": BatchStats()})
    plan = summary.plan
    journal = BatchJournal(journal_path(out))
    api = BatchAPI(settings)
    bar = tqdm(total=len(plan.todo) + plan.done_before, initial=plan.done_before, desc="teacher (batch)",
               unit="prompt", disable=not progress)
    run = _BatchRun(api=api, journal=journal, output=output, todo=dict(plan.todo), request=request,
                    model=settings.model, fields=fields, summary=summary, options=options, bar=bar, sleep=sleep)
    status = "running"
    try:
        run.run()
        run.count_failures()
        status = "incomplete" if summary.failed else "complete"
    finally:
        bar.close()
        output.close()
        journal.close()
        api.close()
        summary.usage, summary.seconds = run.usage, time.perf_counter() - started
        summary.batch.api_retries = api.retries
        summary.cost = run.usage.cost(price_in * options.discount, price_out * options.discount)
        finish_manifest(out, {**manifest, "status": status if status != "running" else "interrupted"},
                        summary.to_dict())
    LOG.info("%s", summary.report())
    return summary


__all__ = ["BatchOptions", "BatchStats", "BatchWaitError", "run_batch_collection"]
