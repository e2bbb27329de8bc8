"""The LoRA warmup merged into a full model: the merged model is q_w (base + adapter)."""

import json

import pytest
import torch

from soda_plugin.train.merge import merge_warmup_adapter, merged_dir


def _warmup_adapter(base_dir, out_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # a trained adapter: B is no longer zero
            param.data.normal_(0, 0.5)
    peft_model.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(out_dir))
    return peft_model


def test_merged_model_computes_what_base_plus_adapter_computes(tiny_model_dirs, tmp_path):
    from transformers import AutoModelForCausalLM

    warmup = tmp_path / "warmup"
    peft_model = _warmup_adapter(tiny_model_dirs["llama"], warmup)
    out = merge_warmup_adapter({"base_model": str(tiny_model_dirs["llama"]), "adapter": "lora", "bf16": False}, warmup)
    assert out == merged_dir(warmup) and not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dirs["llama"]))
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        expected, got, untouched = peft_model(ids).logits, merged(ids).logits, base(ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, untouched, atol=1e-3)
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    assert (out / "tokenizer.json").is_file()


def test_missing_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="`adapter: lora` is set but .*adapter_config.json does not exist"):
        merge_warmup_adapter({"base_model": "x", "adapter": "lora"}, tmp_path)


@pytest.mark.parametrize("quantized", [{"adapter": "qlora"}, {"adapter": "lora", "load_in_4bit": True},
                                       {"adapter": "lora", "load_in_8bit": True}])
def test_an_adapter_trained_on_a_quantized_base_is_not_merged(quantized, tiny_model_dirs, tmp_path):
    """Merged into the unquantized base it would only approximate q_w: refused before any model
    loads (the recipe is refused at config time too: tests/unit/test_train_refusals.py)."""
    from soda_plugin.train.merge import QuantizedAdapterError

    warmup = tmp_path / "warmup"
    _warmup_adapter(tiny_model_dirs["llama"], warmup)
    with pytest.raises(QuantizedAdapterError, match="is not supported by soda's DPO chain"):
        merge_warmup_adapter({"base_model": str(tiny_model_dirs["llama"]), "bf16": False, **quantized}, warmup)
    assert not merged_dir(warmup).exists()


def test_dpo_adapter_is_merged_only_when_a_lora_dpo_stage_finished(monkeypatch, tmp_path):
    from axolotl.utils.dict import DictDefault

    import soda_plugin.train.chain as chain
    from soda_plugin.train.plugin import SODAPlugin

    calls = []
    monkeypatch.setattr(chain, "merge_warmup_adapter", lambda cfg, directory: calls.append(directory))
    cfg = DictDefault(soda={}, rl="dpo", adapter="lora", output_dir=str(tmp_path / "dpo"))
    (tmp_path / "dpo" / "merged").mkdir(parents=True)
    chain.drop_stale_final_merge(cfg)  # DPO starts: an earlier run's student is not this one's
    assert not (tmp_path / "dpo" / "merged").exists()
    plugin = SODAPlugin()
    plugin.post_train_unload(cfg)  # training raised: Axolotl never called post_train
    plugin.post_train(cfg, None)
    try:
        raise OSError("disk full")  # the adapter's save failed after training
    except OSError:
        plugin.post_train_unload(cfg)  # Axolotl calls it from a `finally`
    assert calls == []
    plugin.post_train(cfg, None)
    plugin.post_train(cfg, None)  # Axolotl calls it twice (after `trainer.train()` and after the save)
    plugin.post_train_unload(cfg)
    assert calls == [str(tmp_path / "dpo")]
    # The warmup (SFT) and a full fine-tuning DPO stage leave nothing to merge here.
    for other in (DictDefault(soda={}, adapter="lora", output_dir=str(tmp_path / "sft")),
                  DictDefault(soda={}, rl="dpo", output_dir=str(tmp_path / "full"))):
        plugin.post_train(other, None)
        plugin.post_train_unload(other)
    assert calls == [str(tmp_path / "dpo")]
