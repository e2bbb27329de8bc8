"""A real HTTP server on 127.0.0.1 speaking the OpenAI batch API, for tests: files
(multipart upload, content download) and batches (create, retrieve, list), processed in
a background thread with the same `responder(request_json) -> Reply` as `ChatServer`.

Faults: `item_faults` maps a prompt (its last message's content) to a fault applied the
first time that prompt is processed: "500" (error file, HTTP 500), "400" (error file,
HTTP 400), "malformed" (output line with a body without choices), "garbled" (an output
line that is not JSON). `expire_batches=n` expires the next n batches created, after
processing their first `expire_keep` items (a partial output file, as real expired
batches have). `fail_batches=n` fails the next n batches at validation (no output).

Holds (a test kills the client while it waits): `hold="upload"` holds every upload
response (the file is stored), `hold="create"` every batch-create response (the batch is
made), `hold="batch"` keeps every batch `in_progress`, `hold="download"` sends the first
`hold_download_lines` lines of an output file then holds the rest; `release()` lets all go
on (`held` counts the holds reached).

`inject("500", "429")`: the next API calls (any route) fail with those statuses.

Counts: `uploads`, `batches_created`, `submitted` (per prompt: how many batches carried
it), `paid` (per prompt: how many times it was run and billed, i.e. given an HTTP 200 line,
malformed or garbled ones included), `retrievals`, `downloads`, `lists`, `authorizations`.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
import uuid
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from chat_server import LocalServer, Reply, wait_for  # noqa: F401  (wait_for: for the tests' convenience)
from soda_plugin.miniature.teacher_server import chat_completion_body

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()}


class BatchServer(LocalServer):
    def __init__(self, responder: Callable[[dict], Reply], *, item_faults: dict[str, str] | None = None,
                 expire_batches: int = 0, expire_keep: int = 0, fail_batches: int = 0, hold: str | None = None,
                 hold_download_lines: int = 0, validating_s: float = 0.02):
        self.responder = responder
        self.item_faults = dict(item_faults or {})
        self.expire_batches, self.expire_keep = expire_batches, expire_keep
        self.fail_batches = fail_batches
        self.hold, self.hold_download_lines, self.validating_s = hold, hold_download_lines, validating_s
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.uploads = self.batches_created = self.retrievals = self.downloads = self.lists = self.held = 0
        self.submitted: Counter = Counter()
        self.paid: Counter = Counter()
        self.api_faults: deque[str] = deque()
        self.faulted: Counter = Counter()
        self.authorizations: set[str] = set()
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._tag = uuid.uuid4().hex[:8]
        self._serve(self._handler())

    def inject(self, *statuses: str) -> None:
        """The next API calls (any route) answer these HTTP statuses, e.g. "500", "429"."""
        with self.lock:
            self.api_faults.extend(statuses)

    def _wait_gate(self, kind: str) -> None:
        if self.hold == kind and not self._gate.is_set():
            with self.lock:
                self.held += 1
            self._gate.wait()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{self._tag}-{next(self._ids)}"  # unique across servers, as a provider's ids are

    def _store(self, data: bytes, purpose: str, filename: str = "") -> dict:
        file = {"id": self._new_id("file"), "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        with self.lock:
            self.files[file["id"]] = {**file, "data": data}
        return file

    # -- batch processing
    def create_batch(self, request: dict) -> dict:
        data = self.files[request["input_file_id"]]["data"]
        items = [json.loads(line) for line in data.splitlines() if line.strip()]
        with self.lock:
            expire = self.expire_batches > 0
            self.expire_batches -= expire
            self.batches_created += 1
            for item in items:
                self.submitted[item["body"]["messages"][-1]["content"]] += 1
            batch = {"id": self._new_id("batch"), "object": "batch", "endpoint": request["endpoint"],
                     "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
                     "status": "validating", "created_at": int(time.time()), "output_file_id": None,
                     "error_file_id": None, "request_counts": {"total": len(items), "completed": 0, "failed": 0}}
            self.batches[batch["id"]] = batch
        threading.Thread(target=self._process, args=(batch["id"], items, expire), daemon=True).start()
        return dict(batch)

    def _process(self, batch_id: str, items: list[dict], expire: bool) -> None:
        time.sleep(self.validating_s)
        with self.lock:
            fail = self.fail_batches > 0
            self.fail_batches -= fail
            if fail:  # as a batch that fails validation: no output, no error file
                self.batches[batch_id].update(status="failed", errors={"object": "list", "data": [
                    {"code": "invalid_request", "message": "injected validation failure"}]})
                return
        with self.lock:
            self.batches[batch_id]["status"] = "in_progress"
        self._wait_gate("batch")
        output, errors = [], []
        for number, item in enumerate(items):
            if expire and number >= self.expire_keep:
                break
            content = item["body"]["messages"][-1]["content"]
            with self.lock:
                fault = self.item_faults.pop(content, None)
                if fault:
                    self.faulted[fault] += 1
            line = {"id": f"req-{batch_id}-{number}", "custom_id": item["custom_id"], "error": None}
            if fault in ("500", "400"):
                errors.append({**line, "response": {"status_code": int(fault), "request_id": "r",
                                                    "body": {"error": {"message": f"fault {fault}"}}}})
                continue
            with self.lock:
                self.paid[content] += 1
            if fault == "garbled":
                output.append(f'{{"custom_id": "{item["custom_id"]}", "response": {{"status_'.encode())
                continue
            reply = self.responder(item["body"])
            body = chat_completion_body(item["body"].get("model", "test"), reply.text, reply.finish_reason,
                                        reply.prompt_tokens, reply.completion_tokens)
            if fault == "malformed":
                body["choices"] = []
            output.append(json.dumps({**line, "response": {"status_code": 200, "request_id": "r", "body": body}}).encode())
        encode = lambda lines: b"".join(  # noqa: E731
            (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)
        output_file = self._store(encode(output), "batch_output") if output else None
        error_file = self._store(encode(errors), "batch_output") if errors else None
        with self.lock:
            batch = self.batches[batch_id]
            batch.update(status="expired" if expire else "completed",
                         output_file_id=output_file and output_file["id"], error_file_id=error_file and error_file["id"],
                         request_counts={"total": len(items), "completed": len(output), "failed": len(errors)})

    def all_closed(self) -> bool:
        with self.lock:
            return all(batch["status"] in TERMINAL for batch in self.batches.values())

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, value: dict, status: int = 200) -> None:
                self._send(status, json.dumps(value).encode())

            def _read(self) -> bytes:
                with server.lock:
                    server.authorizations.add(self.headers.get("Authorization", ""))
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _api_fault(self) -> bool:
                with server.lock:
                    status = server.api_faults.popleft() if server.api_faults else None
                if status:
                    self._json({"error": {"message": f"injected {status}"}}, int(status))
                return bool(status)

            def do_POST(self):
                body, path = self._read(), urlsplit(self.path).path
                if self._api_fault():
                    return
                if path == "/v1/files":
                    parts = parse_multipart(self.headers["Content-Type"], body)
                    file = server._store(parts["file"], parts["purpose"].decode())
                    with server.lock:
                        server.uploads += 1
                    server._wait_gate("upload")
                    return self._json(file)
                if path == "/v1/batches":
                    batch = server.create_batch(json.loads(body))
                    server._wait_gate("create")
                    return self._json(batch)
                self._json({"error": {"message": f"no route {path}"}}, 404)

            def do_GET(self):
                self._read()
                if self._api_fault():
                    return
                parts = urlsplit(self.path)
                segments = parts.path.strip("/").split("/")
                if segments[:2] == ["v1", "batches"] and len(segments) == 3:
                    with server.lock:
                        server.retrievals += 1
                        batch = server.batches.get(segments[2])
                    return self._json(batch) if batch else self._json({"error": {"message": "no batch"}}, 404)
                if segments == ["v1", "batches"]:
                    return self._list(parse_qs(parts.query))
                if segments[:2] == ["v1", "files"] and len(segments) == 4 and segments[3] == "content":
                    return self._content(segments[2])
                self._json({"error": {"message": f"no route {parts.path}"}}, 404)

            def _list(self, query: dict) -> None:
                limit, after = int(query.get("limit", ["20"])[0]), query.get("after", [None])[0]
                with server.lock:
                    server.lists += 1
                    newest_first = list(reversed(server.batches.values()))
                if after:
                    newest_first = newest_first[[b["id"] for b in newest_first].index(after) + 1:]
                page = newest_first[:limit]
                self._json({"object": "list", "data": page, "has_more": len(newest_first) > limit,
                            "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None})

            def _content(self, file_id: str) -> None:
                file = server.files.get(file_id)
                if file is None:
                    return self._json({"error": {"message": "no file"}}, 404)
                with server.lock:
                    server.downloads += 1
                data = file["data"]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.hold == "download" and file["purpose"] == "batch_output" and not server._gate.is_set():
                    head = b"".join(data.splitlines(keepends=True)[:server.hold_download_lines])
                    self.wfile.write(head)
                    self.wfile.flush()
                    server._wait_gate("download")
                    data = data[len(head):]
                self.wfile.write(data)

        return Handler
