"""`tools/collect_teacher.py` as a user runs it, against a real local chat server:
SIGKILL mid-run then re-run, the API key kept secret, `--dry-run`, `--exclude-eval`."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from chat_server import ChatServer, Reply
from soda_plugin.prompt_id import prompt_id
from soda_data import write_jsonl

pytestmark = pytest.mark.e2e
TOOL = Path(__file__).resolve().parents[2] / "tools" / "collect_teacher.py"
PROMPTS = [[{"role": "user", "content": f"Explain idea number {i}."}] for i in range(60)]
CONCURRENCY = 4


def answer(request):
    return Reply(f"Idea: {request['messages'][-1]['content']}", "stop", 9, 4)


def command(prompts, out, *extra):
    return [sys.executable, str(TOOL), "--prompts", str(prompts), "--out", str(out), "--model", "teacher-m",
            "--concurrency", str(CONCURRENCY), "--max-tokens", "64", "--no-progress", *extra]


def env(**values):
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "", **values}


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_sigkill_then_rerun_loses_nothing_duplicates_nothing_and_pays_nothing_twice(tmp_path):
    prompts = write_jsonl([{"content": p} for p in PROMPTS], tmp_path / "prompts.jsonl")
    out = tmp_path / "teacher.jsonl"
    with ChatServer(answer, latency_s=0.1) as server:
        args = command(prompts, out, "--base-url", server.base_url)
        killed = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while len(lines(out)) < 12 and time.time() < deadline and killed.poll() is None:
            time.sleep(0.02)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        time.sleep(0.3)  # let the server finish the requests that were in flight
        partial = {json.loads(line)["prompt_id"] for line in lines(out)}
        assert 0 < len(partial) < len(PROMPTS), "the kill must land mid-run"
        requests_before = server.requests

        rerun = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=60)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert f"{len(partial)} already answered" in rerun.stdout
        # The re-run asked exactly the prompts missing from the output, each once.
        assert server.requests - requests_before == len(PROMPTS) - len(partial)
        delivered = dict(server.answered_by_prompt)

    rows = [json.loads(line) for line in lines(out)]
    ids = [row["prompt_id"] for row in rows]
    assert len(ids) == len(set(ids)) == len(PROMPTS) and set(ids) == {prompt_id(p) for p in PROMPTS}
    assert all(row["teacher_response"] == f"Idea: {row['content'][0]['content']}" for row in rows)
    # An answer can be paid twice only if it was in flight at the kill and never written.
    twice = {text for text, count in delivered.items() if count > 1}
    assert len(twice) <= CONCURRENCY and not {prompt_id([{"role": "user", "content": t}]) for t in twice} & partial
    assert set(delivered) == {p[0]["content"] for p in PROMPTS}


def test_the_api_key_reaches_the_server_and_nowhere_else(tmp_path):
    secret = f"sk-test-SECRET-{uuid.uuid4().hex}"
    prompts = write_jsonl([{"content": p} for p in PROMPTS[:6]], tmp_path / "prompts.jsonl")
    out = tmp_path / "out" / "teacher.jsonl"
    with ChatServer(answer) as server:
        server.inject("500", "400")  # a retried error and a rejected request: error texts are reported too
        run = subprocess.run(command(prompts, out, "--base-url", server.base_url, "--max-attempts", "3",
                                     "--price-in", "1", "--price-out", "2"),
                             env=env(OPENAI_API_KEY=secret, SODA_LOG_LEVEL="DEBUG"),
                             capture_output=True, text=True, timeout=60)
        authorizations = set(server.authorizations)
    assert run.returncode == 3 and "1 prompts have no answer: re-run" in run.stdout, run.stderr[-2000:]
    assert authorizations == {f"Bearer {secret}"}
    assert secret not in run.stdout and secret not in run.stderr
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {p.name for p in written} >= {"teacher.jsonl", "teacher.run.json"}
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
        assert b"SECRET" not in path.read_bytes(), path


def test_dry_run_estimates_and_excludes_evaluation_prompts_without_a_server(tmp_path):
    prompts = write_jsonl([{"content": p} for p in PROMPTS[:10]], tmp_path / "prompts.jsonl")
    vicuna = write_jsonl([{"text": "explain IDEA number 3."}, {"text": "Something else"}], tmp_path / "vicuna.jsonl")
    run = subprocess.run(command(prompts, tmp_path / "teacher.jsonl", "--dry-run", "--price-in", "2",
                                 "--price-out", "8", "--exclude-eval", f"vicuna={vicuna}"),
                         env=env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "1 evaluation prompts dropped (vicuna (2 prompts): 0 exact + 1 normalized" in run.stdout
    # 9 prompts of 22 or 23 characters: 6 tokens each + 4 per message + 3 per request; 64 per answer.
    assert "dry run: 9 prompts would be sent; about 117 prompt tokens (characters / 4" in run.stdout
    assert "576 completion tokens (max_tokens per prompt, an upper bound) = $0.0048" in run.stdout
    assert not (tmp_path / "teacher.jsonl").exists() and not (tmp_path / "teacher.run.json").exists()
