"""Rank coordination for the chain: one rank decides and writes, every rank agrees."""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

from ..log import get_logger

LOG = get_logger(__name__)

T = TypeVar("T")


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    dist = _dist()
    if dist:
        dist.barrier()


def decide_on_main(decide: Callable[[], T]) -> T:
    """Run `decide` on rank 0 and give its result (or its exception) to every rank.

    Ranks never read shared files independently, so they cannot disagree on which
    stage runs, and an error on rank 0 is raised on every rank instead of hanging them.
    """
    dist = _dist()
    if not dist:
        return decide()
    payload: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            payload[0] = ("ok", decide())
        except Exception as error:  # re-raised below on every rank
            payload[0] = ("error", error)
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise value
    return value


def gather_from_all_ranks(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank (a collective: all ranks call it);
    `[value]` without a process group."""
    dist = _dist()
    if dist is None:
        return [value]
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, value)
    return everyone


def on_main_then_barrier(action: Callable[[], Any]) -> None:
    """Once every rank is here, run `action` on rank 0 only (e.g. writing a marker); every
    rank returns when it is done, or raises rank 0's error. A bare barrier would leave the
    other ranks waiting for the process group's timeout (30 minutes) with no cause."""
    barrier()
    decide_on_main(lambda: (action(), None)[1])


def on_main_only(action: Callable[[], Any]) -> None:
    """Run `action` on rank 0 only. With a process group, as `on_main_then_barrier`; without
    one (e.g. after Axolotl's `train` destroyed it), rank 0 (`RANK`) runs it and the others
    go on: every rank would run it otherwise."""
    if _dist():
        on_main_then_barrier(action)
    elif is_main():
        action()


def place_model_on_cpu_without_accelerator(cfg) -> None:
    """Axolotl maps a multi-process model to `LOCAL_RANK`'s GPU; on CPU use the CPU."""
    import torch

    if torch.cuda.is_available() or not isinstance(cfg.get("device_map"), dict):
        return
    if all(isinstance(v, int) for v in cfg.device_map.values()):
        LOG.info("soda: no accelerator; placing the model on the CPU in every process.")
        cfg.device_map = "cpu"


def start_cpu_data_parallel_if_launched() -> bool:
    """Make a multi-process launch on a machine without accelerator data-parallel; True if
    this is such a launch.

    `torchrun`/`accelerate launch` on CPU otherwise leaves Accelerate in single-process
    mode (`DistributedType.NO`): every rank trains on all the data and they race to
    write the same files. `TrainingArguments` rebuilds Accelerate's state from
    `ACCELERATE_USE_CPU`; our own rank coordination needs the state before that.
    """
    import torch

    if torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_CPU"] = "true"
    state = PartialState(cpu=True)
    LOG.info("soda: CPU multi-process launch: %s over %d processes.", state.distributed_type, state.num_processes)
    return True


def world_size() -> int:
    dist = _dist()
    return dist.get_world_size() if dist else int(os.environ.get("WORLD_SIZE", "1"))


def warn_on_other_world_size(gpus: int | None) -> bool:
    """Warn when the launch's world size is not the `soda.gpus` the recipe's batch
    arithmetic assumes; True when it warned. Silence it by setting `soda.gpus` to the
    launch's process count (and the batch keys to match) or by removing it."""
    actual = world_size()
    if gpus is None or actual == gpus:
        return False
    LOG.warning(
        "soda: the recipe's batches are sized for `soda.gpus: %d` processes, this launch has %d: "
        "each optimizer step reads %d/%d of the rows the recipe states. Scale "
        "`gradient_accumulation_steps` (and `soda.warmup.gradient_accumulation_steps`) by %d/%d "
        "to keep them, then set `soda.gpus: %d`.", gpus, actual, actual, gpus, gpus, actual, actual,
    )
    return True


def load_preference_datasets_same_files_on_all_ranks(cfg) -> Any:
    """Prepare DPO data on rank 0, then load it from disk on every rank.

    With a fresh dataset, Axolotl's first rank keeps its in-memory copy while the other
    ranks load the saved copy, so the two live in different folders. TRL's
    `precompute_ref_log_probs` then writes its cache next to rank 0's copy and the other
    ranks look for it next to theirs (FileNotFoundError). Loading the saved copy on every
    rank puts all of them on the same files.
    """
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.common.datasets import load_preference_datasets

    if is_main():
        load_preference_datasets(cfg=cfg, cli_args=TrainerCliArgs())
    barrier()
    return load_preference_datasets(cfg=cfg, cli_args=TrainerCliArgs())
