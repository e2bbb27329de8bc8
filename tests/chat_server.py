"""A real HTTP server on 127.0.0.1 speaking the chat-completions API, for tests.

`responder(request_json) -> Reply` makes the answer. Faults are queued per request:
"429", "429-retry-after", "500", "503", "hang" (sleep past the client's timeout),
"drop" (close the connection without answering), "malformed" (invalid JSON body),
"empty_choices", "400" (the request is rejected as invalid). `fault_rate` adds random
faults (drawn from `fault_kinds`, seeded) to requests with no queued fault. Every request
is counted, faulted or not; `answered_by_prompt` counts the usable answers delivered per
prompt (the last message's content) to a client still connected, `abandoned` those whose client
was gone (killed) by the time the answer was ready, and `authorizations` the
`Authorization` headers received.

`hold_after=n` makes every request after the first n wait in its handler until `release()`
(`held` counts them): a test can kill a client while it is known to have calls in flight.
"""

from __future__ import annotations

import json
import random
import select
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from soda_plugin.miniature.teacher_server import chat_completion_body


@dataclass
class Reply:
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 1
    completion_tokens: int = 1


def _client_gone(connection: socket.socket) -> bool:
    """True when the peer closed its end: a client waiting for its answer sends nothing,
    so a readable socket with nothing to read means it hung up (or was killed)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; returns whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def no_sleep(_seconds: float) -> None:
    """A `ChatClient(sleep=...)` that retries at once: tests need no backoff wait."""


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the default backlog (5) refuses connections under high concurrency


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 (a free port), run for the length of a `with` block.
    Subclasses call `_serve(handler_class)` in `__init__`; `release()` opens their gate."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._gate = threading.Event()
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        """Let the held requests (and every later one) go on."""
        self._gate.set()


class ChatServer(LocalServer):
    def __init__(self, responder: Callable[[dict], Reply], *, latency_s: float = 0.0, hang_s: float = 30.0,
                 fault_rate: float = 0.0, fault_kinds: tuple[str, ...] = ("500",), seed: int = 0,
                 hold_after: int | None = None):
        self.responder = responder
        self.latency_s = latency_s
        self.hang_s = hang_s
        self.faults: deque[str] = deque()
        self.fault_rate = fault_rate
        self.fault_kinds = fault_kinds
        self._random = random.Random(seed)
        self.requests = 0
        self.answered = 0
        self.faulted: Counter = Counter()
        self.answered_by_prompt: Counter = Counter()
        self.abandoned = 0
        self.authorizations: set[str] = set()
        self.hold_after = hold_after
        self.held = 0
        self.lock = threading.Lock()
        self._serve(self._handler())

    def inject(self, *faults: str) -> None:
        with self.lock:
            self.faults.extend(faults)

    def _arrive(self) -> tuple[str | None, bool]:
        """Count a request: its fault, and whether it must wait for `release()`."""
        with self.lock:
            self.requests += 1
            gated = self.hold_after is not None and self.requests > self.hold_after and not self._gate.is_set()
            self.held += gated
            if self.faults:
                fault = self.faults.popleft()
            elif self.fault_rate and self._random.random() < self.fault_rate:
                fault = self._random.choice(self.fault_kinds)
            else:
                fault = None
            if fault:
                self.faulted[fault] += 1
            return fault, gated

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as real API servers do: HTTP/1.0 would cost a new connection per request.
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.authorizations.add(self.headers.get("Authorization", ""))
                fault, gated = server._arrive()
                if gated:
                    server._gate.wait()
                if server.latency_s:
                    time.sleep(server.latency_s)
                if fault == "hang":
                    time.sleep(server.hang_s)
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault in ("429", "429-retry-after"):
                    headers = {"Retry-After": "0.2"} if fault == "429-retry-after" else {}
                    return self._send(429, b'{"error": {"message": "rate limited"}}', headers)
                if fault in ("500", "503"):
                    return self._send(int(fault), b'{"error": {"message": "server error"}}')
                if fault == "400":
                    return self._send(400, b'{"error": {"message": "invalid request"}}')
                if fault == "malformed":
                    return self._send(200, b'{"id": "x", "choices": [')
                reply = server.responder(request)
                body = chat_completion_body(request.get("model", "test"), reply.text, reply.finish_reason,
                                            reply.prompt_tokens, reply.completion_tokens)
                if fault == "empty_choices":
                    body["choices"] = []
                messages = request.get("messages") or [{}]
                with server.lock:
                    server.answered += 1
                    if _client_gone(self.connection):
                        server.abandoned += 1
                    elif body["choices"]:
                        server.answered_by_prompt[str(messages[-1].get("content"))] += 1
                return self._send(200, json.dumps(body).encode())

        return Handler
