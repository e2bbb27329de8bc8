"""A trained model folder: a full model, or a LoRA adapter whose merged full model soda writes
to `<folder>/merged` (`train/merge.py`). Used by every stage that loads a student soda trained
(the judge's answers, `soda share`), so that an adapter folder is refused with the folder to
use instead, before anything is loaded."""

from __future__ import annotations

import json
from pathlib import Path

MERGED_SUBDIR = "merged"
ADAPTER_CONFIG = "adapter_config.json"


def merged_dir(warmup_dir: str | Path) -> Path:
    return Path(warmup_dir) / MERGED_SUBDIR


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
