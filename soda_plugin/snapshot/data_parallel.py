"""Data parallelism for snapshot engines: one process and one engine per GPU.

Modelled on vLLM's `examples/offline_inference/data_parallel.py`: each rank is a fresh
`spawn` process that sees only its own GPU(s) through `CUDA_VISIBLE_DEVICES`, builds its
own engine and handles a contiguous shard of the prompts. Ranks do not talk to each other,
so results go through files (or any other channel the worker function picks).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from multiprocessing.connection import wait
from typing import Any, Callable, Hashable, Mapping, Sequence

# Per-rank environment: rank -> variables set in that rank's process before `worker_fn` runs.
RankEnv = Callable[[int], Mapping[str, str]]

_GRACE_S = 5.0
_STALL_POLL_S = 5.0


class DataParallelError(RuntimeError):
    """A rank failed or timed out; `exit_codes` maps each rank to its exit code."""

    def __init__(self, message: str, exit_codes: Mapping[int, int | None]):
        super().__init__(message)
        self.exit_codes = dict(exit_codes)

    def __reduce__(self):  # rebuilt with its fields after crossing a process boundary
        return (type(self), (str(self), self.exit_codes))


def contiguous_shards(n_items: int, n_ranks: int) -> list[range]:
    """Split `range(n_items)` into `n_ranks` contiguous shards, in rank order.

    The first `n_items % n_ranks` ranks get one item more; ranks beyond `n_items` get
    empty shards.

    Raises:
        ValueError: when `n_items < 0` or `n_ranks < 1`.
    """
    if n_items < 0 or n_ranks < 1:
        raise ValueError(f"need n_items >= 0 and n_ranks >= 1, got {n_items} and {n_ranks}")
    base, remainder = divmod(n_items, n_ranks)
    shards, start = [], 0
    for rank in range(n_ranks):
        stop = start + base + (1 if rank < remainder else 0)
        shards.append(range(start, stop))
        start = stop
    return shards


def cuda_visible_devices(gpus_per_rank: int = 1, inherited: str | None = None) -> RankEnv:
    """Rank environment that gives rank `r` the visible GPUs `r*g .. r*g+g-1` (g =
    `gpus_per_rank`): entries of the inherited `CUDA_VISIBLE_DEVICES` when one is set
    (SLURM, a shared node: indices or UUIDs), physical indices otherwise.

    Raises:
        ValueError: when a rank would need more GPUs than the inherited mask lists.
    """
    if inherited is None:
        inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    mask = [d.strip() for d in inherited.split(",") if d.strip()] if inherited is not None else None

    def env(rank: int) -> dict[str, str]:
        first = rank * gpus_per_rank
        wanted = range(first, first + gpus_per_rank)
        if mask is None:
            return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in wanted)}
        if wanted.stop > len(mask):
            raise ValueError(
                f"data-parallel rank {rank} needs visible GPUs {first}..{wanted.stop - 1}, but "
                f"CUDA_VISIBLE_DEVICES={inherited!r} lists {len(mask)}; lower --data-parallel-size "
                "or --tensor-parallel-size."
            )
        return {"CUDA_VISIBLE_DEVICES": ",".join(mask[i] for i in wanted)}

    return env


def _run_rank(worker_fn: Callable[..., Any], rank: int, n_ranks: int, env: Mapping[str, str], args: tuple) -> None:
    # Set before the worker imports or initialises anything that reads these (CUDA does).
    os.environ.update(env)
    worker_fn(rank, n_ranks, *args)


def _stop(processes: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + _GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _failure_message(exit_codes: Mapping[int, int | None], head: str) -> str:
    failed = {rank: code for rank, code in exit_codes.items() if code != 0}
    parts = [f"rank {rank} exited with code {code}" for rank, code in sorted(failed.items())]
    return f"{head}: " + "; ".join(parts)


class _StallWatch:
    """Tracks when `progress()` last changed; `stalled()` once it has not for `limit_s`."""

    def __init__(self, progress: Callable[[], Hashable] | None, limit_s: float | None):
        self.progress, self.limit_s = progress, limit_s
        self.on = bool(progress and limit_s)
        self.last = progress() if self.on else None
        self.changed_at = time.monotonic()

    def stalled(self) -> bool:
        if not self.on:
            return False
        now, value = time.monotonic(), self.progress()
        if value != self.last:
            self.last, self.changed_at = value, now
        return now - self.changed_at > self.limit_s

    def poll_s(self) -> float | None:
        return min(_STALL_POLL_S, self.limit_s / 4) if self.on else None


def run_data_parallel(
    worker_fn: Callable[..., Any],
    n_ranks: int,
    args: Sequence[Any] = (),
    timeout_s: float | None = None,
    *,
    rank_env: RankEnv | None = None,
    stall_timeout_s: float | None = None,
    progress: Callable[[], Hashable] | None = None,
) -> None:
    """Run `worker_fn(rank, n_ranks, *args)` in one spawned process per rank.

    Args:
        worker_fn: a picklable (module-level) function. It must not initialise CUDA at
            import time of its module, since the rank environment is applied after the
            module is imported in the child.
        n_ranks: number of processes.
        args: extra positional arguments, the same for every rank.
        timeout_s: wall-clock limit for the whole run; `None` waits forever.
        rank_env: rank -> environment variables for that rank; defaults to one GPU per
            rank (`CUDA_VISIBLE_DEVICES=<rank>`).
        stall_timeout_s, progress: with both, the ranks are stopped once `progress()` (a
            cheap probe of their output, called in this process) has not changed for
            `stall_timeout_s`: a stuck rank ends the run instead of hanging it.

    Raises:
        DataParallelError: as soon as any rank exits non-zero (the others are stopped),
            when `timeout_s` passes, or when the progress probe stalls (stragglers are
            terminated, then killed).
    """
    if n_ranks < 1:
        raise ValueError(f"`n_ranks` must be >= 1, got {n_ranks}")
    rank_env = rank_env or cuda_visible_devices()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_run_rank,
            args=(worker_fn, rank, n_ranks, dict(rank_env(rank)), tuple(args)),
            name=f"soda-dp-rank{rank}",
        )
        for rank in range(n_ranks)
    ]
    for process in processes:
        process.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    watch = _StallWatch(progress, stall_timeout_s)
    timed_out = stalled = False
    try:
        while True:
            # One snapshot of who is alive: ranks that exit between two `is_alive` calls
            # would otherwise leave `wait` an empty list, which blocks forever.
            alive = [process for process in processes if process.is_alive()]
            if not alive or any(process.exitcode not in (None, 0) for process in processes):
                break  # all done, or one rank failed: do not wait for the others
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                timed_out = True
                break
            if watch.stalled():
                stalled = True
                break
            poll = watch.poll_s()
            wait([process.sentinel for process in alive],
                 remaining if poll is None else poll if remaining is None else min(remaining, poll))
    finally:
        _stop(processes)
    exit_codes = {rank: process.exitcode for rank, process in enumerate(processes)}
    if timed_out:
        raise DataParallelError(_failure_message(exit_codes, f"data-parallel run timed out after {timeout_s} s"),
                                exit_codes)
    if stalled:
        raise DataParallelError(_failure_message(
            exit_codes, f"data-parallel run stopped: no progress from the ranks in {stall_timeout_s:.0f} s"),
            exit_codes)
    if any(code != 0 for code in exit_codes.values()):
        raise DataParallelError(_failure_message(exit_codes, "data-parallel run failed"), exit_codes)
