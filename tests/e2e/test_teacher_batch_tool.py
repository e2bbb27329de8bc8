"""`tools/collect_teacher.py --batch` as a user runs it, against a real local batch server
(`tests/batch_server.py`): every fault kind in one run, SIGKILL at each step (upload,
batch create, polling, download) then re-run, and the bound on the wait. The claims are
read from the output file, the journal, the manifest and the server's own counts."""

import json
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from batch_server import BatchServer, wait_for
from chat_server import Reply
from soda_data import write_jsonl
from soda_plugin.format.prompt_id import prompt_id

pytestmark = pytest.mark.e2e
TOOL = Path(__file__).resolve().parents[2] / "tools" / "collect_teacher.py"
PROMPTS = [[{"role": "user", "content": f"Explain idea number {i}."}] for i in range(40)]
CONTENT = [p[0]["content"] for p in PROMPTS]


def answer(request):
    return Reply(f"Idea: {request['messages'][-1]['content']}", "stop", 9, 4)


def command(prompts, out, server, *extra):
    return [sys.executable, str(TOOL), "--prompts", str(prompts), "--out", str(out), "--model", "teacher-m",
            "--max-tokens", "64", "--no-progress", "--batch", "--base-url", server.base_url, "--batch-poll", "0.05",
            "--max-attempts", "2", *extra]


def env(**values):
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "", **values}


