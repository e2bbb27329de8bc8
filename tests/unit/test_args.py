"""The `soda:` block, alone and merged into Axolotl's own config validation."""

import pytest
from pydantic import ValidationError

from soda_plugin.train.args import SODAArgs, SodaConfig, Stage
from soda_plugin.format.rows import SodaFields


@pytest.mark.parametrize(
    "data, message",
    [
        ({"soda": {"warmup": {"lerning_rate": 1e-5}}, "rl": "dpo"},
         "unknown key `soda.warmup.lerning_rate`: did you mean `soda.warmup.learning_rate`?"),
        ({"soda": {"on_bad_rows": "skip"}}, "unknown key `soda.on_bad_rows`: did you mean `soda.on_bad_row`?"),
        ({"soda": {"on_bad_row": "drop"}}, "Input should be 'error' or 'skip'"),
        ({"soda": {"stage": "sft"}}, "Input should be 'chain', 'warmup' or 'dpo'"),
        ({"soda": {"warmup": {"num_epochs": "many"}}, "rl": "dpo"}, "soda.warmup.num_epochs"),
        ({"soda_warmup": {"learning_rate": 1e-5}}, "unknown key `soda_warmup`: soda settings live in one block"),
        ({"soda": {"warmup": {}}}, "`soda.warmup` chains an SFT warmup into DPO, but `rl` is None"),
        ({"soda": {"stage": "warmup"}, "rl": "dpo"}, "`soda.stage: warmup` needs a `soda.warmup` block"),
        ({"soda": {"precompute_ref_batch_size": 4}, "rl": "dpo"},
         "`soda.precompute_ref_batch_size: 4` sizes the reference log-prob precompute, but "
         "`precompute_ref_log_probs` is None"),
        ({"soda": {"precompute_ref_batch_size": 0}, "precompute_ref_log_probs": True}, "soda.precompute_ref_batch_size"),
        ({"soda": {"gpus": 0}}, "soda.gpus"),
        ({"soda": {"reference_logps": "require"}, "rl": "dpo", "precompute_ref_log_probs": False},
         "`soda.reference_logps: require` stores and reuses precomputed reference log-probs, but "
         "`precompute_ref_log_probs` is False"),
        ({"soda": {"reference_logps": "always"}}, "Input should be 'reuse', 'require' or 'off'"),
        ({"soda": {"warmup": {"save_strategy": "never"}}, "rl": "dpo"}, "'no', 'steps', 'epoch' or 'best'"),
        # Axolotl's own DPO collator (used with pad_to_multiple_of) failed the miniature with KeyError 'input_ids'.
        ({"soda": {"warmup": {}}, "rl": "dpo", "pad_to_multiple_of": 8},
         "Move it to `soda.warmup.pad_to_multiple_of`"),
    ],
)
def test_bad_soda_config_names_the_key(data, message):
    with pytest.raises(ValidationError) as info:
        SODAArgs(**data)
    assert message in str(info.value)


def test_the_warmup_alone_may_pad_to_a_multiple():
    args = SODAArgs(soda={"warmup": {"pad_to_multiple_of": 8}}, rl="dpo")
    assert args.soda.warmup.overrides()["pad_to_multiple_of"] == 8


def test_defaults():
    cfg = SodaConfig()
    assert cfg.stage is Stage.CHAIN and cfg.on_bad_row.value == "error"
    assert cfg.free_reference_model is True and cfg.warmup is None
    assert cfg.reference_logps.value == "reuse" and cfg.reference_logps_dir is None


