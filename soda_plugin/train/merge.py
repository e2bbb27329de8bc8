"""Merge a LoRA stage into a full model folder `<stage output_dir>/merged`.

With `adapter: lora`, each stage saves only an adapter:

- the warmup's is merged before DPO, so that DPO starts from q_w itself: DPO then trains
  a fresh adapter on top of the merged q_w, and its reference (the model with that
  adapter disabled) is exactly q_w rather than the untouched q0;
- DPO's is merged when DPO has finished (`chain.merge_final_adapter`). Its base is the local
  `<warmup dir>/merged`, so the adapter alone is a model no one else can load; vLLM
  (`soda judge answer`) loads no adapter folder at all. `<output_dir>/merged` is the
  student to evaluate and publish, and `format.model_folder.refuse_adapter_only` sends users there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..format.model_folder import ADAPTER_CONFIG, merged_dir
from ..log import get_logger

LOG = get_logger(__name__)

def uses_adapter(cfg: Mapping[str, Any]) -> bool:
    return bool(cfg.get("adapter"))


class QuantizedAdapterError(ValueError):
    """A soda DPO recipe trains its adapters on a quantized base, which soda cannot merge exactly."""


def quantized_base_setting(cfg: Mapping[str, Any]) -> str | None:
    """The recipe setting that trains the adapter on a quantized base, as written, or None."""
    if cfg.get("adapter") == "qlora":
        return "`adapter: qlora`"
    return next((f"`{key}: true`" for key in ("load_in_4bit", "load_in_8bit") if cfg.get(key)), None)


def refuse_quantized_base(cfg: Mapping[str, Any]) -> None:
    """Raises `QuantizedAdapterError` for a quantized base: merged into the unquantized base, the
    warmup's adapter gives a model close to, not exactly, q_w, so DPO's reference would not be
    the model it starts from (and DPO's own merged adapter not the student it trained)."""
    setting = quantized_base_setting(cfg)
    if setting:
        raise QuantizedAdapterError(
            f"soda: {setting} is not supported by soda's DPO chain: soda merges each LoRA stage into the "
            "unquantized base (the warmup's adapter into q_w, DPO's into the student), and an adapter trained "
            "on a quantized base merges into a model that only approximates the one trained, so DPO's "
            "reference would not be q_w. Use `adapter: lora` without `load_in_4bit`/`load_in_8bit`.")


def _dtype(cfg: Mapping[str, Any]):
    """The dtype the warmup trained in (the merged weights keep it)."""
    import torch

    bf16 = cfg.get("bf16")
    if bf16 is True or (bf16 == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16 if cfg.get("fp16") is True else torch.float32


def merge_warmup_adapter(warmup_cfg: Mapping[str, Any], warmup_dir: str | Path) -> Path:
    """Load the stage's base model, apply its adapter, merge and save to `<warmup_dir>/merged`.

    `warmup_cfg` is the config the adapter was trained with, `warmup_dir` its `output_dir`
    (the warmup's, or DPO's for the final merge).

    Raises:
        QuantizedAdapterError: `warmup_cfg` trains on a quantized base (`refuse_quantized_base`).
        FileNotFoundError: the folder holds no adapter (`adapter_config.json`).
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    refuse_quantized_base(warmup_cfg)
    warmup_dir = Path(warmup_dir)
    if not (warmup_dir / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(
            f"`adapter: {warmup_cfg.get('adapter')}` is set but {warmup_dir / ADAPTER_CONFIG} does not "
            "exist; the stage did not save an adapter to merge."
        )
    base = warmup_cfg.get("base_model") or json.loads((warmup_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    out = merged_dir(warmup_dir)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=_dtype(warmup_cfg))
    model = PeftModel.from_pretrained(model, str(warmup_dir)).merge_and_unload()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(warmup_dir)).save_pretrained(out)
    LOG.info("soda: merged the adapter of %s into %s", warmup_dir, out)
    return out
