"""The shared chat client against a real local server with injected faults."""

import asyncio
import json

import pytest

from chat_server import ChatServer, Reply, no_sleep
from soda_plugin.client import ChatClient, ClientSettings, JsonlCache, RequestFailedError
from soda_plugin.client.cache import cache_key


def _echo(request):
    return Reply(f"answer to {request['messages'][-1]['content']}", "stop", 7, 3)


def _run_jobs(server, n, timeout_s=30.0, **settings):
    """`timeout_s` is long unless a test needs timeouts: a slow answer must not add a retry."""
    client = ChatClient(ClientSettings(base_url=server.base_url, model="m", timeout_s=timeout_s, **settings),
                        sleep=no_sleep)
    results = {}
    jobs = [(i, [{"role": "user", "content": f"q{i}"}], {"max_tokens": 8}) for i in range(n)]

    async def go():
        await client.map(jobs, results.__setitem__)
        await client.close()

    asyncio.run(go())
    return client, results


@pytest.mark.parametrize("fault, kind", [
    ("429", "rate_limit"), ("429-retry-after", "rate_limit"), ("500", "server_error"), ("503", "server_error"),
    ("malformed", "malformed"), ("empty_choices", "malformed"), ("drop", "connection"), ("hang", "timeout"),
])
def test_every_fault_is_retried_and_every_row_answered_once(fault, kind):
    with ChatServer(_echo, hang_s=4.0) as server:
        server.inject(fault, fault)
        client, results = _run_jobs(server, 6, concurrency=1, **({"timeout_s": 2.0} if fault == "hang" else {}))
    assert sorted(results) == list(range(6))
    assert all(results[i].text == f"answer to q{i}" for i in range(6))
    retries = dict(client.usage.retries)
    if fault == "hang":  # a slow answer under load may time out too: at least the two hangs
        assert set(retries) == {"timeout"} and retries["timeout"] >= 2, retries
    else:
        assert retries == {kind: 2}
    assert client.usage.failures == 0
    assert client.usage.requests == 6 and client.usage.prompt_tokens == 42 and client.usage.completion_tokens == 18


def test_a_request_that_keeps_failing_is_reported_not_written():
    with ChatServer(_echo) as server:
        server.inject(*["500"] * 3)
        client, results = _run_jobs(server, 2, concurrency=1, max_attempts=3)
    failed = [k for k, v in results.items() if isinstance(v, RequestFailedError)]
    assert len(failed) == 1 and "server_error" in results[failed[0]].last_error
    assert client.usage.failures == 1 and client.usage.retries == {"server_error": 2}


def test_retry_after_is_honoured():
    with ChatServer(_echo) as server:
        server.inject("429-retry-after")
        waits = []

        async def record(seconds):
            waits.append(seconds)

        client = ChatClient(ClientSettings(base_url=server.base_url, model="m"), sleep=record)
        asyncio.run(client.complete([{"role": "user", "content": "x"}]))
    assert waits == [0.2]


def test_cache_survives_a_torn_last_line_and_never_stores_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    path = tmp_path / "cache.jsonl"
    cache = JsonlCache(path)
    key = cache_key({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    cache.put(key, {"text": "y"})
    cache.close()
    with path.open("a") as handle:
        handle.write('{"key": "half')  # killed mid-write
    reopened = JsonlCache(path)
    assert reopened.get(key) == {"text": "y"} and reopened.torn_lines == 1
    reopened.put("k2", {"text": "z"})
    reopened.close()
    again = JsonlCache(path)
    assert again.get("k2") == {"text": "z"} and again.torn_lines == 1
    assert "sk-test-secret-123" not in path.read_text()
    lines = path.read_text().splitlines()
    assert lines[1] == '{"key": "half'  # the one torn line, left where it was
    assert [json.loads(line)["key"] for line in lines[:1] + lines[2:]] == [key, "k2"]
