"""Stop `axolotl train` in soda's words, in one line, before anything heavy starts.

Without these checks a GPU recipe on a machine without GPUs ends in DeepSpeed's
"environment variable MASTER_ADDR expected, but not set" (or "ProcessGroupNCCL is only
supported with GPUs"), and a recipe whose data is not built yet ends in Axolotl's "The
dataset could not be loaded" under a traceback, with no word of the soda command that
writes the file.

Where they run (`SODAPlugin` and `GADPlugin`):
- `register(cfg)`, on the raw recipe: Axolotl's `load_cfg` calls it from `prepare_plugins`,
  before `validate_config` and before `prepare_optim_env` sets DeepSpeed up. The data
  check and the DeepSpeed part of the GPU check run here.
- `load_datasets(cfg)`, the first hook `axolotl train` runs after `load_cfg`, before any
  data or model is loaded: `bf16`/`fp16`/`tf32: true`, which Axolotl's validation accepts on
  a CPU but transformers' `TrainingArguments` refuses there, once the model is loaded.
  Not from `register`: the recipe tests load the GPU recipes through `load_cfg` on CPUs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping, NoReturn

from ..format.dataset_path import looks_local
from ..log import get_logger
from .args import SODA_TYPES, rl_method

LOG = get_logger(__name__)

# transformers' `TrainingArguments` refuses each of these `true` without a CUDA device.
GPU_ONLY_SWITCHES = ("bf16", "fp16", "tf32")
CPU_RECIPES = {"soda": "recipes/smollm2_cpu_soda.yml", "seqkd": "recipes/smollm2_cpu_seqkd.yml",
               "gad": "recipes/smollm2_cpu_gad.yml"}


def _stop(message: str) -> NoReturn:
    """Raise the one-line `ValueError`, as soda's other `register` errors (GAD's recipe problems).

    Logged too: under `accelerate launch` (`axolotl train`'s default launcher) the exception's
    line ends the child's traceback and the parent's own traceback follows it; the log line
    stands on its own above both.
    """
    LOG.error("%s", message)
    raise ValueError(message)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _process_group_exists() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _recipe_path(cfg: Mapping[str, Any]) -> str:
    """The recipe's path, or "" when `load_cfg` was given a dict (it names a temporary copy,
    which says nothing to the user)."""
    path = str(cfg.get("axolotl_config_path") or "")
    return path if path and not Path(path).name.startswith("axolotl_config_") else ""


def _recipe_name(cfg: Mapping[str, Any]) -> str:
    path = _recipe_path(cfg)
    return f"`{Path(path).name}`" if path else "this recipe"


def gpu_settings(cfg: Mapping[str, Any]) -> list[str]:
    """The recipe's settings that need a CUDA device, as written."""
    found = [f"`deepspeed: {cfg['deepspeed']}`"] if cfg.get("deepspeed") else []
    return found + [f"`{key}: true`" for key in GPU_ONLY_SWITCHES if cfg.get(key) is True]


def cpu_recipe_for(cfg: Mapping[str, Any]) -> str:
    if cfg.get("gad") is not None:
        return CPU_RECIPES["gad"]
    return CPU_RECIPES["soda"] if rl_method(cfg) else CPU_RECIPES["seqkd"]


def _needs_gpu(cfg: Mapping[str, Any]) -> NoReturn:
    cpu = cpu_recipe_for(cfg)
    _stop(f"soda: {_recipe_name(cfg)} is a GPU recipe ({', '.join(gpu_settings(cfg))}) and this machine has no "
          f"CUDA device; on a CPU, train {cpu} instead (`axolotl train {cpu} --launcher python`).")


