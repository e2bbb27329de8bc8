"""Rank coordination for the chain: one rank decides and writes, every rank agrees."""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

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


def on_main_then_barrier(action: Callable[[], Any]) -> None:
    """Run `action` on rank 0 only (e.g. writing a marker), then wait for all ranks."""
    barrier()
    if is_main():
        action()
    barrier()
