"""`tools/collect_teacher.py` as a user runs it, against a real local chat server:
SIGKILL mid-run then re-run, the API key kept secret, `--dry-run`, `--exclude-eval`."""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from chat_server import ChatServer, Reply, wait_for
from soda_plugin.format.prompt_id import prompt_id
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


def complete_lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_then_rerun_loses_nothing_duplicates_nothing_and_pays_nothing_twice(tmp_path):
    prompts = write_jsonl([{"content": p} for p in PROMPTS], tmp_path / "prompts.jsonl")
    out = tmp_path / "teacher.jsonl"
    written_at_kill = 12
    with ChatServer(answer, hold_after=written_at_kill) as server:
        args = command(prompts, out, "--base-url", server.base_url)
        killed = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Killed with every lane's request held by the server and every answer it got written:
        # no request can reach the server after the kill, so the counts below are exact.
        assert wait_for(lambda: killed.poll() is not None or (
            server.held == CONCURRENCY and complete_lines(out) == written_at_kill))
        assert killed.poll() is None, "the tool ended before the kill"
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        server.release()
        partial = {json.loads(line)["prompt_id"] for line in lines(out)}
        assert len(partial) == written_at_kill and server.requests == written_at_kill + CONCURRENCY

        rerun = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=60)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert f"{len(partial)} already answered" in rerun.stdout
        # The re-run asked exactly the prompts missing from the output, each once.
        assert server.requests - written_at_kill - CONCURRENCY == len(PROMPTS) - len(partial)
        delivered = dict(server.answered_by_prompt)
        abandoned = server.abandoned

    rows = [json.loads(line) for line in lines(out)]
    ids = [row["prompt_id"] for row in rows]
    assert len(ids) == len(set(ids)) == len(PROMPTS) and set(ids) == {prompt_id(p) for p in PROMPTS}
    assert all(row["teacher_response"] == f"Idea: {row['content'][0]['content']}" for row in rows)
    # The held requests were never delivered (their client was gone): nothing was paid twice.
    assert abandoned == CONCURRENCY and delivered == {p[0]["content"]: 1 for p in PROMPTS}


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