def _axolotl_cfg(model_dir, tmp_path, **extra):
    from axolotl.utils.dict import DictDefault

    cfg = {
        "base_model": str(model_dir),
        "plugins": ["soda_plugin.SODAPlugin"],
        "rl": "dpo",
        "datasets": [{"path": str(tmp_path / "d.jsonl"), "ds_type": "json", "type": "soda",
                      "field_messages": "prompt", "field_chosen": "gpt", "field_rejected": "q0"}],
        "sequence_len": 128, "micro_batch_size": 1, "num_epochs": 1, "learning_rate": 1e-5,
        "output_dir": str(tmp_path / "out"), "bf16": False, "fp16": False, "tf32": False,
        "soda": {"warmup": {"learning_rate": 5e-6}},
    }
    cfg.update(extra)
    (tmp_path / "d.jsonl").touch()  # soda's preflight refuses a recipe whose data is not built yet
    return DictDefault(cfg)


def test_axolotl_load_cfg_keeps_the_soda_block_and_field_overrides(tiny_model_dirs, tmp_path):
    from axolotl.cli.config import load_cfg

    cfg = load_cfg(_axolotl_cfg(tiny_model_dirs["qwen2"], tmp_path))
    assert cfg.soda["warmup"]["learning_rate"] == 5e-6
    assert SodaFields.from_dataset_config(cfg.datasets[0], cfg.soda) == SodaFields("prompt", "gpt", "q0")


def test_axolotl_load_cfg_keeps_field_overrides_for_sft(tiny_model_dirs, tmp_path):
    from axolotl.cli.config import load_cfg

    cfg = load_cfg(_axolotl_cfg(tiny_model_dirs["qwen2"], tmp_path, rl=None, soda={}))
    # Axolotl's SFT dataset schema has no `field_chosen`; the soda block keeps it.
    assert "field_chosen" not in cfg.datasets[0] or cfg.datasets[0]["field_chosen"] is None
    assert SodaFields.from_dataset_config(cfg.datasets[0], cfg.soda) == SodaFields("prompt", "gpt", "q0")


def test_same_path_with_different_columns_is_refused():
    entry = {"path": "p", "type": "soda", "field_chosen": "a"}
    with pytest.raises(ValidationError, match="two `type: soda` entries read `p`"):
        SODAArgs(datasets=[entry, dict(entry, field_chosen="b")])


def test_axolotl_load_cfg_rejects_a_bad_soda_key(tiny_model_dirs, tmp_path):
    from axolotl.cli.config import load_cfg

    with pytest.raises(Exception, match=r"unknown key `soda.warmup.lr`"):
        load_cfg(_axolotl_cfg(tiny_model_dirs["qwen2"], tmp_path, soda={"warmup": {"lr": 1e-5}}))


def test_warmup_without_checkpoints_drops_the_dpo_save_steps():
    from soda_plugin.train.args import WarmupConfig

    assert WarmupConfig(save_strategy="no").overrides() == {"save_strategy": "no", "save_steps": None}
    assert WarmupConfig(save_strategy="steps").overrides() == {"save_strategy": "steps"}
    assert WarmupConfig().overrides() == {}


def test_training_args_hook_passes_the_precompute_batch_size_to_dpo_only():
    from soda_plugin.train.plugin import SODAPlugin

    dpo = {"rl": "dpo", "precompute_ref_log_probs": True, "soda": {"precompute_ref_batch_size": 4}}
    assert SODAPlugin().get_training_args(dpo)["precompute_ref_batch_size"] == 4
    # The SFT builder calls the same hook; its TrainingArguments have no such field.
    assert SODAPlugin().get_training_args(dict(dpo, rl=None)) is None
    assert "precompute_ref_batch_size" not in (SODAPlugin().get_training_args({"rl": "dpo", "soda": {}}) or {})
    assert SODAPlugin().get_training_args({"rl": "dpo"}) is None


def test_a_launch_on_other_gpus_than_declared_warns(monkeypatch, caplog):
    from soda_plugin.train.distributed import warn_on_other_world_size

    monkeypatch.setenv("WORLD_SIZE", "2")
    with caplog.at_level("WARNING"):
        assert warn_on_other_world_size(8) is True
    assert "sized for `soda.gpus: 8` processes, this launch has 2" in caplog.text
    assert "by 8/2" in caplog.text
    assert warn_on_other_world_size(2) is False and warn_on_other_world_size(None) is False
