import json

import pytest

from soda_plugin.train.args import OnWarmupChange, SodaConfig
from soda_plugin.train.stages import (
    WarmupConfigChangedError,
    config_hash,
    decide_warmup,
    derive_warmup_config,
    read_marker,
    write_marker,
)

RAW = {
    "base_model": "/models/q0",
    "plugins": ["soda_plugin.SODAPlugin"],
    "rl": "dpo",
    "trl": {"beta": 0.1},
    "precompute_ref_log_probs": True,
    "learning_rate": 5e-7,
    "num_epochs": 1,
    "output_dir": "/runs/llama8b",
    "datasets": [{"path": "pairs", "type": "soda"}],
    "soda": {"on_bad_row": "skip", "warmup": {"learning_rate": 5e-6, "max_steps": 10}},
}


def _soda(raw=RAW):
    return SodaConfig.model_validate(raw["soda"])


def test_warmup_config_drops_dpo_keys_and_applies_overrides():
    raw_before = json.dumps(RAW, sort_keys=True)
    cfg = derive_warmup_config(RAW, _soda())
    assert json.dumps(RAW, sort_keys=True) == raw_before, "the recipe must not be mutated"
    for key in ("rl", "trl", "precompute_ref_log_probs"):
        assert key not in cfg
    assert cfg["learning_rate"] == 5e-6 and cfg["max_steps"] == 10 and cfg["num_epochs"] == 1
    assert cfg["output_dir"] == "/runs/llama8b/warmup"
    assert cfg["soda"] == {"on_bad_row": "skip"}
    assert cfg["datasets"] == RAW["datasets"] and cfg["base_model"] == "/models/q0"


def test_warmup_datasets_and_output_dir_can_be_set():
    raw = dict(RAW, soda={"warmup": {"output_dir": "/w", "datasets": [{"path": "teacher_only", "type": "soda"}]}})
    cfg = derive_warmup_config(raw, _soda(raw))
    assert cfg["output_dir"] == "/w" and cfg["datasets"][0]["path"] == "teacher_only"


def test_hash_ignores_where_the_stage_writes_but_not_what_it_trains():
    cfg = derive_warmup_config(RAW, _soda())
    assert config_hash(cfg) == config_hash(dict(cfg, output_dir="/elsewhere", logging_steps=50))
    assert config_hash(cfg) != config_hash(dict(cfg, learning_rate=1e-5))


def test_decide_runs_then_skips_then_detects_a_change(tmp_path):
    cfg = derive_warmup_config(RAW, _soda())
    assert decide_warmup(cfg, str(tmp_path), OnWarmupChange.ERROR).run
    write_marker(tmp_path, "warmup", cfg)
    assert [p.name for p in tmp_path.iterdir()] == ["soda_stage.json"], "no temp file may remain"
    assert read_marker(tmp_path)["config_hash"] == config_hash(cfg)
    assert not decide_warmup(cfg, str(tmp_path), OnWarmupChange.ERROR).run
    changed = dict(cfg, learning_rate=1e-5)
    with pytest.raises(WarmupConfigChangedError, match=r"learning_rate: 5e-06 -> 1e-05.*on_config_change: rerun"):
        decide_warmup(changed, str(tmp_path), OnWarmupChange.ERROR)
    decision = decide_warmup(changed, str(tmp_path), OnWarmupChange.RERUN)
    assert decision.run and "learning_rate" in decision.reason


def test_hash_follows_the_warmup_data_and_deepspeed_by_content_not_their_paths_or_logging(tmp_path):
    data = tmp_path / "teacher.jsonl"
    data.write_text('{"a": 1}\n')
    for place in ("a", "b"):
        (tmp_path / place).mkdir()
        (tmp_path / place / "zero2.json").write_text('{"zero_optimization": {"stage": 2}}')
    cfg = {"learning_rate": 1e-5, "datasets": [{"path": str(data), "type": "soda"}],
           "deepspeed": str(tmp_path / "a" / "zero2.json")}
    first = config_hash(cfg)
    # The checkout moved (same DeepSpeed JSON elsewhere), or only logging changed: the same warmup.
    assert config_hash(dict(cfg, deepspeed=str(tmp_path / "b" / "zero2.json"))) == first
    assert config_hash(dict(cfg, wandb_project="x", use_wandb=True)) == first
    # The teacher file regenerated at the same path: a different warmup, and the diff says so.
    write_marker(tmp_path / "warmup", "warmup", cfg)
    data.write_text('{"a": 22}\n')
    assert config_hash(cfg) != first
    with pytest.raises(WarmupConfigChangedError, match="the content of the warmup datasets"):
        decide_warmup(cfg, str(tmp_path / "warmup"), OnWarmupChange.ERROR)


def test_a_lora_warmup_runs_without_lora_kernels_like_its_dpo_stage_unless_the_recipe_sets_them():
    from soda_plugin.constants import LORA_KERNEL_KEYS

    soda = SodaConfig.model_validate(RAW["soda"])
    lora = dict(RAW, adapter="lora", lora_r=8)
    assert all(derive_warmup_config(lora, soda)[key] is False for key in LORA_KERNEL_KEYS)
    chosen = derive_warmup_config(dict(lora, lora_qkv_kernel=True), soda)
    assert chosen["lora_qkv_kernel"] is True and all(chosen.get(key) is None for key in LORA_KERNEL_KEYS[:1])
    assert not any(key in derive_warmup_config(RAW, soda) for key in LORA_KERNEL_KEYS)  # full fine-tuning
