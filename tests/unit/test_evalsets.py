"""Evaluation-set loaders: native columns of each benchmark, messages rows, bad rows."""

import json

import pytest

from soda_plugin.evalsets import (
    BENCHMARKS, BadEvalRowError, EvalPrompt, load_eval_set, normalize_prompt_text, read_eval_set,
)
from soda_plugin.format.prompt_id import prompt_id
from soda_data import write_jsonl


def user(text):
    return [{"role": "user", "content": text}]


def test_the_table_names_all_four_benchmarks_with_a_hub_id_and_split():
    assert set(BENCHMARKS) == {"lmsys", "dolly", "selfinst", "vicuna"}
    assert BENCHMARKS["lmsys"].hub_id == "ytz20/LMSYS-Chat-GPT-5-Chat-Response" and BENCHMARKS["lmsys"].split == "test"
    assert all(spec.hub_id and spec.split for spec in BENCHMARKS.values())


def test_dolly_native_columns_put_the_context_after_the_instruction(tmp_path):
    path = write_jsonl([{"instruction": "Name a prime.", "context": "Primes: 2, 3", "response": "2"},
                        {"instruction": "Say hi.", "context": "", "response": "hi"}], tmp_path / "dolly.jsonl")
    first, second = load_eval_set("dolly", path)
    assert first == EvalPrompt("dolly", prompt_id(user("Name a prime.\n\nPrimes: 2, 3")),
                               user("Name a prime.\n\nPrimes: 2, 3"), "2")
    assert second.messages == user("Say hi.") and second.reference == "hi"


@pytest.mark.parametrize("name, row, text, reference", [
    ("selfinst", {"prompt": "Write a haiku.", "output": "..."}, "Write a haiku.", "..."),
    ("selfinst", {"instruction": "Sort", "input": "3 1 2", "output": "1 2 3"}, "Sort\n\n3 1 2", "1 2 3"),
    ("vicuna", {"text": "How do I relax?", "category": "generic"}, "How do I relax?", None),
    ("lmsys", {"content": user("hello"), "teacher_response": "hi!"}, "hello", "hi!"),
])
def test_native_columns(tmp_path, name, row, text, reference):
    [prompt] = load_eval_set(name, write_jsonl([row], tmp_path / "set.jsonl"))
    assert prompt.messages == user(text) and prompt.reference == reference and prompt.benchmark == name


def test_a_messages_row_keeps_the_system_turn_and_takes_a_final_assistant_turn_as_reference(tmp_path):
    row = {"messages": [{"role": "system", "content": "Be brief."}, *user("Why?"),
                        {"role": "assistant", "content": "Because."}]}
    [prompt] = load_eval_set("vicuna", write_jsonl([row], tmp_path / "v.jsonl"))
    assert prompt.messages == [{"role": "system", "content": "Be brief."}, *user("Why?")]
    assert prompt.reference == "Because." and prompt.prompt_id == prompt_id(prompt.messages)


def test_json_array_and_parquet_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "v.json").write_text(json.dumps([{"question": "A?"}, {"question": "B?"}]))
    pq.write_table(pa.Table.from_pylist([{"instruction": "C", "response": "c"}]), tmp_path / "d.parquet")
    assert [p.messages for p in load_eval_set("vicuna", tmp_path / "v.json")] == [user("A?"), user("B?")]
    assert [p.reference for p in load_eval_set("dolly", tmp_path / "d.parquet")] == ["c"]


def test_a_bad_row_is_an_error_naming_the_file_and_row(tmp_path):
    path = write_jsonl([{"instruction": "ok"}, {"instruction": "  "}], tmp_path / "dolly.jsonl")
    with pytest.raises(BadEvalRowError, match=r"dolly.jsonl row 1: no prompt.*`instruction`.*on_bad_row='skip'"):
        load_eval_set("dolly", path)


def test_skipped_rows_are_counted_per_reason(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text('{"instruction": "ok"}\n{"context": "no instruction"}\nnot json\n'
                    '{"messages": [{"role": "bot", "content": "x"}]}\n[1]\n')
    read = read_eval_set("selfinst", path, on_bad_row="skip")
    assert [p.messages for p in read.prompts] == [user("ok")] and read.rows == 5
    assert read.skipped == {"no_prompt": 1, "not_json": 1, "bad_messages": 1, "not_an_object": 1}


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown evaluation set `mmlu`.*'dolly'.*`mmlu=PATH`"):
        load_eval_set("mmlu")


def test_a_set_of_your_own_is_read_from_its_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"content": [{"role": "user", "content": "What is 2 plus 2?"}], "answer": "4"}) + "\n"
                    + json.dumps({"instruction": "Name a colour.", "output": "red"}) + "\n")
    prompts = load_eval_set("mine", path)
    assert [p.benchmark for p in prompts] == ["mine", "mine"]
    assert prompts[0].messages == user("What is 2 plus 2?") and prompts[0].reference == "4"
    assert prompts[1].messages == user("Name a colour.") and prompts[1].reference == "red"


def test_normalize_prompt_text_ignores_spacing_and_case():
    assert normalize_prompt_text("  What IS\n\tthe  Capital? ") == normalize_prompt_text("what is the capital?")
    assert normalize_prompt_text("Straße") == normalize_prompt_text("STRASSE")
    assert normalize_prompt_text("a b") != normalize_prompt_text("ab")
