"""The miniature's teacher: a program served over HTTP on 127.0.0.1 that speaks the
chat-completions API, so the teacher and judge tools reach it exactly as they reach a
vendor's API.

As a teacher it answers the task families of `tasks.py` exactly, in one concise style.
With `temperature` above `NOISY_TEMPERATURE` it plays a careless teacher: the final value
is corrupted (seeded per prompt), which is the "deliberately bad teacher" of the ablation.
As a judge (a request rendered from the judge template) it grades each answer by whether
its final value is right, the way a strong judge would on these tasks.

Every chat request is appended to a request log (`--request-log`; the demo's is
`<out>/logs/teacher_server.requests.jsonl`) as it arrives, before it is answered: one line
`{"kind": "teacher" | "judge", "sha256": <hash of the request's messages and sampling>}`.
The log outlives a kill of the whole run, so what the teacher was asked, and how often, is
read from it rather than from the tools' own accounts.

Run it:  python -m soda_plugin.miniature.teacher_server --port-file PATH [--request-log PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

from . import tasks

NOISY_TEMPERATURE = 1.2
UNKNOWN_REPLY = ("I can only answer arithmetic, next or previous number, comparison, unit conversion, "
                 "first or last word, and plural questions.")
# Judge replies are produced by a function that reads the rendered judge prompt (set by
# `judge_responder.py`, which knows the judge template); None means "not a judge request".
JudgeFn = Callable[[list[dict]], str | None]


def _words(text: str) -> int:
    return max(1, len(text.split()))


def corrupt(value: str, key: str) -> str:
    """A wrong but plausible version of `value`: one digit or letter changed, seeded by `key`."""
    rng = random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))
    positions = [i for i, ch in enumerate(value) if ch.isalnum()]
    if not positions:
        return value + "?"
    i = rng.choice(positions)
    pool = "0123456789" if value[i].isdigit() else "abcdefghijklmnopqrstuvwxyz"
    replacement = rng.choice([c for c in pool if c != value[i]])
    return value[:i] + replacement + value[i + 1:]


def teacher_reply(messages: list[dict], temperature: float, max_tokens: int | None) -> tuple[str, str]:
    """(text, finish_reason) of the teacher for a chat request."""
    question = str(messages[-1].get("content", "")) if messages else ""
    text = tasks.teacher_answer(question)
    if text is None:
        text = UNKNOWN_REPLY
    elif temperature > NOISY_TEMPERATURE:
        working, _, value = text.rpartition(tasks.ANSWER_PREFIX)
        text = f"{working}{tasks.ANSWER_PREFIX} {corrupt(value.strip(), question)}"
    words = text.split(" ")
    if max_tokens is not None and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return text, "stop"


def chat_completion_body(model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": f"chatcmpl-{int(time.time() * 1000)}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def request_key(request: dict) -> str:
    """The hash a request is logged under: its messages and every sampling field it sent."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RequestLog:
    """Appends one JSON line per chat request to `path` (created if missing, never truncated:
    a resumed run's requests follow the killed run's). Each line is one unbuffered append, so
    a kill leaves only whole lines."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def record(self, kind: str, request: dict) -> None:
        line = json.dumps({"kind": kind, "sha256": request_key(request)}) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())


def make_server(port: int = 0, judge: JudgeFn | None = None, request_log: RequestLog | None = None
                ) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/").endswith("/models"):
                return self._send(200, {"object": "list", "data": [{"id": "program-teacher", "object": "model"}]})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                messages = list(request["messages"])
            except (ValueError, KeyError, TypeError) as error:
                return self._send(400, {"error": {"message": f"bad request: {error}"}})
            verdict = judge(messages) if judge else None
            if request_log is not None:
                request_log.record("teacher" if verdict is None else "judge", request)
            if verdict is not None:
                text, finish = verdict, "stop"
            else:
                text, finish = teacher_reply(messages, float(request.get("temperature") or 0.0),
                                             request.get("max_tokens") or request.get("max_completion_tokens"))
            prompt_words = sum(_words(str(m.get("content", ""))) for m in messages)
            self._send(200, chat_completion_body(request.get("model", "program-teacher"), text, finish,
                                                 prompt_words, _words(text)))

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def request_log_path(log_path: Path) -> Path:
    """Where `running_teacher` has the server log its requests: beside its output log."""
    return log_path.with_suffix(".requests.jsonl")


@contextmanager
def running_teacher(log_path: Path, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Start the teacher in its own process, its requests logged to `request_log_path(log_path)`;
    yield its base URL; stop it on exit."""
    port_file = log_path.with_suffix(".port")
    port_file.unlink(missing_ok=True)
    with open(log_path, "a") as log:
        process = subprocess.Popen([sys.executable, "-m", "soda_plugin.miniature.teacher_server",
                                    "--port-file", str(port_file), "--request-log", str(request_log_path(log_path))],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not port_file.is_file() or not port_file.read_text().strip():
            if process.poll() is not None:
                raise RuntimeError(f"the local teacher exited with code {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the local teacher did not start within {startup_timeout_s} s; see {log_path}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{int(port_file.read_text())}/v1"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--request-log", type=Path, help="append one line per chat request here (module docstring)")
    args = parser.parse_args(argv)
    from .judge_responder import judge_verdict

    server = make_server(args.port, judge=judge_verdict,
                         request_log=RequestLog(args.request_log) if args.request_log else None)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, args.port_file)
    print(f"local teacher listening on http://127.0.0.1:{port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
