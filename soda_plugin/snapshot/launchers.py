"""Where a snapshot's engines run: in this process, one process per GPU group on this node
(`data_parallel.py`), or Ray workers (`ray_launcher.RayLaunch`). `run_snapshot` takes any of
them; each answers the prompts it is given into the same shards."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from . import store
from .engine import EngineInfo, SnapshotEngine
from .shards import Generated, ShardJob, Todo, count_answers, generate_shards

# Manifest keys that describe the launcher of the last run only (a resume may use another).
LAUNCHER_MANIFEST_KEYS = ("data_parallel_size", "ray")


def engine_gpus(engine_options: dict[str, Any]) -> int:
    """GPUs one engine holds: vLLM's tensor-parallel size; one device for transformers."""
    return int(engine_options.get("tensor_parallel_size") or 1)


class Launcher(abc.ABC):
    """Runs the engines that answer a snapshot's missing prompts."""

    info: EngineInfo  # the engine description the manifest records

    @abc.abstractmethod
    def gpus(self) -> int | None:
        """GPUs the engines hold, for `cost.json`'s GPU-hours. None: one engine in this
        process, on one device, which the cost recorder counts itself."""

    def manifest(self, generated: Generated | None = None) -> dict[str, Any]:
        """This launcher's manifest entries, before the run (`None`) and after it."""
        return {}

    def gpus_used(self, generated: Generated) -> int | None:
        """GPUs the run held, once it is over (a cluster's are known only then)."""
        return self.gpus()

    @abc.abstractmethod
    def generate(self, todo: Todo, job: ShardJob, done_before: int, total: int) -> Generated:
        """Answer `todo` into `job.out_dir`'s shards."""


class InProcess(Launcher):
    """One engine, built by the caller, in this process (the caller closes it)."""

    def __init__(self, engine: SnapshotEngine):
        self.engine = engine
        self.info = engine.info()

    def gpus(self) -> int | None:
        if self.info.backend == "openai":
            return 0  # a server elsewhere: its GPUs are not this run's to count
        return engine_gpus(self.info.extra) if self.info.backend == "vllm" else None

    def generate(self, todo: Todo, job: ShardJob, done_before: int, total: int) -> Generated:
        return generate_shards(self.engine, todo, job, done_before=done_before, total=total)


@dataclass(frozen=True)
class DataParallel(Launcher):
    """`ranks` spawned processes on this node, each with its own engine on its own GPU(s)
    and a contiguous slice of the prompts (`data_parallel.run_data_parallel`).

    Args:
        shard_timeout_s: longest time with no new shard on disk (the first includes model
            loading) before the ranks are stopped with an error; None waits as long as
            the ranks live.
    """

    ranks: int
    backend: str
    model: str
    engine_options: dict[str, Any]
    info: EngineInfo
    shard_timeout_s: float | None = None

    def gpus(self) -> int | None:
        return 0 if self.backend == "openai" else engine_gpus(self.engine_options) * self.ranks

    def manifest(self, generated: Generated | None = None) -> dict[str, Any]:
        return {"data_parallel_size": self.ranks}

    def generate(self, todo: Todo, job: ShardJob, done_before: int, total: int) -> Generated:
        from .data_parallel import DataParallelError, cuda_visible_devices, run_data_parallel

        try:
            run_data_parallel(
                answer_slice, self.ranks, args=(self.backend, self.model, self.engine_options, list(todo), job),
                rank_env=cuda_visible_devices(engine_gpus(self.engine_options)) if self.backend != "openai" else (lambda rank: {}),
                stall_timeout_s=self.shard_timeout_s, progress=lambda: len(store.shard_paths(job.out_dir)),
            )
        except DataParallelError as err:
            raise DataParallelError(
                f"{err}. Finished shards in {job.out_dir} are kept: re-run the same command to resume "
                "(`soda.snapshot.shard_timeout_s` bounds the wait for each new shard).", err.exit_codes) from err
        return count_answers(job.out_dir, {pid for pid, _ in todo})


def answer_slice(rank: int, n_ranks: int, backend: str, model: str, engine_options: dict, todo: list,
                 job: ShardJob) -> None:
    """One data-parallel rank: its own engine, a contiguous slice of `todo`, shards named by rank."""
    from .data_parallel import contiguous_shards
    from .engine import create_engine

    mine = [todo[i] for i in contiguous_shards(len(todo), n_ranks)[rank]]
    if not mine:
        return
    engine = create_engine(backend, model, **engine_options)
    try:
        generate_shards(engine, mine, job, shard_prefix=f"r{rank:03d}-", progress=job.progress and rank == 0)
    finally:
        engine.close()


def as_launcher(engine_or_launcher: SnapshotEngine | Launcher) -> Launcher:
    return engine_or_launcher if isinstance(engine_or_launcher, Launcher) else InProcess(engine_or_launcher)
