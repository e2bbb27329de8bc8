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
        FileNotFoundError: the folder holds no adapter (`adapter_config.json`).
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    warmup_dir = Path(warmup_dir)
    if not (warmup_dir / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(
            f"`adapter: {warmup_cfg.get('adapter')}` is set but {warmup_dir / ADAPTER_CONFIG} does not "
            "exist; the stage did not save an adapter to merge."
        )
    if warmup_cfg.get("adapter") == "qlora" or warmup_cfg.get("load_in_4bit") or warmup_cfg.get("load_in_8bit"):
        LOG.warning(
            "soda: the stage trained an adapter on a quantized base; merging it into the "
            "unquantized base gives a model close to, not exactly, q_w. Use `adapter: lora` "
            "without quantization for an exact reference."
        )
    base = warmup_cfg.get("base_model") or json.loads((warmup_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    out = merged_dir(warmup_dir)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=_dtype(warmup_cfg))
    model = PeftModel.from_pretrained(model, str(warmup_dir)).merge_and_unload()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(warmup_dir)).save_pretrained(out)
    LOG.info("soda: merged the adapter of %s into %s", warmup_dir, out)
    return out
