"""Local `type: soda` files are validated row by row as written, before Axolotl reads them."""

import json

import pytest
from datasets import load_dataset

from soda_plugin.format.rows import BadRowError, OnBadRow, SodaFields
from soda_plugin.train.strict_rows import clean_soda_datasets, clean_source
from soda_data import valid_rows, write_jsonl


def _mixed_type_rows():
    rows = valid_rows(4)
    rows[0]["teacher_response"] = "4."  # good: a string that looks like a number
    rows[1]["teacher_response"] = 4.0
    rows[2]["teacher_response"] = ["a", "list"]
    return rows


def test_a_good_row_is_kept_as_written_when_other_rows_hold_other_json_types(tmp_path):
    source = write_jsonl(_mixed_type_rows(), tmp_path / "mixed.jsonl")
    result = clean_source(source, SodaFields(), need_student=True, policy=OnBadRow.SKIP, out_dir=tmp_path / "clean")
    assert (result.rows, result.kept, result.skipped) == (4, 2, {"not_string": 2})
    loaded = load_dataset("json", data_files=str(result.path), split="train")
    assert loaded[0]["teacher_response"] == "4." and isinstance(loaded[0]["teacher_response"], str)
    assert loaded[1]["teacher_response"] == valid_rows(4)[3]["teacher_response"]
    skipped = [json.loads(line) for line in result.path.with_suffix(".skipped.jsonl").read_text().splitlines()]
    assert [(s["where"], s["field"], s["reason"]) for s in skipped] == [
        (f"{source}:2", "teacher_response", "not_string"), (f"{source}:3", "teacher_response", "not_string")]


def test_error_policy_names_the_bad_line_not_the_good_row(tmp_path):
    source = write_jsonl(_mixed_type_rows(), tmp_path / "mixed.jsonl")
    with pytest.raises(BadRowError) as caught:
        clean_source(source, SodaFields(), need_student=True, policy=OnBadRow.ERROR, out_dir=tmp_path / "clean")
    assert str(caught.value).startswith(f"{source}:2: field `teacher_response` is float, not a string")


def test_a_torn_line_is_named_by_file_and_line(tmp_path):
    source = write_jsonl(valid_rows(3), tmp_path / "torn.jsonl")
    lines = source.read_text().splitlines()
    source.write_text("\n".join([lines[0], lines[1][:40], lines[2]]) + "\n")
    with pytest.raises(BadRowError) as caught:
        clean_source(source, SodaFields(), need_student=False, policy=OnBadRow.ERROR, out_dir=tmp_path / "c")
    assert str(caught.value).startswith(f"{source}:2: field `(line)` is not a JSON line")
    assert "fix or remove that line" in str(caught.value)
    result = clean_source(source, SodaFields(), need_student=False, policy=OnBadRow.SKIP, out_dir=tmp_path / "c")
    assert (result.kept, result.skipped) == (2, {"not_json": 1})


