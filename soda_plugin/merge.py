"""Merge a LoRA warmup into a full model folder, so that DPO starts from q_w itself.

With `adapter: lora`, the warmup saves only an adapter. DPO then trains a fresh adapter
on top of the merged q_w, and its reference (the model with that adapter disabled) is
exactly q_w rather than the untouched q0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .log import get_logger

LOG = get_logger(__name__)

MERGED_SUBDIR = "merged"
ADAPTER_CONFIG = "adapter_config.json"


def merged_dir(warmup_dir: str | Path) -> Path:
    return Path(warmup_dir) / MERGED_SUBDIR


def uses_adapter(cfg: Mapping[str, Any]) -> bool:
    return bool(cfg.get("adapter"))


def _dtype(cfg: Mapping[str, Any]):
    """The dtype the warmup trained in (the merged weights keep it)."""
    import torch

    bf16 = cfg.get("bf16")
    if bf16 is True or (bf16 == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16 if cfg.get("fp16") is True else torch.float32


def merge_warmup_adapter(warmup_cfg: Mapping[str, Any], warmup_dir: str | Path) -> Path:
    """Load the warmup's base model, apply its adapter, merge and save to `<warmup_dir>/merged`.

    Raises:
        FileNotFoundError: the warmup folder holds no adapter (`adapter_config.json`).
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    warmup_dir = Path(warmup_dir)
    if not (warmup_dir / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(
            f"`adapter: {warmup_cfg.get('adapter')}` is set but {warmup_dir / ADAPTER_CONFIG} does not "
            "exist; the warmup did not save an adapter to merge."
        )
    if warmup_cfg.get("adapter") == "qlora" or warmup_cfg.get("load_in_4bit") or warmup_cfg.get("load_in_8bit"):
        LOG.warning(
            "soda: the warmup trained an adapter on a quantized base; merging it into the "
            "unquantized base gives a model close to, not exactly, q_w. Use `adapter: lora` "
            "without quantization for an exact reference."
        )
    base = warmup_cfg.get("base_model") or json.loads((warmup_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    out = merged_dir(warmup_dir)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=_dtype(warmup_cfg))
    model = PeftModel.from_pretrained(model, str(warmup_dir)).merge_and_unload()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(warmup_dir)).save_pretrained(out)
    LOG.info("soda: merged the warmup adapter of %s into %s", warmup_dir, out)
    return out
