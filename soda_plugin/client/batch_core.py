"""The batch core shared by the teacher (`soda teacher --batch`), the judge (`soda judge
score --batch`) and the pair filter (`soda pairs --judge-filter --batch`): chat requests,
each with a custom id, sent through the provider's batch API (about half the price,
answers within 24 h).

Request files are built within `max_requests` / `max_bytes`, uploaded, turned into
batches and polled every `poll_s` seconds, for at most `max_wait_s` seconds in all (then
`BatchWaitError`; a re-run resumes the same batches). A finished batch's output and error
files are streamed and each result is handed to the caller (`on_result`) the moment it is
read, so the caller can make it durable. Items that failed, expired, came back malformed
or missing are sent again in a new batch, up to `rounds` batches per item per run; what
still has no result is left in `BatchRunner.failures()` by kind. Every step is recorded in
the journal (`batch_journal.py`) before the next one, so a kill at any point loses
nothing, and an item is never in two open batches nor sent again once it has a result:
nothing is paid twice.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Collection, Mapping, Sequence

from .batch_api import BatchAPI, public_url
from .batch_files import file_bytes, request_line, split_requests
from .batch_journal import BatchJournal
from .batch_results import BATCH_FAILED, EXPIRED, MALFORMED, MISSING, NOT_RESUBMITTED, parse_item
from .core import _OPTION_PARAMS, ChatResult, ClientSettings, Usage

TERMINAL = {"completed": MISSING, "expired": EXPIRED, "failed": BATCH_FAILED, "cancelled": BATCH_FAILED}
EXIT_BATCHES_OPEN = 4  # the exit code of a command whose batches are still unfinished after `--batch-max-wait`
TOO_LARGE = "too_large"


class BatchWaitError(RuntimeError):
    """Batches still unfinished after `--batch-max-wait`; a re-run polls them again."""

    def __init__(self, message: str, batch_ids: tuple[str, ...] = ()):
        super().__init__(message)
        self.batch_ids = tuple(batch_ids)

    def __reduce__(self):
        return (type(self), (str(self), self.batch_ids))


@dataclass(frozen=True)
class BatchOptions:
    """The one owner of the batch settings and their defaults (the `--batch-*` flags)."""

    poll_s: float = 30.0
    max_wait_s: float = 25 * 3600.0  # the 24 h completion window, and an hour to finalize
    max_requests: int = 50_000
    max_bytes: int = 200_000_000
    rounds: int = 3  # batches an item may be sent in, per run
    discount: float = 0.5  # batch price / online price, applied to `--price-in` / `--price-out`

    def check(self) -> None:
        if (self.rounds < 1 or self.poll_s <= 0 or self.max_wait_s <= 0 or self.discount < 0
                or self.max_requests < 1 or self.max_bytes < 1):
            raise ValueError(f"batch options out of range: {self}; `--batch-rounds`, `--batch-max-requests` and "
                             "`--batch-max-bytes` must be >= 1, `--batch-poll` and `--batch-max-wait` > 0, "
                             "`--batch-discount` >= 0.")

    def prices(self, price_in: float, price_out: float) -> tuple[float, float]:
        """Online prices per million tokens -> batch prices."""
        return price_in * self.discount, price_out * self.discount


@dataclass
class BatchStats:
    files_uploaded: int = 0
    batches_created: int = 0
    batches_resumed: int = 0  # found open in the journal, or on the server, by a re-run
    items_submitted: int = 0
    items_resubmitted: int = 0  # sent again after a closed batch gave no answer
    unreadable_lines: int = 0  # result lines not JSON, or naming no item of their batch (the item is retried)
    answers_not_written: int = 0  # teacher: answers to prompts this run's input no longer holds
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


def chat_body(model: str, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions body `ChatClient.complete` posts for these arguments (request
    options such as `timeout` are not body fields), so a batch item is the same request."""
    return {"model": model, "messages": [dict(m) for m in messages],
            **{k: v for k, v in params.items() if k not in _OPTION_PARAMS}}


