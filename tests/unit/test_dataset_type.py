"""The `soda` type through Axolotl's own strategy loaders and through `datasets.map`."""

import copy
import re

import pytest
from datasets import Dataset

import soda_plugin
import soda_plugin.train.plugin  # noqa: F401 - registers `type: soda`, as Axolotl's plugin loading does
from soda_plugin.constants import IGNORE_INDEX
from soda_plugin.train.dataset_type import SodaSFTStrategy
from soda_plugin.format.rows import BadRowError
from soda_data import valid_rows


def _bad_rows():
    rows = valid_rows(6)
    rows[1]["teacher_response"] = " "
    rows[3]["student_response"] = rows[3]["teacher_response"]
    rows[4]["content"] = [{"role": "assistant", "content": "hi"}]
    return rows


@pytest.mark.parametrize("type_name", ["soda", "soda_plugin.soda"])
def test_axolotl_sft_loader_resolves_soda(type_name, chatml_tokenizer):
    from axolotl.prompt_strategies import load

    strategy = load(type_name, chatml_tokenizer, {"soda": {"on_bad_row": "skip"}}, {"field_chosen": "gpt"})
    assert isinstance(strategy, SodaSFTStrategy)
    assert strategy.fields.teacher == "gpt" and strategy.policy.value == "skip"


@pytest.mark.parametrize("type_name", ["soda", "soda_plugin.soda"])
def test_axolotl_dpo_loader_resolves_soda(type_name):
    from axolotl.prompt_strategies.dpo import load

    loaded = load(type_name, {"datasets": [{"type": type_name}]}, dataset_idx=0)
    assert loaded is not None, f"Axolotl could not resolve DPO type {type_name!r}"
    transform, map_kwargs = loaded
    assert callable(transform)
    assert map_kwargs["batched"] is True and map_kwargs["remove_columns"] == "__all__"
    assert soda_plugin.soda is soda_plugin.train.dataset_type.default


def test_importing_the_package_does_not_import_axolotl():
    import subprocess
    import sys

    code = "import sys, soda_plugin.snapshot.cli, soda_plugin.pairs; print('axolotl' in sys.modules)"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == 'False'


def test_sft_strategy_skips_bad_rows_and_reports_counts(chatml_tokenizer, capsys):
    rows = _bad_rows()
    original = copy.deepcopy(rows)
    dataset = Dataset.from_list(rows)
    strategy = SodaSFTStrategy(chatml_tokenizer, soda_plugin.format.rows.SodaFields(), soda_plugin.format.rows.OnBadRow.SKIP)
    out = strategy.wrap_dataset(dataset)
    # The SFT view ignores the student answer, so only rows 1 and 4 are bad.
    assert len(out) == 4
    assert set(out.column_names) == {"input_ids", "attention_mask", "labels"}
    assert all(IGNORE_INDEX in labels and set(labels) != {IGNORE_INDEX} for labels in out["labels"])
    err = capsys.readouterr().err
    assert "skipped 2 of 6 rows" in err
    assert "empty=1 (first at soda row 1)" in err and "roles_out_of_order=1 (first at soda row 4)" in err
    assert rows == original


def test_sft_strategy_errors_on_first_bad_row_by_default(chatml_tokenizer):
    strategy = soda_plugin.train.dataset_type.load(chatml_tokenizer, {"soda": {}}, {})
    with pytest.raises(BadRowError, match=re.escape("soda row 1: field `teacher_response` is empty")):
        strategy.wrap_dataset(Dataset.from_list(_bad_rows()))


def test_missing_column_names_the_field_and_the_columns(chatml_tokenizer):
    strategy = soda_plugin.train.dataset_type.load(chatml_tokenizer, {}, {"field_chosen": "gpt5"})
    with pytest.raises(BadRowError, match=r"`gpt5` is not a column of the dataset \(columns: \['content'"):
        strategy.wrap_dataset(Dataset.from_list(valid_rows(2)))


def _dpo_map(rows, tokenizer, policy):
    transform, map_kwargs = soda_plugin.soda({"soda": {"on_bad_row": policy}, "datasets": [{}]}, dataset_idx=0)
    dataset = Dataset.from_list(rows)
    map_kwargs = dict(map_kwargs, remove_columns=dataset.column_names)
    return dataset.map(transform, fn_kwargs={"tokenizer": tokenizer}, **map_kwargs)


def test_dpo_transform_skips_bad_rows_with_counts(chatml_tokenizer, capsys):
    out = _dpo_map(_bad_rows(), chatml_tokenizer, "skip")
    assert len(out) == 3 and out.column_names == ["prompt", "chosen", "rejected"]
    assert all(c.endswith("<|im_end|>") and r.endswith("<|im_end|>") for c, r in zip(out["chosen"], out["rejected"]))
    err = capsys.readouterr().err
    assert "skipped 3 of 6 rows in preference rows 0-5" in err
    assert "chosen_equals_rejected=1 (first at soda row 3)" in err


def test_dpo_transform_errors_name_the_row(chatml_tokenizer):
    with pytest.raises(BadRowError, match=re.escape("soda row 1: field `teacher_response`")):
        _dpo_map(_bad_rows(), chatml_tokenizer, "error")


def _axolotl_rl_map(rows, tokenizer, on_bad_row):
    """Rows through Axolotl's own RL dataset map (`axolotl.utils.data.rl._map_dataset`),
    which 0.21 calls through a column-restoring wrapper and 0.19 calls directly."""
    from axolotl.utils.data.rl import _map_dataset
    from axolotl.utils.dict import DictDefault

    cfg = DictDefault({"soda": {"on_bad_row": on_bad_row}, "datasets": [{"type": "soda"}],
                       "dataset_num_proc": None, "is_preprocess": False})
    transform, map_kwargs = soda_plugin.soda(cfg, dataset_idx=0)
    dataset = Dataset.from_list(rows)
    # `_load_split` resolves "__all__" to the columns just before this call.
    map_kwargs = {**map_kwargs, "remove_columns": dataset.column_names}
    return _map_dataset(cfg, dataset, transform, tokenizer, **map_kwargs)


def test_dpo_transform_through_axolotls_own_map_names_the_row_and_keeps_good_rows(chatml_tokenizer):
    with pytest.raises(BadRowError, match=re.escape("soda row 1: field `teacher_response`")):
        _axolotl_rl_map(_bad_rows(), chatml_tokenizer, "error")
    out = _axolotl_rl_map(valid_rows(5), chatml_tokenizer, "error")
    assert out.column_names == ["prompt", "chosen", "rejected"] and len(out) == 5
    skipped = _axolotl_rl_map(_bad_rows(), chatml_tokenizer, "skip")
    assert len(skipped) == 3
