"""`cost.json`: what one stage cost (wall time, optimizer steps, GPU-hours, peak memory).

`CostRecorder` wraps any stage's work (`with CostRecorder(out, stage="snapshot"): ...`);
`CostCallback` (built lazily: Trainer runs only) wraps `trainer.train()` from
`on_train_begin` to `on_train_end`. torch is imported only when a recorder starts, and the
recorder works without transformers (the snapshot venv may lack it) and without torch.

Memory, per rank:
- `peak_allocated_bytes`: torch's caching allocator peak (`max_memory_allocated`), the
  highest over this process's GPUs; null on CPU, or when this process never initialized
  CUDA (its GPU work ran in other processes, e.g. vLLM's engine).
- `peak_device_used_bytes`: the highest device-level used memory (total - free) seen on any
  GPU this process can see, sampled every 0.5 s; it includes memory held by other processes
  (vLLM workers, another job), and misses a spike shorter than the interval.
- `peak_rss_bytes`: `ru_maxrss`, the process's peak resident memory over its whole lifetime,
  not only this stage's (a second stage in the same process reports at least the first's).
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from ..format.fileio import atomic_write_text
from ..log import get_logger

LOG = get_logger(__name__)

COST_FILENAME = "cost.json"
COST_SCHEMA = 1
SAMPLE_INTERVAL_S = 0.5
_JOIN_TIMEOUT_S = 5.0


def _torch() -> ModuleType | None:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _cuda(torch: ModuleType | None) -> ModuleType | None:
    """`torch.cuda` when a GPU is there (checking does not create a CUDA context)."""
    return torch.cuda if torch is not None and torch.cuda.is_available() else None


def _distributed(torch: ModuleType | None) -> ModuleType | None:
    """`torch.distributed` when this process is one rank of several."""
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return None
    return torch.distributed if torch.distributed.get_world_size() > 1 else None


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


def peak_rss_bytes() -> int:
    """The process's lifetime peak resident memory (`ru_maxrss` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _holds_memory(cuda: ModuleType, device: int) -> bool:
    """Whether this process already has a CUDA context on `device` (so querying it creates none)."""
    return cuda.is_initialized() and cuda.memory_reserved(device) > 0


def device_used_bytes(cuda: ModuleType, device: int) -> int | None:
    """Device-level used memory of `device`, all processes together; None where it cannot be
    read without creating a CUDA context on it (each costs hundreds of MiB, and would land on
    every GPU from every rank): `mem_get_info` where this process holds memory already, NVML
    (`device_memory_used`) elsewhere when nvidia-ml-py is installed."""
    if _holds_memory(cuda, device):
        free, total = cuda.mem_get_info(device)
        return total - free
    try:
        return cuda.device_memory_used(device)
    except (AttributeError, ModuleNotFoundError):  # torch without it, or no nvidia-ml-py
        return None


