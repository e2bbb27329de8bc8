"""The OpenAI batch API (files + batches) through the `openai` client, with the shared
core's retry rules: 429/5xx/timeouts/connection errors are retried with backoff (counted
per kind in `retries`), anything else raises. Every call is bounded by
`ClientSettings.timeout_s` per attempt and `max_attempts` attempts."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

from .core import ClientSettings, _classify, _retry_after_s

BATCH_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
LIST_PAGES_MAX = 20  # batches.list pages scanned (100 each) when looking for a lost batch id


def public_url(url: str) -> str:
    """`url` without user info, query or fragment: safe in a message, a manifest or a card."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class BatchAPI:
    def __init__(self, settings: ClientSettings, *, sleep: Callable[[float], None] = time.sleep):
        import openai

        self.settings = settings
        self.retries: Counter = Counter()
        self._sleep = sleep
        self._client = openai.OpenAI(base_url=settings.base_url, api_key=os.environ.get(settings.api_key_env) or "EMPTY",
                                     timeout=settings.timeout_s, max_retries=0)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        for attempt in range(self.settings.max_attempts):
            try:
                return fn()
            except Exception as error:  # classified: unknown kinds are re-raised at once
                kind = _classify(error)
                if kind is None or attempt + 1 == self.settings.max_attempts:
                    raise
                self.retries[kind] += 1
                hinted = _retry_after_s(error)
                ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** attempt)
                self._sleep(min(hinted, self.settings.backoff_max_s) if hinted is not None
                            else ceiling * (0.5 + random.random() / 2))
        raise AssertionError(f"unreachable: {what}")  # pragma: no cover

    def upload(self, name: str, data: bytes) -> str:
        """Upload a request file (purpose `batch`); its file id."""
        return self._call("upload", lambda: self._client.files.create(
            file=(name, data, "application/jsonl"), purpose="batch")).id

    def create(self, input_file_id: str) -> str:
        return self._call("create", lambda: self._client.batches.create(
            input_file_id=input_file_id, endpoint=BATCH_ENDPOINT, completion_window=COMPLETION_WINDOW)).id

    def retrieve(self, batch_id: str) -> Any:
        """The batch object: `status`, `request_counts`, `output_file_id`, `error_file_id`."""
        return self._call("retrieve", lambda: self._client.batches.retrieve(batch_id))

    def find_by_input_file(self, input_file_id: str) -> str | None:
        """The id of a batch made from `input_file_id`, if any: a run killed between the
        server creating a batch and the journal recording it finds it here, and does not
        submit the same prompts again."""
        after = None
        for _ in range(LIST_PAGES_MAX):
            page = self._call("list", lambda: self._client.batches.list(limit=100, **({"after": after} if after else {})))
            for batch in page.data:
                if batch.input_file_id == input_file_id:
                    return batch.id
            if not page.has_more or not page.data:
                return None
            after = page.data[-1].id
        return None

    def lines(self, file_id: str) -> Iterator[bytes]:
        """The lines of a file, streamed (a result file can be hundreds of MB). Not retried
        mid-stream: the caller re-reads from the start (its writes are idempotent)."""
        with self._client.files.with_streaming_response.content(file_id) as response:
            buffer = b""
            for chunk in response.iter_bytes():
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                yield from (line for line in complete if line.strip())
            if buffer.strip():
                yield buffer

    def download(self, file_id: str, on_line: Callable[[bytes], None], on_restart: Callable[[], None]) -> None:
        """`on_line` for each line of `file_id`; a broken stream is read again from the start
        (after `on_restart`), within the retry rules."""
        def read() -> None:
            on_restart()
            for line in self.lines(file_id):
                on_line(line)

        self._call("download", read)

    def close(self) -> None:
        self._client.close()


__all__ = ["BATCH_ENDPOINT", "BatchAPI", "COMPLETION_WINDOW", "public_url"]