def test_parquet_and_json_array_rows_are_validated_as_loaded(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = valid_rows(3)
    rows[2]["student_response"] = rows[2]["teacher_response"]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    (tmp_path / "pairs.json").write_text(json.dumps(rows, indent=1))
    for name, where in [("pairs.parquet", "row 2"), ("pairs.json", "item 2")]:
        with pytest.raises(BadRowError, match=f"{tmp_path / name} {where}: field `student_response`"):
            clean_source(tmp_path / name, SodaFields(), need_student=True, policy=OnBadRow.ERROR, out_dir=tmp_path / "c")
        kept = clean_source(tmp_path / name, SodaFields(), need_student=False, policy=OnBadRow.ERROR, out_dir=tmp_path / "c")
        assert kept.kept == 3  # the SFT view does not read the student answer


def test_every_row_skipped_is_an_error(tmp_path):
    rows = valid_rows(2)
    for row in rows:
        row["teacher_response"] = ""
    source = write_jsonl(rows, tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match="every row of .* was skipped in the SFT view"):
        clean_source(source, SodaFields(), need_student=False, policy=OnBadRow.SKIP, out_dir=tmp_path / "c")


def test_entries_are_pointed_at_a_content_addressed_copy_with_default_columns(tmp_path):
    rows = [{"prompt": r["content"], "gpt": r["teacher_response"], "mine": r["student_response"]} for r in valid_rows(3)]
    source = write_jsonl(rows, tmp_path / "renamed.jsonl")
    entry = {"path": str(source), "type": "soda", "field_messages": "prompt", "field_chosen": "gpt", "field_rejected": "mine"}
    other = {"path": str(source), "type": "chat_template"}
    cfg = {"dataset_prepared_path": str(tmp_path / "prepared"), "datasets": [entry, other]}
    assert clean_soda_datasets(cfg, need_student=True, policy=OnBadRow.ERROR) == 1
    first = entry["path"]
    assert first.startswith(str(tmp_path / "prepared" / "soda_rows")) and other["path"] == str(source)
    assert entry["field_chosen"] is None
    assert json.loads(open(first).readline())["teacher_response"] == rows[0]["gpt"]
    again = {"path": str(source), "type": "soda", "field_messages": "prompt", "field_chosen": "gpt", "field_rejected": "mine"}
    clean_soda_datasets({**cfg, "datasets": [again]}, need_student=True, policy=OnBadRow.ERROR)
    assert again["path"] == first  # same bytes and view: Axolotl's cache key is unchanged
    write_jsonl(rows[:2], source)
    changed = {"path": str(source), "type": "soda", "field_messages": "prompt", "field_chosen": "gpt", "field_rejected": "mine"}
    clean_soda_datasets({**cfg, "datasets": [changed]}, need_student=True, policy=OnBadRow.ERROR)
    assert changed["path"] != first


def test_a_folder_of_builder_shards_is_read_in_order_and_a_saved_dataset_is_left_to_axolotl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    rows = valid_rows(4)
    rows[3]["teacher_response"] = ""
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[2:]), tmp_path / "data" / "train-00001-of-00002.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    entries = [{"path": str(tmp_path / "data"), "type": "soda"}, {"path": str(tmp_path / "saved"), "type": "soda"}]
    with pytest.raises(BadRowError, match="train-00001-of-00002.parquet row 1: field `teacher_response` is empty"):
        clean_soda_datasets({"dataset_prepared_path": str(tmp_path / "p"), "datasets": entries},
                            need_student=True, policy=OnBadRow.ERROR)
    assert clean_soda_datasets({"dataset_prepared_path": str(tmp_path / "p"), "datasets": entries},
                               need_student=True, policy=OnBadRow.SKIP) == 1
    assert entries[1]["path"] == str(tmp_path / "saved")
    kept = [json.loads(line)["teacher_response"] for line in open(entries[0]["path"])]
    assert kept == [r["teacher_response"] for r in rows[:3]]


def _flagged_teacher_rows():
    rows = [{k: r[k] for k in ("content", "teacher_response")} | {"finish_reason": "stop", "flags": []}
            for r in valid_rows(6)]
    rows[1].update(teacher_response="", flags=["empty"])
    rows[2].update(teacher_response="The answer is", finish_reason="length", flags=["truncated"])
    rows[3].update(teacher_response="I'm sorry, but I can't help with that.", flags=["refusal"])
    rows[4].update(teacher_response="", finish_reason="content_filter", flags=[])  # no flags column value
    return rows


def test_the_sft_view_leaves_out_flagged_teacher_answers_even_under_error(tmp_path):
    source = write_jsonl(_flagged_teacher_rows(), tmp_path / "teacher.jsonl")
    result = clean_source(source, SodaFields(), need_student=False, policy=OnBadRow.ERROR, out_dir=tmp_path / "c")
    assert (result.kept, result.flagged) == (2, {"empty": 1, "truncated": 1, "refusal": 1, "content_filter": 1})
    kept = [json.loads(line)["teacher_response"] for line in result.path.read_text().splitlines()]
    assert kept == [valid_rows(6)[0]["teacher_response"], valid_rows(6)[5]["teacher_response"]]
    listed = [json.loads(line) for line in result.path.with_suffix(".skipped.jsonl").read_text().splitlines()]
    assert [(s["where"], s["reason"]) for s in listed] == [
        (f"{source}:2", "teacher_flag:empty"), (f"{source}:3", "teacher_flag:truncated"),
        (f"{source}:4", "teacher_flag:refusal"), (f"{source}:5", "teacher_flag:content_filter")]


def test_the_sft_strategy_leaves_out_flagged_answers_of_a_loaded_dataset(chatml_tokenizer):
    from datasets import Dataset
    from soda_plugin.train.dataset_type import SodaSFTStrategy

    strategy = SodaSFTStrategy(chatml_tokenizer, SodaFields(), OnBadRow.ERROR)
    assert strategy.valid_indices(Dataset.from_list(_flagged_teacher_rows())) == [0, 5]
