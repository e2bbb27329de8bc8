"""Where the snapshot's prompts come from when only `--recipe` is given."""

import json

import pytest

from soda_plugin.format.prompts import prompts_from_recipe

MESSAGES = [{"role": "user", "content": "What is 12 plus 7?"}]


def _recipe(pairs_path, teacher_path="./data/teacher/train.jsonl"):
    return {"datasets": [{"path": str(pairs_path), "ds_type": "parquet", "type": "soda"}],
            "soda": {"warmup": {"datasets": [{"path": teacher_path, "ds_type": "json", "type": "soda"}]}}}


def test_missing_pairs_name_prompts_and_the_recipes_teacher_file(tmp_path):
    """A SODA recipe's `datasets` are the pairs the snapshot is for: before them, say `--prompts`."""
    with pytest.raises(FileNotFoundError) as info:
        prompts_from_recipe(_recipe(tmp_path / "pairs" / "data"))
    message = str(info.value)
    assert f"the recipe's `type: soda` dataset `{tmp_path / 'pairs' / 'data'}` does not exist yet" in message
    assert "Pass the prompts with `--prompts`, e.g. `--prompts ./data/teacher/train.jsonl` " \
           "(this recipe's `soda.warmup.datasets`)." in message


def test_relative_missing_path_without_warmup_block_still_names_prompts():
    recipe = {"datasets": [{"path": "./data/pairs/qwen7b/data", "ds_type": "parquet", "type": "soda"}]}
    with pytest.raises(FileNotFoundError, match=r"Pass the prompts with `--prompts`, e.g. `--prompts data/teacher"):
        prompts_from_recipe(recipe)


def test_existing_dataset_is_read(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"content": MESSAGES, "teacher_response": "19"}) + "\n")
    assert prompts_from_recipe({"datasets": [{"path": str(path), "ds_type": "json", "type": "soda"}]}) == [MESSAGES]


@pytest.mark.parametrize("path, missing", [
    ("./data/pairs/llama8b/data", True), ("data/teacher/train.jsonl", True), ("teacher.jsonl", True),
    ("data/pairs/qwen7b/data", True), ("~/no-such-soda-folder", True),
    ("someone/pairs", False), ("imdb", False),  # may be Hub ids: left to Axolotl's loader
])
def test_one_local_path_rule_for_the_snapshot_and_the_preflight(path, missing, monkeypatch, tmp_path):
    """`soda snapshot --recipe` and `axolotl train`'s preflight call a path missing by the same rule."""
    from soda_plugin.format import dataset_path
    from soda_plugin.train import preflight

    monkeypatch.chdir(tmp_path)
    assert dataset_path.is_missing_local_path(path) is missing
    assert preflight.looks_local is dataset_path.looks_local
    if missing:
        with pytest.raises(FileNotFoundError, match="does not exist yet"):
            prompts_from_recipe({"datasets": [{"path": path, "type": "soda"}]})


def test_an_existing_local_path_is_not_missing(tmp_path):
    from soda_plugin.format.dataset_path import is_missing_local_path

    (tmp_path / "pairs.jsonl").write_text("")
    assert not is_missing_local_path(str(tmp_path / "pairs.jsonl"))
