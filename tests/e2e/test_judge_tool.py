"""`tools/judge.py` as a user runs it: answers from a tiny model, scoring against a real
local judge server, SIGKILL mid-run, secrets, and the table files."""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chat_server import ChatServer, wait_for
from demo_file_states import shard_states
from judge_data import write_answers, write_eval_file
from judge_responder import JudgeResponder
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.snapshot import store

pytestmark = pytest.mark.e2e
TOOL = Path(__file__).resolve().parents[2] / "tools" / "judge.py"
ENV = dict(os.environ, HF_HUB_OFFLINE="1", AXOLOTL_DO_NOT_TRACK="1")


def _tool(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


def _score_args(server, out, models, eval_file, *extra):
    return ["score", "--judge-base-url", server.base_url, "--judge-model", "judge-model", "--out", out,
            "--benchmarks", "vicuna", "--eval-file", f"vicuna={eval_file}", "--bootstrap-resamples", "200",
            "--no-progress", "--models", *[f"{name}={folder}" for name, folder in models.items()], *extra]


def test_answers_from_a_tiny_model_then_score_and_table(tiny_model_dirs, tmp_path):
    prompts = ["Name a prime.", "Describe the sea.", "Why is the sky blue?", "Say hi."]
    vicuna = write_eval_file(tmp_path / "vicuna.jsonl", prompts)
    dolly = write_eval_file(tmp_path / "dolly.jsonl", ["Name a colour.", "Count to three."])
    answer = ["answer", "--model", tiny_model_dirs["llama"], "--out", tmp_path / "answers", "--backend", "transformers",
              "--max-tokens", "6", "--batch-size", "2", "--benchmarks", "vicuna", "dolly",
              "--eval-file", f"vicuna={vicuna}", f"dolly={dolly}", "--no-progress"]
    proc = _tool(*answer)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, n in (("vicuna", 4), ("dolly", 2)):
        manifest = store.read_manifest(tmp_path / "answers" / name)
        assert manifest["sampling"]["temperature"] == 0.0 and manifest["sampling"]["max_tokens"] == 6
        assert manifest["backend"] == "transformers" and len(list(store.iter_rows(tmp_path / "answers" / name))) == n
    answered = {name: shard_states(tmp_path / "answers" / name) for name in ("vicuna", "dolly")}
    again = _tool(*answer)
    assert again.returncode == 0, again.stderr[-3000:]
    # Nothing regenerated: no shard written, none rewritten.
    assert {name: shard_states(tmp_path / "answers" / name) for name in answered} == answered

    with ChatServer(JudgeResponder()) as server:
        proc = _tool("score", "--judge-base-url", server.base_url, "--judge-model", "judge-model",
                     "--out", tmp_path / "scores", "--benchmarks", "vicuna", "dolly", "--eval-file", f"vicuna={vicuna}",
                     f"dolly={dolly}", "--no-progress", "--models", f"base={tmp_path / 'answers'}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.requests == 6 + 6 * 2  # one reference per prompt, two orders per answer
    # the tiny model's answers carry no `q=` tag: quality 5 against the reference's 8
    rows = list(csv.DictReader((tmp_path / "scores" / "scores.csv").open()))
    assert [(r["model"], r["benchmark"], r["score"], r["n_scored"]) for r in rows] == [
        ("base", "vicuna", f"{100 * 5 / 13:.2f}", "4"), ("base", "dolly", f"{100 * 5 / 13:.2f}", "2")]
    markdown = (tmp_path / "scores" / "scores.md").read_text()
    assert "| Model | Vicuna | Dolly |" in markdown and f"| base | {100 * 5 / 13:.1f} [" in markdown
    table = json.loads((tmp_path / "scores" / "scores.json").read_text())
    assert table["table"]["base"]["dolly"]["n_scored"] == 2 and table["protocol"]["template"] == "pairwise_v1"
    _assert_png_with_bars(tmp_path / "scores" / "scores.png")

    redrawn = _tool("table", "--results", tmp_path / "scores" / "results.json", "--out", tmp_path / "redrawn")
    assert redrawn.returncode == 0, redrawn.stderr[-2000:]
    assert (tmp_path / "redrawn" / "scores.md").read_text() == markdown
    assert (tmp_path / "redrawn" / "scores.png").is_file()


def test_several_students_answer_in_one_process_each_in_its_own_folder(tiny_model_dirs, tmp_path):
    prompts = ["Name a prime.", "Say hi.", "Count to two."]
    vicuna = write_eval_file(tmp_path / "vicuna.jsonl", prompts)
    models = {"llama": tiny_model_dirs["llama"], "qwen": tiny_model_dirs["qwen2"]}
    proc = _tool("answer", "--models", *[f"{n}={m}" for n, m in models.items()], "--out", tmp_path / "answers",
                 "--backend", "transformers", "--max-tokens", "4", "--benchmarks", "vicuna",
                 "--eval-file", f"vicuna={vicuna}", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    asked = sorted(prompt_id([{"role": "user", "content": p}]) for p in prompts)
    for name, model in models.items():
        manifest = store.read_manifest(tmp_path / "answers" / name / "vicuna")
        rows = list(store.iter_rows(tmp_path / "answers" / name / "vicuna"))
        assert manifest["model"] == str(model) and manifest["status"] == "complete"
        assert sorted(row["prompt_id"] for row in rows) == asked  # each prompt answered once, in its own folder
    both = _tool("answer", "--model", models["llama"], "--models", f"qwen={models['qwen']}", "--out", tmp_path / "x",
                 "--benchmarks", "vicuna", "--eval-file", f"vicuna={vicuna}")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def _assert_png_with_bars(path):
    from PIL import Image

    from soda_plugin.judge.chart import PALETTE

    image = Image.open(path)
    assert image.format == "PNG" and image.size == (900, 500)
    first_bar = tuple(int(PALETTE[0][i:i + 2], 16) for i in (1, 3, 5))
    assert first_bar in {color for _, color in image.getcolors(maxcolors=1 << 16)}


def _cached_calls(cache_dir):
    """Complete lines in the judge's reference and verdict caches."""
    paths = [cache_dir / "references.jsonl", cache_dir / "verdicts.jsonl"]
    return sum(path.read_bytes().count(b"\n") for path in paths if path.exists())


def _cache_files(cache_dir):
    """Cache file name -> (its bytes, its inode)."""
    return {path.name: (path.read_bytes(), path.stat().st_ino) for path in sorted(cache_dir.glob("*.jsonl"))}


def test_sigkill_mid_score_then_rerun_pays_no_call_twice(tmp_path):
    prompts = [f"Question number {i}?" for i in range(12)]
    eval_file = write_eval_file(tmp_path / "vicuna.jsonl", prompts)
    base = {p: f"base q={i % 9 + 1}" for i, p in enumerate(prompts)}
    soda = {p: f"soda q={(i + 4) % 10 + 1}" for i, p in enumerate(prompts)}
    models = {"base": write_answers(tmp_path / "base", base), "soda": write_answers(tmp_path / "soda", soda)}
    calls_needed = 12 + 2 * 12 * 2
    paid_at_kill, concurrency = 20, 2
    with ChatServer(JudgeResponder(), hold_after=paid_at_kill) as server:
        args = _score_args(server, tmp_path / "scores", models, eval_file, "--concurrency", str(concurrency))
        killed = subprocess.Popen([sys.executable, str(TOOL), *map(str, args)], env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Killed with every lane's call held by the server and every answer it got cached: the
        # one loss no client avoids (an answer received, not yet written) cannot happen here.
        assert wait_for(lambda: killed.poll() is not None or (
            server.held == concurrency and _cached_calls(tmp_path / "scores" / "cache") == paid_at_kill))
        assert killed.poll() is None, "the tool ended before the kill"
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        server.release()
        assert sum(server.answered_by_prompt.values()) == paid_at_kill < calls_needed
        paid = _cache_files(tmp_path / "scores" / "cache")

        rerun = _tool(*args)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert server.abandoned == concurrency  # the held calls found their client gone
        assert max(server.answered_by_prompt.values()) == 1  # no call delivered twice
        assert sum(server.answered_by_prompt.values()) == calls_needed
    # The answers paid before the kill are kept as they were: each cache file is the same file,
    # grown only by appending after them.
    for name, (content, inode) in paid.items():
        path = tmp_path / "scores" / "cache" / name
        assert path.stat().st_ino == inode and path.read_bytes().startswith(content), name
    results = {r["model"]: r for r in json.loads((tmp_path / "scores" / "results.json").read_text())["results"]}
    assert all(r["n_scored"] == 12 and r["excluded"] == {} for r in results.values())
    scored = [json.loads(line) for line in (tmp_path / "scores" / "prompt_scores.jsonl").read_text().splitlines()]
    assert sorted((r["model"], r["prompt_id"]) for r in scored) == sorted(
        {(r["model"], r["prompt_id"]) for r in scored}) and len(scored) == 24
    expected = 100 * sum((i % 9 + 1) / (i % 9 + 1 + 8) for i in range(12)) / 12
    assert results["base"]["score"] == pytest.approx(expected)


def test_the_api_key_reaches_the_server_and_nothing_else(tmp_path):
    secret = "sk-judge-secret-7f3a9c"
    prompts = ["Name a prime.", "Say hi."]
    eval_file = write_eval_file(tmp_path / "vicuna.jsonl", prompts)
    models = {"base": write_answers(tmp_path / "base", {p: "q=6" for p in prompts})}
    env = dict(ENV, MY_JUDGE_KEY=secret)
    with ChatServer(JudgeResponder()) as server:
        server.inject("500", "429")  # retries get logged too
        proc = _tool(*_score_args(server, tmp_path / "scores", models, eval_file, "--api-key-env", "MY_JUDGE_KEY"),
                     env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.authorizations == {f"Bearer {secret}"}
    assert secret not in proc.stdout + proc.stderr
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "verdicts.jsonl" for path in written) and any(path.suffix == ".png" for path in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path


def test_gad_wrapped_answers_then_a_length_controlled_score_with_a_tokenizer(tiny_model_dirs, tmp_path):
    prompts = ["Name a prime.", "Say hi."]
    vicuna = write_eval_file(tmp_path / "vicuna.jsonl", prompts)
    answer = ["answer", "--model", tiny_model_dirs["llama"], "--out", tmp_path / "answers", "--backend", "transformers",
              "--max-tokens", "4", "--benchmarks", "vicuna", "--eval-file", f"vicuna={vicuna}", "--no-progress"]
    proc = _tool(*answer, "--gad-wrapper")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert store.read_manifest(tmp_path / "answers" / "vicuna")["source"].startswith("eval-gad:")
    asked = [row["prompt"][-1]["content"] for row in store.iter_rows(tmp_path / "answers" / "vicuna")]
    assert all(text.startswith("Below is an instruction") and text.endswith("### Response:") for text in asked)
    unwrapped = _tool(*answer)  # the same folder without the wrapper: refused, not mixed
    assert unwrapped.returncode != 0 and "other settings" in unwrapped.stderr

    responder = JudgeResponder()
    with ChatServer(responder) as server:
        proc = _tool(*_score_args(server, tmp_path / "scores", {"base": tmp_path / "answers"}, vicuna,
                                  "--length-controlled", "--length-tokenizer", tiny_model_dirs["llama"]))
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert responder.questions == set(prompts)  # the judge sees the bare instruction
    document = json.loads((tmp_path / "scores" / "results.json").read_text())
    record = document["results"][0]
    assert record["prompt_format"] == "gad" and record["n_scored"] == 2 and record["paired"]["n"] == 2
    assert document["protocol"]["length_tokenizer"] == f"hf:{tiny_model_dirs['llama']}"
    from transformers import AutoTokenizer

    from judge_responder import reference_text

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["llama"])
    expected = [len(tokenizer(reference_text(p), add_special_tokens=False)["input_ids"]) for p in prompts]
    assert record["reference_tokens"] == pytest.approx(sum(expected) / 2)  # counted by that tokenizer
    markdown = (tmp_path / "scores" / "scores.md").read_text()
    assert "| Model | Benchmark | prompts | student first | reference first |" in markdown
    assert "| length-controlled |" in markdown