def check_deepspeed_has_gpu(cfg: Mapping[str, Any]) -> None:
    """From `register`. Axolotl's `setup_deepspeed_env` (from `load_cfg`) starts an nccl process
    group for a one-process launch, except under `axolotl preprocess` (`AXOLOTL_IS_PREPROCESS=1`)
    and Ray; without CUDA only a process group that already exists (DeepSpeed reuses it, as
    `tests/e2e/deepspeed_cpu_launch.py` starts one with gloo) lets it start.

    Raises:
        ValueError: `deepspeed` is set, no CUDA device and no process group, in a training launch.
    """
    if not cfg.get("deepspeed") or os.environ.get("AXOLOTL_IS_PREPROCESS") == "1" or cfg.get("use_ray") is True:
        return
    if not _has_cuda() and not _process_group_exists():
        _needs_gpu(cfg)


def check_precision_has_gpu(cfg: Mapping[str, Any]) -> None:
    """From `load_datasets` (training only, not `axolotl preprocess`).

    Raises:
        ValueError: `bf16`, `fp16` or `tf32` is `true` and there is no CUDA device.
    """
    if any(cfg.get(key) is True for key in GPU_ONLY_SWITCHES) and not _has_cuda():
        _needs_gpu(cfg)


def _soda_entries(cfg: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any], str]]:
    """(where, entry, kind) of every `type: soda` dataset entry the run will read; kind is
    `pairs` (a DPO stage's rows) or `teacher` (SFT and GRPO rows)."""
    top_kind = "pairs" if rl_method(cfg) == "dpo" else "teacher"
    for key in ("datasets", "test_datasets"):
        for index, entry in enumerate(cfg.get(key) or []):
            yield f"{key}[{index}]", entry, top_kind
    for block, later_stage in (("soda", "dpo"), ("gad", "gad")):
        settings = cfg.get(block)
        if not isinstance(settings, Mapping) or str(settings.get("stage") or "") == later_stage:
            continue  # a stage that starts from a finished warmup reads no warmup data
        for index, entry in enumerate((settings.get("warmup") or {}).get("datasets") or []):
            yield f"{block}.warmup.datasets[{index}]", entry, "teacher"


def _writer(path: str, kind: str, recipe: str) -> str:
    if kind == "teacher":
        return f"`soda teacher --prompts PROMPTS --model TEACHER --out {path}` writes it"
    from ..pairs.writer import DATA_DIR

    recipe_flag = f" --recipe {recipe}" if recipe else ""
    if Path(path).name == DATA_DIR:
        out = os.path.dirname(path)
        return f"`soda pairs --teacher TEACHER.jsonl --snapshot Q0_DIR{recipe_flag} --out {out}` writes it"
    return f"`soda pairs --teacher TEACHER.jsonl --snapshot Q0_DIR{recipe_flag} --out DIR` writes pairs to DIR/{DATA_DIR}"


def missing_data(cfg: Mapping[str, Any]) -> list[str]:
    """One phrase per local `type: soda` dataset `path` that does not exist, with its writer."""
    recipe = _recipe_path(cfg)
    missing = []
    for where, entry, kind in _soda_entries(cfg):
        if not isinstance(entry, Mapping) or entry.get("type") not in SODA_TYPES:
            continue
        path = entry.get("path")
        if not isinstance(path, str) or not looks_local(path):
            continue
        if Path(path).expanduser().exists():
            continue
        relative = "" if Path(path).expanduser().is_absolute() else f" (looked in {Path.cwd()})"
        missing.append(f"`{where}.path: {path}` does not exist{relative}; {_writer(path, kind, recipe)}")
    return missing


def check_data_exists(cfg: Mapping[str, Any]) -> None:
    """From `register`.

    Raises:
        ValueError: a local `type: soda` dataset path does not exist.
    """
    missing = missing_data(cfg)
    if missing:
        _stop(f"soda: {_recipe_name(cfg)} reads data that is not built yet: {'; '.join(missing)}.")


def check_recipe_can_start(cfg: Mapping[str, Any]) -> None:
    """Everything `register` checks, the GPU first (building data is pointless where the recipe cannot train)."""
    check_deepspeed_has_gpu(cfg)
    check_data_exists(cfg)