class BatchRunner:
    """One run of the batch loop over `requests` (custom id -> chat-completions body).

    `on_result(custom_id, result)` is called once per result read, for any item of a
    journaled batch that is not in `done` (a batch an earlier run sent may carry ids this
    run no longer asks for: they were paid, so the caller is told). Items in `done` are
    never sent. `sync()`, when given, makes the batch's results durable before the journal
    records the batch closed (after which its items could be sent again). `usage` counts
    every result received (what the provider bills)."""

    def __init__(self, settings: ClientSettings, journal_path: str | os.PathLike, requests: Mapping[str, dict],
                 on_result: Callable[[str, ChatResult], None], *, done: Collection[str] = (),
                 options: BatchOptions = BatchOptions(), stats: BatchStats | None = None, label: str = "soda",
                 sync: Callable[[], None] | None = None, bar=None, sleep: Callable[[float], None] = time.sleep):
        options.check()
        self.requests, self.on_result, self.options, self.label = requests, on_result, options, label
        self.stats = stats if stats is not None else BatchStats()
        self.sync, self.bar, self.sleep = sync, bar, sleep
        self.done = set(done)
        self.usage = Usage()
        self.tries: Counter = Counter()  # closed batches without a result, per item, this run
        self.given_up: dict[str, tuple[str, str]] = {}  # item -> (kind, detail): not sent again this run
        self.journal = BatchJournal(journal_path)
        self.api = BatchAPI(settings)

    def close(self) -> None:
        self.journal.close()
        self.api.close()
        self.stats.api_retries.update(self.api.retries)

    def failures(self) -> dict[str, tuple[str, str]]:
        """Items of `requests` still without a result: id -> (failure kind, detail)."""
        return {cid: why for cid, why in self.given_up.items() if cid not in self.done}

    # -- sending
    def _eligible(self) -> list[str]:
        in_flight = self.journal.state.in_flight()
        return [cid for cid in self.requests if cid not in self.done and cid not in in_flight
                and cid not in self.given_up]

    def submit(self, ids: list[str]) -> None:
        sent_before = self.journal.state.sent_in_closed_batches()
        lines = ((cid, request_line(cid, self.requests[cid])) for cid in ids)
        too_large: list[tuple[str, int]] = []
        files = split_requests(lines, max_requests=self.options.max_requests, max_bytes=self.options.max_bytes,
                               too_large=too_large)
        for number, chunk in enumerate(files):
            file_id = self.api.upload(f"soda-{self.label}-{int(time.time())}-{number}.jsonl", file_bytes(chunk))
            self.stats.files_uploaded += 1
            chunk_ids = [cid for cid, _ in chunk]
            self.journal.record({"event": "file", "file_id": file_id, "prompt_ids": chunk_ids})
            self._create(file_id)
            self.stats.items_submitted += len(chunk_ids)
            self.stats.items_resubmitted += sum(cid in sent_before for cid in chunk_ids)
        for cid, size in too_large:
            self.given_up[cid] = (TOO_LARGE, f"request of {size} bytes > --batch-max-bytes {self.options.max_bytes}")

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
    def close_batch(self, batch_id: str, batch: Any) -> None:
        expected = set(self.journal.state.files[self.journal.state.file_of(batch_id)])
        failures: dict[str, tuple[str, str]] = {}
        garbled, anonymous = Counter(), Counter()  # per result file: malformed lines; those naming no item
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
            elif item.prompt_id not in self.done:
                self._receive(item.prompt_id, item.result)
                rows += 1
                failures.pop(item.prompt_id, None)

        def restart(file_id: str) -> None:  # a download read again from the start counts its lines again
            garbled.pop(file_id, None)
            anonymous.pop(file_id, None)

        for file_id in filter(None, (batch.output_file_id, batch.error_file_id)):
            self.api.download(file_id, partial(on_line, file_id), on_restart=partial(restart, file_id))
        self.stats.unreadable_lines += sum(garbled.values())
        # A completed batch's line that names no item is one of its missing items: those count as malformed.
        unnamed = sum(anonymous.values()) and batch.status == "completed"
        unanswered = Counter()
        why = f"batch {batch_id} {batch.status}" + "".join(
            f"; {error.code}: {error.message}" for error in (getattr(batch.errors, "data", None) or [])[:2])
        for cid in expected - self.done:
            kind, detail = failures.get(cid) or ((MALFORMED, "unreadable result line") if unnamed
                                                 else (TERMINAL[batch.status], why))
            unanswered[kind] += 1
            self._failed_once(cid, kind, detail)
        if self.sync is not None:
            self.sync()
        self.journal.record({"event": "closed", "batch_id": batch_id, "status": batch.status, "rows": rows,
                             "unanswered": dict(unanswered)})
        self.stats.statuses[batch.status] += 1

    def _receive(self, cid: str, result: ChatResult) -> None:
        self.on_result(cid, result)  # first: the caller makes it durable before it counts as done
        self.done.add(cid)
        self.usage.requests += 1
        self.usage.prompt_tokens += result.prompt_tokens
        self.usage.completion_tokens += result.completion_tokens
        if self.bar is not None and cid in self.requests:
            self.bar.update(1)

    def _failed_once(self, cid: str, kind: str, detail: str) -> None:
        if cid not in self.requests:
            return
        self.tries[cid] += 1
        if kind in NOT_RESUBMITTED or self.tries[cid] >= self.options.rounds:
            self.given_up[cid] = (kind, detail)
        else:
            self.usage.retries[kind] += 1

    # -- the loop
    def run(self) -> None:
        """Until every item has a result or is given up, and no journaled batch is open;
        `BatchWaitError` after `options.max_wait_s`."""
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
                    self.close_batch(batch_id, batch)
                    closed_any = True
            if self.bar is not None:
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
                f"it, or delete the journal to send its items again.") from error


__all__ = ["BatchOptions", "BatchRunner", "BatchStats", "BatchWaitError", "EXIT_BATCHES_OPEN", "TERMINAL",
           "TOO_LARGE", "chat_body"]
