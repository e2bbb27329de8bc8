"""Give back a finished stage's memory before the next stage builds its model.

The warmup and DPO run in one process. Dropping Python references is not enough: the
warmup's Accelerator keeps the prepared model and optimizer in its own lists, and a
DeepSpeed engine's ZeRO hooks hold them from autograd nodes, which the garbage collector
cannot see. Accelerate asks for `free_memory()` "between two trainings with different
models/optimizers" (`accelerate/accelerator.py`, `Accelerator.free_memory`, which also
calls the engine's `destroy()`).
"""

from __future__ import annotations

import gc
from typing import Any

from ..log import get_logger

LOG = get_logger(__name__)

# What a transformers/TRL trainer (and its callback handler) holds of the trained model.
_TRAINER_REFERENCES = ("model", "model_wrapped", "deepspeed", "ref_model", "optimizer", "lr_scheduler")
_HANDLER_REFERENCES = ("model", "optimizer", "lr_scheduler", "train_dataloader", "eval_dataloader")


def release_stage(trainer: Any) -> None:
    """Free what `trainer` holds: its Accelerator's prepared objects (and DeepSpeed engine),
    its own references to the model, optimizer and scheduler, then collect and empty the
    CUDA cache. The trainer is unusable afterwards; the caller drops it too."""
    import torch

    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None:
        accelerator.free_memory()
    for name in _TRAINER_REFERENCES:
        if getattr(trainer, name, None) is not None:
            setattr(trainer, name, None)
    handler = getattr(trainer, "callback_handler", None)
    for name in _HANDLER_REFERENCES:
        if getattr(handler, name, None) is not None:
            setattr(handler, name, None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def memory_in_use() -> str:
    """This process's memory: CUDA allocated / reserved / peak reserved, or RSS without CUDA."""
    import torch

    gib = 1024 ** 3
    if torch.cuda.is_available():
        return (f"allocated {torch.cuda.memory_allocated() / gib:.2f} GiB, reserved "
                f"{torch.cuda.memory_reserved() / gib:.2f} GiB, peak reserved "
                f"{torch.cuda.max_memory_reserved() / gib:.2f} GiB (GPU {torch.cuda.current_device()})")
    import psutil

    return f"RSS {psutil.Process().memory_info().rss / gib:.2f} GiB (no CUDA)"


def log_memory_per_rank(when: str) -> None:
    """One INFO line on rank 0 with every rank's `memory_in_use()` (a collective: every rank calls it)."""
    from .distributed import gather_from_all_ranks

    everyone = gather_from_all_ranks(memory_in_use())
    LOG.info("soda: memory %s: %s", when, "; ".join(f"rank {i}: {m}" for i, m in enumerate(everyone)))
