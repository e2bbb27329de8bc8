"""`soda_plugin.miniature.mechanism`: answer log-probabilities as DPO tokenizes them."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from soda_plugin.format.chat_format import assistant_turn_suffix
from soda_plugin.format.rows import SodaRow
from soda_plugin.miniature.mechanism import (ScoredAnswer, answer_token_ids, relative_logps, score_answers,
                                             score_models)
from soda_plugin.train.views import dpo_example

FAMILIES = ("llama", "qwen2")
SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly and exactly."}
ROWS = [
    {"prompt_id": "p1", "messages": [{"role": "user", "content": "What is 12 plus 7?"}],
     "response": "The answer is 19.", "stopped": True},
    {"prompt_id": "p2", "messages": [SYSTEM, {"role": "user", "content": "Sort the list: banana, apple, cherry."}],
     "response": "apple, banana, cherry", "stopped": True},
    {"prompt_id": "p3", "messages": [{"role": "user", "content": "Convert 3 kilometres to metres."}],
     "response": "I think the answer might be something else, let me explain at length. 3 km is", "stopped": False},
    {"prompt_id": "p4", "messages": [{"role": "user", "content": "Hello there!"},
                                     {"role": "assistant", "content": "How can I help you today?"},
                                     {"role": "user", "content": "What is 12 plus 7?"}],
     "response": "19.", "stopped": True},
    {"prompt_id": "p5", "messages": [{"role": "user", "content": "2+2?"}], "response": "4", "stopped": False},
]


@pytest.fixture(scope="module")
def loaded(tiny_model_dirs):
    return {family: (AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval(),
                     AutoTokenizer.from_pretrained(str(d))) for family, d in tiny_model_dirs.items()}


def _manual_logp(model, prompt_ids: list[int], completion_ids: list[int]) -> float:
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    positions = torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1)
    return float(logprobs[positions, ids[0, len(prompt_ids):]].sum())


@pytest.mark.parametrize("family", FAMILIES)
def test_logp_equals_a_manual_forward(loaded, family):
    model, tokenizer = loaded[family]
    scored = score_answers(model, tokenizer, ROWS, head=4)
    assert [s.prompt_id for s in scored] == [r["prompt_id"] for r in ROWS]
    for row, answer in zip(ROWS, scored):
        prompt_ids, completion_ids = answer_token_ids(tokenizer, row["messages"], row["response"], row["stopped"])
        assert answer.n_tokens == len(completion_ids)
        assert answer.logp == pytest.approx(_manual_logp(model, prompt_ids, completion_ids), abs=1e-5)
        assert answer.n_head == min(4, len(completion_ids))
        assert answer.logp_head == pytest.approx(_manual_logp(model, prompt_ids, completion_ids[:4]), abs=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_are_the_dpo_view_as_trl_tokenizes_it(loaded, family):
    _, tokenizer = loaded[family]
    row = ROWS[1]
    prompt_ids, completion_ids = answer_token_ids(tokenizer, row["messages"], row["response"], True)
    triple = dpo_example(tokenizer, SodaRow(messages=tuple(row["messages"]), teacher=row["response"], student="x"))
    # TRL 1.14: `tokenizer(prompt)` and `tokenizer(prompt + chosen)` sliced after the prompt.
    assert prompt_ids == tokenizer(triple["prompt"])["input_ids"]
    assert completion_ids == tokenizer(triple["prompt"] + triple["chosen"])["input_ids"][len(prompt_ids):]
    if tokenizer.bos_token_id is not None:
        assert prompt_ids.count(tokenizer.bos_token_id) == 1 and prompt_ids[0] == tokenizer.bos_token_id


@pytest.mark.parametrize("family", FAMILIES)
def test_stopped_answer_has_exactly_the_end_of_turn_more(loaded, family):
    _, tokenizer = loaded[family]
    row = ROWS[0]
    prompt_stop, stopped = answer_token_ids(tokenizer, row["messages"], row["response"], True)
    prompt_cut, truncated = answer_token_ids(tokenizer, row["messages"], row["response"], False)
    end_of_turn, _ = assistant_turn_suffix(tokenizer)
    eot_ids = tokenizer(end_of_turn, add_special_tokens=False)["input_ids"]
    assert prompt_stop == prompt_cut
    assert stopped == truncated + eot_ids
    assert stopped[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in truncated


def test_stopped_answer_gets_the_eos_trl_appends(chatml_tokenizer):
    tokenizer = copy.deepcopy(chatml_tokenizer)
    tokenizer.eos_token = "<|endoftext|>"  # a ChatML template under another EOS, as in some base models
    row = ROWS[0]
    _, stopped = answer_token_ids(tokenizer, row["messages"], row["response"], True)
    _, truncated = answer_token_ids(tokenizer, row["messages"], row["response"], False)
    assert stopped == truncated + tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_batches_equal_single_rows(loaded, family):
    model, tokenizer = loaded[family]
    batched = score_answers(model, tokenizer, ROWS, head=3, batch_size=3)
    single = score_answers(model, tokenizer, ROWS, head=3, batch_size=1)
    for a, b in zip(batched, single, strict=True):
        assert (a.prompt_id, a.n_tokens, a.n_head) == (b.prompt_id, b.n_tokens, b.n_head)
        assert a.logp == pytest.approx(b.logp, abs=1e-5)
        assert a.logp_head == pytest.approx(b.logp_head, abs=1e-5)


def test_malformed_row_is_an_error_naming_it(loaded):
    model, tokenizer = loaded["qwen2"]
    bad = dict(ROWS[0], stopped="yes")
    with pytest.raises(ValueError, match="row 1: field `stopped`"):
        score_answers(model, tokenizer, [ROWS[0], bad])
    empty = dict(ROWS[0], response="  ", stopped=False)
    with pytest.raises(ValueError, match="row 0 .*no token to score"):
        score_answers(model, tokenizer, [empty])


def _answers(logps: dict[str, float], n_tokens: int = 4) -> list[ScoredAnswer]:
    return [ScoredAnswer(p, logp, n_tokens, logp / 2, 2) for p, logp in logps.items()]


def test_relative_logps_against_itself_is_zero():
    answers = _answers({"b": -3.0, "a": -5.0})
    out = relative_logps({"ref": answers, "same": list(answers)}, reference="ref")
    for name in ("ref", "same"):
        assert out[name]["mean"] == 0 and out[name]["mean_head"] == 0
        assert out[name]["per_prompt"] == [0.0, 0.0] and out[name]["prompt_ids"] == ["a", "b"]


def test_relative_logps_is_nats_per_token_ordered_by_prompt():
    out = relative_logps({"ref": _answers({"b": -3.0, "a": -5.0}), "m": _answers({"a": -9.0, "b": -1.0})}, "ref")
    assert out["m"]["per_prompt"] == [-1.0, 0.5]
    assert out["m"]["mean"] == pytest.approx(-0.25)
    assert out["m"]["per_prompt_head"] == [-1.0, 0.5]


def test_relative_logps_refuses_mismatches():
    ref = _answers({"a": -1.0, "b": -2.0})
    with pytest.raises(ValueError, match="other prompts"):
        relative_logps({"ref": ref, "m": _answers({"a": -1.0, "c": -2.0})}, "ref")
    with pytest.raises(ValueError, match="share one tokenizer"):
        relative_logps({"ref": ref, "m": _answers({"a": -1.0, "b": -2.0}, n_tokens=5)}, "ref")
    with pytest.raises(ValueError, match="not among"):
        relative_logps({"ref": ref}, "other")


def test_score_models_names_a_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="'gone'"):
        score_models({"gone": tmp_path / "nope"}, ROWS)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "soda_plugin.miniature.mechanism", *args],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2], timeout=300)


def test_cli_writes_one_entry_per_row_per_model(tiny_model_dirs, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    out = tmp_path / "out.json"
    done = _cli("--model", f"llama={tiny_model_dirs['llama']}", "--model", f"qwen={tiny_model_dirs['qwen2']}",
                "--rows", str(rows), "--out", str(out), "--head", "8")
    assert done.returncode == 0, done.stderr
    written = json.loads(out.read_text())
    assert written["head"] == 8 and set(written["models"]) == {"llama", "qwen"}
    for entries in written["models"].values():
        assert [e["prompt_id"] for e in entries] == [r["prompt_id"] for r in ROWS]
        assert all(set(e) == {"prompt_id", "logp", "n_tokens", "logp_head", "n_head"} for e in entries)
    assert sum("mechanism: scored" in line for line in done.stderr.splitlines()) == 2


def test_cli_fails_naming_a_missing_model_dir_or_bad_row(tiny_model_dirs, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(ROWS[0]) + "\n")
    missing = tmp_path / "no-such-model"
    done = _cli("--model", f"llama={tiny_model_dirs['llama']}", "--model", f"gone={missing}",
                "--rows", str(rows), "--out", str(tmp_path / "out.json"))
    assert done.returncode != 0 and str(missing) in done.stderr
    assert not (tmp_path / "out.json").exists()
    rows.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"prompt_id": "x", "messages": []}) + "\n")
    done = _cli("--model", f"llama={tiny_model_dirs['llama']}", "--rows", str(rows),
                "--out", str(tmp_path / "out.json"))
    assert done.returncode != 0 and f"{rows}:2" in done.stderr and "missing field" in done.stderr


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_sharing_an_opening_score_as_a_manual_forward(tiny_model_dirs, family):
    """The shared system turn runs once for the batch: positions and masks must still be each row's own.
    Seeded weight noise makes the tiny model's log-probs depend on position and context."""
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dirs[family]), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dirs[family]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    rows = [{**row, "messages": [SYSTEM, *[m for m in row["messages"] if m["role"] != "system"]]} for row in ROWS]
    scored = score_answers(model, tokenizer, rows, head=2, batch_size=4)
    for row, answer in zip(rows, scored, strict=True):
        prompt_ids, completion_ids = answer_token_ids(tokenizer, row["messages"], row["response"], row["stopped"])
        assert answer.logp == pytest.approx(_manual_logp(model, prompt_ids, completion_ids), abs=1e-4)
        assert answer.logp_head == pytest.approx(_manual_logp(model, prompt_ids, completion_ids[:2]), abs=1e-4)
    assert len({round(a.logp / a.n_tokens, 3) for a in scored}) == len(rows)  # the noise made them differ
