"""`soda judge score --batch` and `soda pairs --judge-filter --batch` as a user runs them
(`tools/judge.py`, `tools/build_pairs.py`), against the real local batch server
(`tests/batch_server.py`) playing the judge: faults, SIGKILL mid-download and between
submit and download, the bound on the wait, then re-runs. The claims are read from the
server's own counts (`submitted`: batches that carried each request; `paid`: times each
was run and billed), the journals, the cache, `results.json`, the pair files and
`build_report.json`."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batch_server import BatchServer, wait_for
from judge_data import write_answers, write_eval_file
from judge_responder import JudgeResponder, reference_text
from soda_data import pair_inputs
from soda_plugin.pairs import iter_pairs
from soda_plugin.verdict import load_template

pytestmark = pytest.mark.e2e
TOOLS = Path(__file__).resolve().parents[2] / "tools"
TEMPLATE = load_template()
PROMPTS = ["Name a prime.", "Describe the sea.", "Why is the sky blue?"]
BASE = {PROMPTS[0]: "2 q=8", PROMPTS[1]: "blue q=4", PROMPTS[2]: "Rayleigh q=10"}


def env():
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1", "OPENAI_API_KEY": ""}


def verdict_content(question, answer_1, answer_2):
    return TEMPLATE.render(question, answer_1, answer_2)[-1]["content"]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def kill_when(args, condition, server, release=True):
    killed = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: killed.poll() is not None or condition(), timeout_s=60)
    assert killed.poll() is None, "the tool ended before the kill"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    if release:
        server.release()


def test_judge_score_batch_killed_mid_download_then_rerun_pays_each_call_once(tmp_path):
    eval_file = write_eval_file(tmp_path / "vicuna.jsonl", PROMPTS)
    answers = write_answers(tmp_path / "answers", BASE)
    out, cache = tmp_path / "scores", tmp_path / "scores" / "cache"
    args = [sys.executable, str(TOOLS / "judge.py"), "score", "--batch", "--judge-base-url", "URL", "--judge-model",
            "judge-model", "--out", str(out), "--benchmarks", "vicuna", "--eval-file", f"vicuna={eval_file}",
            "--models", f"base={answers}", "--bootstrap-resamples", "200", "--no-progress", "--batch-poll", "0.05",
            "--max-attempts", "2", "--price-in", "2", "--price-out", "8"]
    # The references' batch expires after two items (the third then meets a 500); the run is killed
    # while that batch's result file is half sent (its first line read and cached).
    with BatchServer(JudgeResponder(), item_faults={PROMPTS[2]: "500"}, expire_batches=1, expire_keep=2,
                     hold="download", hold_download_lines=1) as server:
        args[args.index("URL")] = server.base_url
        kill_when(args, lambda: server.held == 1 and len(lines(cache / "references.jsonl")) == 1, server)
        assert [e["event"] for e in lines(cache / "batches.references.jsonl")] == ["file", "batch"]
        rerun = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr[-3000:]
        submitted, paid, created = dict(server.submitted), dict(server.paid), server.batches_created
    verdicts = {verdict_content(p, a, reference_text(p)) for p, a in BASE.items()} | {
        verdict_content(p, reference_text(p), a) for p, a in BASE.items()}
    assert submitted == {PROMPTS[0]: 1, PROMPTS[1]: 1, PROMPTS[2]: 3, **{c: 1 for c in verdicts}}
    assert paid == {c: 1 for c in [*PROMPTS, *verdicts]}  # nothing paid twice, the kill included
    assert created == 3 + 1
    document = json.loads((out / "results.json").read_text())
    assert document["results"][0]["score"] == pytest.approx(100 * (0.5 + 1 / 3 + 10 / 18) / 3)
    usage = document["usage"]
    assert usage["batch"]["batches_resumed"] == 1 and usage["batch"]["items_resubmitted"] == 2
    assert usage["batch"]["statuses"] == {"expired": 1, "completed": 3}
    # This run paid 2 references (10 + 20 tokens) and 6 verdicts (50 + 8), at half of $2 / $8 per 1M;
    # the reference read before the kill is cached, not counted again.
    assert usage["requests"] == 8
    assert usage["cost"] == pytest.approx((2 * (10 * 2 + 20 * 8) + 6 * (50 * 2 + 8 * 8)) / 1e6 * 0.5)
    assert len(lines(cache / "references.jsonl")) == 3 and len(lines(cache / "verdicts.jsonl")) == 6
    assert [e["event"] for e in lines(cache / "batches.references.jsonl")].count("closed") == 3


CASES = [  # (teacher answer, q0 answer, mark): see tests/unit/test_pair_filter.py
    ("Teacher: 0. q=9", "Student: 1. q=3", "teacher_won"),
    ("Teacher: 2. q=3", "Student: 3. q=8", "teacher_not_better"),
    ("Teacher: 4. q=9/5", "Student: 5. q=6/3", "teacher_won"),
    ("Teacher: 6. q=8/6", "Student: 7. q=8/6", "teacher_not_better"),
]


def test_pairs_judge_filter_batch_killed_before_download_bounded_wait_then_rerun(tmp_path):
    teacher, snapshot = pair_inputs(CASES, tmp_path)
    out = tmp_path / "pairs"
    with BatchServer(JudgeResponder(), hold="batch") as server:
        args = [sys.executable, str(TOOLS / "build_pairs.py"), "--teacher", str(teacher), "--snapshot", str(snapshot),
                "--out", str(out), "--judge-filter", "--judge-base-url", server.base_url, "--judge-model", "judge-m",
                "--batch", "--batch-poll", "0.05", "--judge-max-attempts", "2", "--no-progress",
                "--judge-price-in", "2", "--judge-price-out", "8"]
        # Killed after the batch was submitted, while it polls it (before any download).
        kill_when(args, lambda: server.retrievals >= 3, server, release=False)
        assert (server.uploads, server.batches_created) == (1, 1)
        journal = out / "judge_cache" / "batches.verdicts.jsonl"
        assert [e["event"] for e in lines(journal)] == ["file", "batch"]
        waited = subprocess.run([*args, "--batch-max-wait", "0.5"], env=env(), capture_output=True, text=True,
                                timeout=120)
        assert waited.returncode == 4, waited.stdout + waited.stderr[-3000:]
        assert "still unfinished after `--batch-max-wait` 0.5 s" in waited.stdout
        assert not (out / "build_report.json").exists() and not list((out / "data").glob("*"))
        server.release()
        rerun = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr[-3000:]
        submitted, paid, created = dict(server.submitted), dict(server.paid), server.batches_created
    contents = {verdict_content(f"Question {i}?", *pair) for i, (t, q, _) in enumerate(CASES)
                for pair in ((t, q), (q, t))}
    assert created == 1 and submitted == paid == {c: 1 for c in contents}  # 8 verdicts, each sent and paid once
    assert {p["teacher_response"] for p in iter_pairs(out)} == {t for t, _, mark in CASES if mark == "teacher_won"}
    report = json.loads((out / "build_report.json").read_text())["judge_filter"]
    assert report["counts"]["dropped"] == 2 and report["settings"]["mode"] == "batch"
    assert report["usage"]["batch"]["batches_resumed"] == 1 and report["usage"]["batch"]["items_submitted"] == 0
    assert report["usage"]["cost"] == pytest.approx(8 * (50 * 2 + 8 * 8) / 1e6 * 0.5)
    assert [e["event"] for e in lines(journal)] == ["file", "batch", "closed"]
