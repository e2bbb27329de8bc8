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