class DeviceMemorySampler:
    """The peak device-level used memory of every visible GPU, polled in a daemon thread."""

    def __init__(self, cuda: ModuleType, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._cuda = cuda
        self._interval_s = interval_s
        self._devices = range(cuda.device_count())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soda-cost-sampler", daemon=True)
        self.peaks: dict[int, int] = {}
        self._unreadable: set[int] = set()

    def sample(self) -> None:
        for device in self._devices:
            used = device_used_bytes(self._cuda, device)
            if used is not None:
                self.peaks[device] = max(used, self.peaks.get(device, 0))
            elif device not in self._unreadable:
                self._unreadable.add(device)
                LOG.info("soda: GPU %d's used memory is not sampled until this process uses it (reading it now "
                         "needs nvidia-ml-py, or a CUDA context there).", device)

    def _run(self) -> None:
        try:
            self.sample()
            while not self._stop.wait(self._interval_s):
                self.sample()
        except Exception as err:  # noqa: BLE001 - the stage goes on; the gap is reported
            LOG.warning("soda: the GPU memory sampler stopped (%s: %s); peak_device_used_bytes covers only "
                        "the time before.", type(err).__name__, err)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int | None:
        """Stop sampling; the highest used memory seen on any one GPU, None if none was readable."""
        self._stop.set()
        self._thread.join(timeout=_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            LOG.warning("soda: the GPU memory sampler did not stop within %.0f s; its peak so far is used.",
                        _JOIN_TIMEOUT_S)
        return max(self.peaks.values()) if self.peaks else None


def _reset_peak_allocated(cuda: ModuleType | None) -> None:
    """Before CUDA is initialized the peaks are zero already; resetting then would create a context."""
    if cuda is not None and cuda.is_initialized():
        for device in range(cuda.device_count()):
            cuda.reset_peak_memory_stats(device)


def _peak_allocated(cuda: ModuleType | None) -> int | None:
    if cuda is None or not cuda.is_initialized():
        return None
    return max(cuda.max_memory_allocated(device) for device in range(cuda.device_count()))


def _device_name(cuda: ModuleType | None) -> str:
    if cuda is None:
        return "cpu"
    try:
        return cuda.get_device_name(cuda.current_device())
    except Exception as err:  # noqa: BLE001 - the name is a label; the numbers still count
        LOG.warning("soda: could not read the GPU's name (%s: %s); cost.json says `cuda`.", type(err).__name__, err)
        return "cuda"


class CostRecorder:
    """Context manager writing `<output_dir>/cost.json` when its block ends, also when the block
    raises (`finished: false`; the exception propagates).

    With several ranks, every rank must run the block; rank 0 gathers every rank's numbers and
    writes the file. `gpus`, the GPUs the work holds when CUDA is available, defaults to the
    world size; pass it for work that runs in other processes (vLLM engines). Without CUDA it
    is 0 whatever is passed.
    A failure of the recorder itself is logged, never raised: the stage's work matters more
    than its cost record.
    """

    def __init__(self, output_dir: str | os.PathLike, stage: str, *, gpus: int | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.stage = stage
        self.gpus = gpus
        self.optimizer_steps: int | None = None
        self.extra: dict[str, Any] = {}  # more fields for the file, e.g. `resumed_from_step`
        self._torch: ModuleType | None = None
        self._sampler: DeviceMemorySampler | None = None
        self._started = 0.0
        self._started_at = ""

    @property
    def path(self) -> Path:
        return self.output_dir / COST_FILENAME

    def __enter__(self) -> CostRecorder:
        self._torch = _torch()
        cuda = _cuda(self._torch)
        _reset_peak_allocated(cuda)
        if cuda is not None:
            self._sampler = DeviceMemorySampler(cuda)
            self._sampler.start()
        self._started_at = _now()
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        wall_seconds = round(time.perf_counter() - self._started, 3)
        try:
            device_used = self._sampler.stop() if self._sampler is not None else None
            self._write(finished=exc_type is None, wall_seconds=wall_seconds, device_used=device_used)
        except Exception:  # noqa: BLE001 - never mask the stage's own outcome
            LOG.exception("soda: could not record the %s stage's cost in %s", self.stage, self.path)
        return False

    def _write(self, finished: bool, wall_seconds: float, device_used: int | None) -> None:
        cuda = _cuda(self._torch)
        dist = _distributed(self._torch)
        rank = dist.get_rank() if dist is not None else 0
        mine = {"rank": rank, "peak_allocated_bytes": _peak_allocated(cuda),
                "peak_device_used_bytes": device_used, "peak_rss_bytes": peak_rss_bytes()}
        per_rank = gather_per_rank(dist, mine, finished)
        if rank != 0:
            return
        world_size = dist.get_world_size() if dist is not None else 1
        gpus = 0 if cuda is None else world_size if self.gpus is None else self.gpus
        record = {
            "schema": COST_SCHEMA, "stage": self.stage, "finished": finished,
            "started_at": self._started_at, "ended_at": _now(), "wall_seconds": wall_seconds,
            "optimizer_steps": None if self.optimizer_steps is None else int(self.optimizer_steps),
            "world_size": world_size, "devices": _device_name(cuda), "gpus": gpus,
            "gpu_hours": wall_seconds * gpus / 3600, **self.extra, "per_rank": per_rank,
        }
        atomic_write_text(self.path, json.dumps(record, indent=2) + "\n")
        LOG.info("soda: the %s stage took %.1f s, %.3f GPU-hours (%s)", self.stage, wall_seconds,
                 record["gpu_hours"], self.path)


def gather_per_rank(dist: ModuleType | None, mine: dict[str, Any], finished: bool) -> list[dict[str, Any]]:
    """Every rank's numbers, on every rank; this rank's alone when the block failed (a rank
    that raised must not wait in a collective the others may never join) or the gather failed."""
    if dist is None:
        return [mine]
    if not finished:
        LOG.warning("soda: the stage failed on rank %d; its cost.json holds this rank's numbers only.",
                    mine["rank"])
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    try:
        dist.all_gather_object(gathered, mine)
    except Exception as err:  # noqa: BLE001 - the cost of this rank is still worth writing
        LOG.warning("soda: could not gather the other ranks' cost (%s: %s); cost.json holds rank %d's numbers "
                    "only.", type(err).__name__, err, mine["rank"])
        return [mine]
    return gathered


def _callback_class() -> type:
    from transformers import TrainerCallback

    class CostCallback(TrainerCallback):
        """`cost.json` in `args.output_dir`, from `on_train_begin` to `on_train_end`; the
        optimizer steps are those of this run (a resumed run's earlier steps are not counted:
        `resumed_from_step` says where it started)."""

        def __init__(self, stage: str) -> None:
            self.stage = stage
            self._recorder: CostRecorder | None = None
            self._start_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self._start_step = int(state.global_step)
            self._recorder = CostRecorder(args.output_dir, stage=self.stage)
            if self._start_step > 0:
                self._recorder.extra["resumed_from_step"] = self._start_step
            self._recorder.__enter__()

        def on_train_end(self, args, state, control, **kwargs):
            recorder, self._recorder = self._recorder, None
            if recorder is None:
                LOG.warning("soda: on_train_end without on_train_begin; the %s stage's cost is not recorded.",
                            self.stage)
                return
            recorder.optimizer_steps = int(state.global_step) - self._start_step
            recorder.__exit__(None, None, None)

    return CostCallback


_CALLBACK_CLASS: type | None = None


def cost_callback(stage: str) -> Any:
    """A `transformers.TrainerCallback` recording the training's cost as `stage`."""
    return __getattr__("CostCallback")(stage)


def __getattr__(name: str) -> Any:
    """`CostCallback` is built on first use, so importing this module imports no transformers."""
    global _CALLBACK_CLASS
    if name != "CostCallback":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _CALLBACK_CLASS is None:
        _CALLBACK_CLASS = _callback_class()
    return _CALLBACK_CLASS


# `CostCallback` is left out: a star import would build it, importing transformers.
__all__ = ["COST_FILENAME", "COST_SCHEMA", "CostRecorder", "DeviceMemorySampler", "cost_callback",
           "device_used_bytes", "gather_per_rank", "peak_rss_bytes"]
