"""Recipes soda refuses, through the path `axolotl train` takes in-process (`load_cfg`, then
`axolotl.cli.train.do_train`): the error is soda's, and no stage trained or wrote weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from soda_data import valid_rows, write_jsonl

MODEL_FILES = ("model.safetensors", "adapter_model.safetensors")


@pytest.fixture
def plugin_manager():
    """`load_cfg` leaves its config in Axolotl's plugin manager; put back what was there."""
    from axolotl.integrations.base import PluginManager

    manager = PluginManager.get_instance()
    saved = manager.cfg
    yield manager
    manager.cfg = saved


def _recipe(model_dir: Path, root: Path, **extra) -> dict:
    """A soda warmup → DPO recipe on a tiny model, 3 steps per stage."""
    from axolotl.utils.dict import DictDefault

    pairs = write_jsonl(valid_rows(8), root / "pairs.jsonl")
    cfg = {
        "base_model": str(model_dir), "plugins": ["soda_plugin.SODAPlugin"], "rl": "dpo",
        "precompute_ref_log_probs": True, "trl": {"beta": 0.1},
        "datasets": [{"path": str(pairs), "ds_type": "json", "type": "soda"}],
        "sequence_len": 128, "micro_batch_size": 2, "gradient_accumulation_steps": 1, "max_steps": 3,
        "learning_rate": 1e-3, "optimizer": "adamw_torch", "lr_scheduler": "constant",
        "output_dir": str(root / "out"), "bf16": False, "fp16": False, "tf32": False, "dataset_num_proc": 1,
        "val_set_size": 0, "save_strategy": "no", "seed": 7,
        "soda": {"warmup": {"learning_rate": 1e-3, "max_steps": 3}},
    }
    cfg.update(extra)
    return DictDefault(cfg)


def _train(recipe) -> None:
    """What `axolotl train` does with a recipe: `load_cfg`, then `do_train`."""
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.cli.train import do_train

    do_train(load_cfg(recipe), TrainerCliArgs())


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def _weights_written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for name in MODEL_FILES for p in folder.rglob(name)) if folder.exists() else []


def _leave_warmup(state: str, model_dir: Path, warmup: Path) -> None:
    """The warmup folder as a user may have it: none, a killed warmup's checkpoint, or full
    weights (someone's model copied there, or a warmup killed between its save and its marker)."""
    if state == "absent":
        return
    if state == "killed_with_a_checkpoint":
        shutil.copytree(model_dir, warmup / "checkpoint-2")
    elif state == "weights_without_marker":
        shutil.copytree(model_dir, warmup)


@pytest.mark.parametrize("state", ["absent", "killed_with_a_checkpoint", "weights_without_marker"])
def test_stage_dpo_without_a_finished_warmup_stops_before_any_training(state, tiny_model_dirs, tmp_path,
                                                                      plugin_manager):
    out = tmp_path / "out"
    warmup = out / "warmup"
    _leave_warmup(state, tiny_model_dirs["llama"], warmup)
    before = _files(warmup)
    recipe = _recipe(tiny_model_dirs["llama"], tmp_path,
                     soda={"stage": "dpo", "warmup": {"learning_rate": 1e-3, "max_steps": 3}})
    with pytest.raises(FileNotFoundError, match=r"`soda.stage: dpo` needs a finished warmup, but "
                                                 rf"{warmup}/soda_stage.json does not exist"):
        _train(recipe)
    # Nothing trained: no DPO weights or checkpoints, the warmup folder exactly as it was.
    assert [name for name in _weights_written(out) if not name.startswith("warmup/")] == []
    assert not list(out.glob("checkpoint-*")) and not (out / "reference_logps").exists()
    assert _files(warmup) == before


@pytest.mark.parametrize("quantized, shown", [
    ({"adapter": "qlora", "load_in_4bit": True}, "`adapter: qlora`"),
    ({"adapter": "lora", "load_in_4bit": True}, "`load_in_4bit: true`"),
    ({"adapter": "lora", "load_in_8bit": True}, "`load_in_8bit: true`"),
])
def test_a_lora_chain_on_a_quantized_base_is_refused_before_the_warmup(quantized, shown, tiny_model_dirs, tmp_path,
                                                                      plugin_manager):
    """soda merges each LoRA stage into the unquantized base (`merge.merge_warmup_adapter`): from
    a quantized base the merged q_w only approximates the warmup, so the reference would not be
    the model DPO starts from."""
    recipe = _recipe(tiny_model_dirs["llama"], tmp_path, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                     lora_target_modules=["q_proj", "v_proj"], **quantized)
    with pytest.raises(Exception, match=rf"soda: {shown} is not supported by soda's DPO chain") as refused:
        _train(recipe)
    assert "Use `adapter: lora` without `load_in_4bit`/`load_in_8bit`" in str(refused.value)
    assert not (tmp_path / "out").exists(), "no stage ran: nothing trained, merged or written"


def test_a_lora_sft_recipe_with_the_soda_type_may_quantize():
    """Only a soda DPO stage merges adapters: an SFT recipe that reads `type: soda` keeps QLoRA."""
    from soda_plugin.train.args import SODAArgs

    assert SODAArgs(soda={}, adapter="qlora", load_in_4bit=True).soda is not None
