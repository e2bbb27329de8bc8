"""The LoRA warmup merged into a full model: the merged model is q_w (base + adapter)."""

import json

import pytest
import torch

from soda_plugin.merge import merge_warmup_adapter, merged_dir


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
