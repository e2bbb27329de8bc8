"""docs/recipe_keys.md's key tables are generated from the schemas (`soda:`, `gad:`) and stay so."""

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from soda_plugin.train import config_table
from soda_plugin.train.args import SodaConfig, WarmupConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "recipe_keys.md"
REGENERATE = "python -m soda_plugin.train.config_table --write docs/recipe_keys.md"


def test_the_committed_tables_equal_the_generated_ones():
    text = DOC.read_text(encoding="utf-8")
    assert config_table.marked_blocks(text) == ["soda", "gad"]
    assert config_table.replace_tables(text, config_table.current_tables(text)) == text, f"stale: run `{REGENERATE}`"


def test_every_key_of_the_soda_block_is_a_row_with_nested_blocks_dotted():
    keys = [row[0].strip("`") for row in config_table.config_rows(SodaConfig)]
    for key in ("precompute_ref_batch_size", "precompute_only_trained_rows", "gpus", "snapshot",
                "warmup.pad_to_multiple_of", "warmup.save_strategy", "snapshot.backend"):
        assert key in keys
    snapshot = config_table._nested_model(SodaConfig.model_fields["snapshot"].annotation)
    assert len(keys) == len(SodaConfig.model_fields) + len(WarmupConfig.model_fields) + len(snapshot.model_fields)


def test_a_changed_description_makes_the_file_stale(monkeypatch):
    text = DOC.read_text(encoding="utf-8")
    field = WarmupConfig.model_fields["learning_rate"]
    monkeypatch.setattr(field, "json_schema_extra", {"description": "Some other wording."})
    fresh = config_table.replace_tables(text, config_table.current_tables(text))
    assert fresh != text
    assert "| `warmup.learning_rate` | float | unset | Some other wording. |" in fresh


def test_the_check_command_fails_on_a_stale_file_and_write_repairs_it(tmp_path, capsys):
    stale = tmp_path / "keys.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("| `gpus` |", "| `gpu_count` |"), encoding="utf-8")
    assert config_table.main(["--check", str(stale)]) == 1
    assert "--write" in capsys.readouterr().err
    assert config_table.main(["--write", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
    assert config_table.main(["--check", str(stale)]) == 0


def test_nested_models_are_found_by_annotation_not_by_module():
    class Inner(BaseModel):
        depth: int = Field(default=3, json_schema_extra={"description": "How deep."})

    class Outer(BaseModel):
        inner: Inner | None = Field(default=None, description="A nested block.")
        mode: bool = Field(default=False, description="Pipes | escaped.")

    assert config_table.config_table_markdown(Outer) == (
        "| key | type | default | description |\n|---|---|---|---|\n"
        "| `inner` | block | unset | A nested block. |\n"
        "| `inner.depth` | int | `3` | How deep. |\n"
        "| `mode` | bool | `false` | Pipes \\| escaped. |\n")


def test_a_field_without_description_is_refused():
    class Bare(BaseModel):
        knob: int = 1

    with pytest.raises(ValueError, match=r"`Bare.knob` has no description"):
        config_table.config_table_markdown(Bare)
