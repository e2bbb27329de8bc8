"""Rank coordination in two real gloo processes (no Axolotl: see docs/chaining.md)."""

import os
from pathlib import Path

import pytest
import torch.multiprocessing as mp


def _worker(rank, world_size, port, workdir, results):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    from soda_plugin.train.distributed import decide_on_main, on_main_then_barrier
    from soda_plugin.train.stages import decide_warmup, write_marker
    from soda_plugin.train.args import OnWarmupChange

    cfg = {"learning_rate": 1e-5}
    # Each rank would answer differently on its own; all must get rank 0's answer.
    got = decide_on_main(lambda: f"decided by rank {rank}")
    first = decide_on_main(lambda: decide_warmup(cfg, workdir, OnWarmupChange.ERROR)).run
    on_main_then_barrier(lambda: write_marker(workdir, "warmup", cfg))
    # The marker is visible to every rank after the barrier.
    second = decide_on_main(lambda: decide_warmup(cfg, workdir, OnWarmupChange.ERROR)).run
    try:
        decide_on_main(lambda: (_ for _ in ()).throw(RuntimeError("rank 0 failed")))
        raised = None
    except RuntimeError as error:
        raised = str(error)
    results[rank] = (got, first, second, raised)
    dist.destroy_process_group()


def test_two_ranks_agree_and_only_rank_zero_writes(tmp_path, held_port):
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_worker, args=(2, held_port, str(tmp_path), results), nprocs=2, join=True)
    assert dict(results) == {
        0: ("decided by rank 0", True, False, "rank 0 failed"),
        1: ("decided by rank 0", True, False, "rank 0 failed"),
    }
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["soda_stage.json"]
