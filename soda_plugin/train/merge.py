"""Merge a LoRA stage into a full model folder `<stage output_dir>/merged`.

With `adapter: lora`, each stage saves only an adapter:

- the warmup's is merged before DPO, so that DPO starts from q_w itself: DPO then trains
  a fresh adapter on top of the merged q_w, and its reference (the model with that
  adapter disabled) is exactly q_w rather than the untouched q0;
- DPO's is merged when DPO has finished (`chain.merge_final_adapter`). Its base is the local
  `<warmup dir>/merged`, so the adapter alone is a model no one else can load; vLLM
  (`tools/judge.py answer`) loads no adapter folder at all. `<output_dir>/merged` is the
  student to evaluate and publish, and `refuse_adapter_only` sends users there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..log import get_logger

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


def _has_full_weights(folder: Path) -> bool:
    return any(folder.glob("model*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def adapter_base(folder: str | Path) -> str | None:
    """The base model of an adapter folder (one with `adapter_config.json`); None otherwise.

    A `model.safetensors` beside the adapter does not make it a full model: for `rl` with an
    adapter, Axolotl also saves the PEFT-wrapped model there (`axolotl/train.py`,
    `save_trained_model`: `trainer.model.save_pretrained`), keyed `...q_proj.base_layer.weight`
    / `...lora_A.default.weight`, which plain transformers loads with `q_proj.weight` missing.
    """
    config = Path(folder) / ADAPTER_CONFIG
    if not config.is_file():
        return None
    return str(json.loads(config.read_text()).get("base_model_name_or_path") or "")


def is_local_base(name: str) -> bool:
    """A base no other machine can resolve: a path here, not a Hub id (`org/name`)."""
    path = Path(name)
    return not name or path.is_absolute() or path.exists() or name.startswith(".") or len(path.parts) > 2


def refuse_adapter_only(folder: str | Path, *, use: str, hub_base_ok: bool) -> None:
    """Raise when `folder` is an adapter folder that `use` cannot work with: any adapter
    (`hub_base_ok=False`), or one on a local base (a soda LoRA run's DPO adapter sits on
    `<warmup dir>/merged`). The error names the merged full model to use instead.

    Raises:
        ValueError: `folder` is such an adapter folder.
    """
    base = adapter_base(folder)
    if base is None or (hub_base_ok and not is_local_base(base)):
        return
    merged = merged_dir(folder)
    where = (f"pass {merged}, the full model soda merged after DPO" if _has_full_weights(merged) else
             f"{merged} does not exist: soda writes it when a LoRA recipe's DPO stage finishes (for an "
             f"adapter trained before that, merge it onto `{base or '?'}` with PEFT's `merge_and_unload` "
             f"and save it there), then pass {merged}")
    raise ValueError(f"{folder} holds a LoRA adapter on `{base or '?'}`, not a full model, which {use} cannot "
                     f"use; {where}.")
