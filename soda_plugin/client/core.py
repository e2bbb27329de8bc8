"""The async chat client shared by the teacher and judge tools."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Sequence

from ..log import get_logger

LOG = get_logger(__name__)


class RequestFailedError(RuntimeError):
    """A request still failed after every attempt; nothing was written for it."""

    def __init__(self, message: str, attempts: int, last_error: str):
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error

    def __reduce__(self):  # rebuilt with its fields after crossing a process boundary
        return (type(self), (str(self), self.attempts, self.last_error))

    @property
    def kind(self) -> str:
        """The failure kind (`rate_limit`, `server_error`, `bad_request`, ...), for counting."""
        return self.last_error.split(":", 1)[0]


class RequestRejectedError(RequestFailedError):
    """The server refused this one request as invalid (400/413/422, e.g. a prompt longer
    than the model's context): not retried, reported like any other failed request.
    Authentication and not-found errors (401/403/404) are not this: they stop the run."""


# Status codes that condemn one request, not the run (retrying cannot help either).
_REJECTED_STATUS = (400, 413, 422)


class MalformedResponseError(ValueError):
    """The server answered 200 with a body that is not a usable chat completion."""


@dataclass(frozen=True)
class ClientSettings:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from here, never stored or logged
    concurrency: int = 16
    timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class ChatResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: Counter = field(default_factory=Counter)  # per kind: rate_limit, server_error, timeout, ...
    failures: int = 0

    def cost(self, price_in_per_m: float, price_out_per_m: float) -> float:
        return (self.prompt_tokens * price_in_per_m + self.completion_tokens * price_out_per_m) / 1e6


def _retry_after_s(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _classify(error: Exception) -> str | None:
    """The retry kind of `error`, or None when retrying cannot help (e.g. 400, 401)."""
    import openai

    if isinstance(error, openai.RateLimitError):
        return "rate_limit"
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, openai.APIStatusError):
        return "server_error" if error.status_code >= 500 else None
    if isinstance(error, (MalformedResponseError, ValueError)):  # includes JSON decode errors
        return "malformed"
    return None


def _count(usage: dict, name: str) -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise MalformedResponseError(f"`usage.{name}` is not a token count: {value!r}")
    return value


def _parse(body: bytes) -> ChatResult:
    """A `ChatResult` from the raw body of a 200 answer, checked field by field (type and
    presence); anything unusable raises `MalformedResponseError` (invalid JSON raises
    `json.JSONDecodeError`, also a `ValueError`: both are retried as `malformed`)."""
    response = json.loads(body)
    choices = response.get("choices") if isinstance(response, dict) else None
    if not isinstance(choices, list) or not choices:
        raise MalformedResponseError("the response has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise MalformedResponseError("the first choice has no text content")
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise MalformedResponseError(f"`finish_reason` is not a string: {finish_reason!r}")
    usage = response.get("usage")
    if usage is None:
        usage = {}
    elif not isinstance(usage, dict):
        raise MalformedResponseError(f"`usage` is not an object: {usage!r}")
    return ChatResult(text, str(finish_reason), _count(usage, "prompt_tokens"), _count(usage, "completion_tokens"))


# `chat.completions.create` keywords that are request options, not body fields.
_OPTION_PARAMS = {"extra_headers": "headers", "extra_query": "params", "extra_body": "extra_json", "timeout": "timeout"}


# The worker (`ChatClient.map`) a request comes from: each worker has its own pool.
_LANE: contextvars.ContextVar[int] = contextvars.ContextVar("soda_client_lane", default=0)


def _lane_transport(lanes: int):
    """An httpx transport with one connection pool per `map` worker.

    A single pool of `concurrency` connections rescans every connection at each request
    start and end (and probes each idle one with a `poll` syscall): ~20 % of the client's
    CPU at concurrency 64. A worker sends one request at a time, so its own pool holds
    one kept-alive connection and the scans are O(1). The pools are ordinary
    `AsyncHTTPTransport`s (same TLS context, HTTP/1.1, keep-alive); proxies from the
    environment are still mounted by the client around this transport."""
    try:
        import httpx2 as httpx  # what this openai release is built on
    except ImportError:  # pragma: no cover - older openai releases
        import httpx

    class LaneTransport(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            try:  # the SDK's own pool limits; a private name, so fall back to its documented values
                from openai._constants import DEFAULT_CONNECTION_LIMITS
            except ImportError:
                DEFAULT_CONNECTION_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)

            verify = httpx.create_ssl_context() if hasattr(httpx, "create_ssl_context") else True
            self._pools = [httpx.AsyncHTTPTransport(verify=verify, limits=DEFAULT_CONNECTION_LIMITS)
                           for _ in range(max(1, lanes))]

        async def handle_async_request(self, request):
            return await self._pools[_LANE.get() % len(self._pools)].handle_async_request(request)

        async def aclose(self) -> None:
            for pool in self._pools:
                await pool.aclose()

    return LaneTransport()


class ChatClient:
    """`await client.complete(messages, **params)`; `await client.map(jobs, on_result)`."""

    def __init__(self, settings: ClientSettings, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        import openai

        self.settings = settings
        self.usage = Usage()
        self._sleep = sleep
        # Our own retry loop (typed, counted, `Retry-After`-aware); the SDK's is off.
        self._client = openai.AsyncOpenAI(base_url=settings.base_url, api_key=os.environ.get(settings.api_key_env) or "EMPTY",
                                          timeout=settings.timeout_s, max_retries=0,
                                          http_client=openai.DefaultAsyncHttpxClient(
                                              transport=_lane_transport(settings.concurrency)))

    def _backoff_s(self, attempt: int, error: Exception) -> float:
        hinted = _retry_after_s(error)
        if hinted is not None:
            return min(hinted, self.settings.backoff_max_s)
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** attempt)
        return ceiling * (0.5 + random.random() / 2)  # jitter: retries of many requests spread out

    async def complete(self, messages: Sequence[dict[str, str]], **params: Any) -> ChatResult:
        # The JSON body is built here rather than by `chat.completions.create`, whose per-call
        # walk of the params against the SDK's TypedDicts was ~14 % of the client's CPU and
        # changes nothing for plain JSON values; the request still goes through the SDK
        # (auth, timeout, status errors -> `openai.APIStatusError` subclasses).
        body = {"model": self.settings.model, "messages": list(messages)}
        options: dict[str, Any] = {"security": {"bearer_auth": True}}
        for name, value in params.items():
            if name in _OPTION_PARAMS:
                options[_OPTION_PARAMS[name]] = value
            else:
                body[name] = value
        last = ""
        for attempt in range(self.settings.max_attempts):
            try:
                result = _parse(await self._client.post("/chat/completions", body=body, cast_to=bytes, options=options))
            except Exception as error:  # classified below; unknown kinds are re-raised
                kind = _classify(error)
                if kind is None:
                    if getattr(error, "status_code", None) in _REJECTED_STATUS:
                        self.usage.failures += 1
                        raise RequestRejectedError(f"request rejected by the server ({str(error)[:200]})", attempt + 1,
                                                   f"bad_request: {type(error).__name__}: {str(error)[:200]}") from error
                    raise
                last = f"{kind}: {type(error).__name__}: {str(error)[:200]}"
                if attempt + 1 == self.settings.max_attempts:
                    break
                self.usage.retries[kind] += 1
                await self._sleep(self._backoff_s(attempt, error))
                continue
            self.usage.requests += 1
            self.usage.prompt_tokens += result.prompt_tokens
            self.usage.completion_tokens += result.completion_tokens
            return result
        self.usage.failures += 1
        raise RequestFailedError(f"request failed after {self.settings.max_attempts} attempts ({last})",
                                 self.settings.max_attempts, last)

    async def map(self, jobs: Iterable[tuple[Any, Sequence[dict[str, str]], dict[str, Any]]],
                  on_result: Callable[[Any, ChatResult | RequestFailedError], None]) -> None:
        """Run `(key, messages, params)` jobs with bounded concurrency; `on_result` gets each
        result (or its `RequestFailedError`) as soon as it is known, so a caller can
        persist it before anything else happens.

        `jobs` may be a lazy iterable: `concurrency` workers pull from it, so only that many
        jobs are ever in memory as coroutines, however many prompts there are."""
        pending = iter(jobs)

        async def worker(lane: int):
            _LANE.set(lane)  # this task's own context: its requests use its own pool
            # One shared iterator: `next` runs between awaits, so workers never race on it.
            for key, messages, params in pending:
                try:
                    result = await self.complete(messages, **params)
                except RequestFailedError as error:
                    result = error
                on_result(key, result)

        await asyncio.gather(*(worker(lane) for lane in range(max(1, self.settings.concurrency))))

    async def close(self) -> None:
        await self._client.close()
