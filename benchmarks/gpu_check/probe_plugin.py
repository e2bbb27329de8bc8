"""The check's own Axolotl plugin: what the table needs, written to files by `axolotl train` itself.

Listed after soda under `plugins:` in the check's recipes; `SODA_GPU_CHECK_PROBE` names its
folder. For each stage (`warmup`, `dpo`) it appends to `events.jsonl`:

- `model_load`: CUDA memory allocated just before the stage loads its model (for DPO: what the
  warmup left behind after soda's `release_stage`); the peak counter is reset there.
- `train_begin`: the peak since then (for DPO: its weights plus soda's reference pass, which runs
  in the trainer's `__init__`), the decoder's forward calls since the model loaded (the pass's
  forwards), whether the trainer holds a reference model, whether TRL's chunked log-probs are
  on; the model's weight checksums go to `<stage>_start_checksums.json`. The peak is reset.
- `log`: every numeric value the trainer logs (DPO's `rewards/margins` at step 0 among them).
- `train_end`: the training peak.

At exit `modules.json` records every top-level module the process imported and its file
(stand-ins marked), which proves what ran: the stand-ins, not the real packages.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

PROBE_ENV = "SODA_GPU_CHECK_PROBE"


def probe_dir() -> Path | None:
    folder = os.environ.get(PROBE_ENV)
    return Path(folder) if folder else None


def _event(kind: str, stage: str, **values) -> None:
    folder = probe_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "events.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"event": kind, "stage": stage, **values}) + "\n")


def _cuda():
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def _allocated() -> int | None:
    cuda = _cuda()
    return int(cuda.memory_allocated()) if cuda else None


def _peak_and_reset() -> int | None:
    cuda = _cuda()
    if not cuda:
        return None
    cuda.synchronize()
    peak = int(cuda.max_memory_allocated())
    cuda.reset_peak_memory_stats()
    return peak


def _stage(cfg) -> str:
    return "dpo" if cfg.get("rl") else "warmup"


def _write_modules() -> None:
    folder = probe_dir()
    if folder is None:
        return
    modules = {}
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        path = getattr(module, "__file__", None)
        if top not in modules and name == top and path:
            modules[top] = {"file": path, "standin": bool(getattr(module, "__dict__", {}).get("__soda_standin__"))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"modules.{os.getpid()}.json").write_text(json.dumps(modules, indent=1, sort_keys=True))


class _StageProbe(TrainerCallback):
    def __init__(self, stage: str, trainer, forwards: "_ForwardCounter | None"):
        self.stage, self.trainer, self.forwards = stage, trainer, forwards

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from .checksums import model_checksums

        forwards = self.forwards.stop() if self.forwards else None
        folder = probe_dir()
        if folder is not None and model is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{self.stage}_start_checksums.json").write_text(json.dumps(model_checksums(model)))
        _event("train_begin", self.stage, peak_before_training=_peak_and_reset(), allocated=_allocated(),
               forwards_before_training=forwards,
               ref_model_resident=getattr(self.trainer, "ref_model", None) is not None,
               chunked_logps=bool(getattr(args, "use_liger_kernel", False)))

    def on_log(self, args, state, control, logs=None, **kwargs):
        numbers = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if numbers:
            _event("log", self.stage, step=state.global_step, logs=numbers)

    def on_train_end(self, args, state, control, **kwargs):
        _event("train_end", self.stage, peak_training=_peak_and_reset(), global_step=state.global_step)


class _ForwardCounter:
    """Counts the decoder stack's forward calls (TRL's chunked path calls the backbone itself)."""

    def __init__(self, model):
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
        self.count = 0
        self.hook = decoder.register_forward_hook(lambda *args: setattr(self, "count", self.count + 1))

    def stop(self) -> int:
        self.hook.remove()
        return self.count


class ProbePlugin(BasePlugin):
    """Writes the check's measurements; changes nothing in the run."""

    def __init__(self):
        super().__init__()
        self.forwards: dict[str, _ForwardCounter] = {}
        atexit.register(_write_modules)

    def pre_model_load(self, cfg):
        _event("model_load", _stage(cfg), allocated_before=_allocated(), peak_before=_peak_and_reset())

    def post_model_load(self, cfg, model):
        self.forwards[_stage(cfg)] = _ForwardCounter(model)

    def add_callbacks_post_trainer(self, cfg, trainer):
        stage = _stage(cfg)
        return [_StageProbe(stage, trainer, self.forwards.pop(stage, None))]
