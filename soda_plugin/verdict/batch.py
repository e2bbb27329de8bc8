"""The judge's calls through the provider's batch API: `BatchChat` stands in for the online
`ChatClient` behind `JudgeCalls` (same `map`, `usage` and `close`), each `map` being one
run of the shared batch core (`client/batch_core.py`) over one phase's calls.

Each phase (references, verdicts) has its own journal in the call cache's folder,
`<cache_dir>/batches.<phase>.jsonl`, and every custom id is the call's cache key. So a
result is cached under the key an online run looks up, a cached call is never sent, and a
call carried by an open batch is never sent again, by either mode: an online run refuses
the calls a batch run still has in flight (`check_not_in_flight`) rather than pay twice.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Sequence

from ..client import ChatResult, ClientSettings, RequestFailedError, Usage
from ..client.batch_core import BatchOptions, BatchRunner, BatchStats, chat_body
from ..client.batch_journal import read_journal

REFERENCES, VERDICTS = "references", "verdicts"


def batch_journal_path(cache_dir: str | os.PathLike, phase: str) -> Path:
    return Path(cache_dir) / f"batches.{phase}.jsonl"


def check_not_in_flight(cache_dir: str | os.PathLike, phase: str, keys: Iterable[str]) -> None:
    """Raise when a batch run journaled in `cache_dir` still has any of `keys` in an open
    batch: they will be paid when it finishes, so an online request would pay twice."""
    path = batch_journal_path(cache_dir, phase)
    if not path.is_file():
        return
    in_flight = read_journal(path)[0].in_flight()
    waiting = sum(key in in_flight for key in keys)
    if waiting:
        raise ValueError(f"{waiting} judge {phase} are in batches still open in `{path}` (a `--batch` run that has "
                         "not finished): re-run with `--batch` to collect them; asking online would pay for them "
                         "twice.")


class BatchChat:
    """`ChatClient.map` through the batch API, for the judge's cached calls.

    Args:
        settings: the judge's endpoint and model (`max_attempts`, `timeout_s` bound each API call).
        cache_dir: the judge's call cache folder (the journals live beside the cache files).
        options: the `--batch-*` settings (polling, bound on the wait, rounds, discount).
    """

    def __init__(self, settings: ClientSettings, cache_dir: str | os.PathLike, options: BatchOptions = BatchOptions(),
                 *, sleep: Callable[[float], None] = time.sleep):
        options.check()
        self.settings, self.cache_dir, self.options = settings, Path(cache_dir), options
        self.sleep = sleep
        self.usage = Usage()
        self.stats = BatchStats()

    async def map(self, jobs: Iterable[tuple[str, Sequence[dict[str, str]], dict[str, Any]]],
                  on_result: Callable[[str, ChatResult | RequestFailedError], None], *, phase: str,
                  done: Collection[str] = ()) -> None:
        """Send `(cache key, messages, params)` jobs as one batch run of `phase`; `on_result`
        gets each result as it is read (also for keys of batches an earlier run left open,
        which this run did not ask for: they were paid, so the caller caches them; never for
        the keys in `done`, those already cached), then a `RequestFailedError` for each job
        still without a result."""
        requests = {key: chat_body(self.settings.model, messages, params) for key, messages, params in jobs}
        runner = BatchRunner(self.settings, batch_journal_path(self.cache_dir, phase), requests, on_result,
                             done=done, options=self.options, stats=self.stats, label=f"judge-{phase}",
                             sleep=self.sleep)
        try:
            runner.run()
        finally:
            runner.close()
            self._add_usage(runner.usage)
        failures = runner.failures()
        self.usage.failures += len(failures)
        for key, (kind, detail) in failures.items():
            on_result(key, RequestFailedError(f"batch item failed after {runner.tries[key] or 1} batches ({detail})",
                                              runner.tries[key] or 1, f"{kind}: {detail}"))

    def _add_usage(self, usage: Usage) -> None:
        self.usage.requests += usage.requests
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.completion_tokens += usage.completion_tokens
        self.usage.retries.update(usage.retries)

    async def close(self) -> None:
        """Nothing stays open between runs (each `map` opens and closes its API client)."""


__all__ = ["BatchChat", "REFERENCES", "VERDICTS", "batch_journal_path", "check_not_in_flight"]