def rows(out):
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def complete_lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def journal(out):
    path = out.with_name(f"{out.stem}.batches.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def last_run(out):
    return json.loads(out.with_name(f"{out.stem}.run.json").read_text())["last_run"]


def assert_every_prompt_once(out, prompts=PROMPTS):
    found = rows(out)
    ids = [row["prompt_id"] for row in found]
    assert len(ids) == len(set(ids)) == len(prompts) and set(ids) == {prompt_id(p) for p in prompts}
    assert all(row["teacher_response"] == f"Idea: {row['content'][0]['content']}" for row in found)


@pytest.fixture
def prompts_file(tmp_path):
    return write_jsonl([{"content": p} for p in PROMPTS], tmp_path / "prompts.jsonl")


def test_every_fault_is_counted_resubmitted_once_and_the_key_stays_secret(tmp_path, prompts_file):
    secret = f"sk-test-SECRET-{uuid.uuid4().hex}"
    out = tmp_path / "out" / "teacher.jsonl"
    # Files of 15: the first batch expires after 5 items; faults in the other two.
    faults = {CONTENT[16]: "500", CONTENT[17]: "400", CONTENT[18]: "malformed", CONTENT[31]: "garbled"}
    with BatchServer(answer, item_faults=faults, expire_batches=1, expire_keep=5) as server:
        args = command(prompts_file, out, server, "--batch-max-requests", "15", "--price-in", "2", "--price-out", "8")
        run = subprocess.run(args, env=env(OPENAI_API_KEY=secret), capture_output=True, text=True, timeout=120)
        submitted, authorizations = dict(server.submitted), set(server.authorizations)
        uploads, created = server.uploads, server.batches_created
    assert run.returncode == 3, run.stdout + run.stderr[-3000:]
    assert "1 prompts have no answer: re-run" in run.stdout and "{'bad_request': 1}" in run.stdout
    assert_every_prompt_once(out, [p for i, p in enumerate(PROMPTS) if i != 17])
    resubmitted = {CONTENT[i] for i in [*range(5, 15), 16, 18, 31]}  # expired, 500, malformed, garbled
    assert submitted == {c: 2 if c in resubmitted else 1 for c in CONTENT}
    # three files, then the 13 items to resubmit in one to three files (as the batches close)
    assert 4 <= uploads == created <= 6
    figures = last_run(out)
    assert figures["failed"] == {"bad_request": 1} and figures["answered"] == 39
    assert figures["retries"] == {"expired": 10, "server_error": 1, "malformed": 2}
    assert figures["batch"]["items_resubmitted"] == 13 and figures["batch"]["unreadable_lines"] == 1
    assert figures["batch"]["statuses"] == {"expired": 1, "completed": 3}
    # 39 answers of 9 + 4 tokens at half of $2 / $8 per 1M.
    assert figures["cost"] == pytest.approx((39 * 9 * 2 + 39 * 4 * 8) / 1e6 * 0.5)
    assert authorizations == {f"Bearer {secret}"} and secret not in run.stdout + run.stderr
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert b"SECRET" not in path.read_bytes(), path

    # A re-run sends only the prompt without an answer (the 400 fault is spent: it succeeds now).
    with BatchServer(answer) as server:
        rerun = subprocess.run(command(prompts_file, out, server), env=env(), capture_output=True, text=True,
                               timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr[-3000:]
        assert dict(server.submitted) == {CONTENT[17]: 1}
    assert_every_prompt_once(out)


def _kill_when(args, condition, server):
    killed = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: killed.poll() is not None or condition(), timeout_s=60)
    assert killed.poll() is None, "the tool ended before the kill"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    server.release()


@pytest.mark.parametrize("hold", ["upload", "create", "batch", "download"])
def test_sigkill_at_each_step_then_rerun_sends_nothing_twice(tmp_path, prompts_file, hold):
    out = tmp_path / "teacher.jsonl"
    with BatchServer(answer, hold=hold, hold_download_lines=7) as server:
        args = command(prompts_file, out, server)
        if hold == "batch":  # killed while polling: the batch is known, the tool is asking after it
            condition = lambda: server.retrievals >= 3  # noqa: E731
        elif hold == "download":  # killed mid-download, with the first 7 answers written
            condition = lambda: server.held == 1 and complete_lines(out) == 7  # noqa: E731
        else:
            condition = lambda: server.held == 1  # noqa: E731
        _kill_when(args, condition, server)
        before = journal(out)
        uploads, created = server.uploads, server.batches_created
        assert uploads == 1 and created == (0 if hold == "upload" else 1)
        # What the journal held at the kill: the upload's response never came, so no file id.
        assert [e["event"] for e in before] == {"upload": [], "create": ["file"]}.get(hold, ["file", "batch"])
        assert len(rows(out)) == (7 if hold == "download" else 0)

        rerun = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr[-3000:]
        submitted, lists = dict(server.submitted), server.lists
        uploads_after, created_after = server.uploads, server.batches_created
    assert_every_prompt_once(out)
    assert submitted == {c: 1 for c in CONTENT}  # no prompt carried by two batches
    # Only an upload whose id never reached the journal is sent again (and never made a batch).
    assert (uploads_after, created_after) == ((2, 1) if hold == "upload" else (1, 1))
    if hold == "create":  # the batch made before the kill was found on the server, not made again
        assert lists >= 1 and last_run(out)["batch"]["batches_resumed"] == 1
    assert [e["event"] for e in journal(out)].count("closed") == 1


def test_the_wait_is_bounded_and_a_rerun_resumes_the_same_batch(tmp_path, prompts_file):
    out = tmp_path / "teacher.jsonl"
    with BatchServer(answer, hold="batch") as server:
        args = command(prompts_file, out, server)
        waited = subprocess.run([*args, "--batch-max-wait", "0.5"], env=env(), capture_output=True, text=True,
                                timeout=120)
        assert waited.returncode == 4, waited.stdout + waited.stderr[-3000:]
        assert "still unfinished after `--batch-max-wait` 0.5 s" in waited.stdout
        assert "re-run the same command to resume polling" in waited.stdout
        assert json.loads(out.with_name("teacher.run.json").read_text())["status"] == "interrupted"
        server.release()
        rerun = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr[-3000:]
        assert (server.uploads, server.batches_created) == (1, 1)
    assert_every_prompt_once(out)


def test_dry_run_in_batch_mode_prices_at_the_discount(tmp_path, prompts_file):
    def dry(*extra):
        run = subprocess.run([sys.executable, str(TOOL), "--prompts", str(prompts_file), "--out",
                              str(tmp_path / "t.jsonl"), "--model", "m", "--max-tokens", "64", "--dry-run",
                              "--price-in", "2", "--price-out", "8", *extra],
                             env=env(), capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout

    online, batch = dry(), dry("--batch", "--batch-discount", "0.25")
    cost = lambda text: float(re.search(r"= \$(\d+\.\d+)", text).group(1))  # noqa: E731
    assert cost(batch) == pytest.approx(cost(online) * 0.25, abs=1e-4) and cost(online) > 0
    assert "at batch prices (x0.25 of --price-in/--price-out)" in batch
    assert not list(tmp_path.glob("t*"))  # a dry run writes nothing, no journal either
