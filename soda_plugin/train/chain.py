"""Run the warmup inside `axolotl train`, then point the DPO stage at its weights.

Called from the plugin's `load_datasets` hook, the first hook of `axolotl train` that
runs after the config is validated and before any data or model is loaded. The warmup
runs in the same process (so a multi-process launch keeps one process group), through
Axolotl's own `load_cfg` → `load_datasets` → `train`.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..log import get_logger
from typing import Any, Iterator, Mapping

from .args import OnWarmupChange, SodaConfig, Stage, rl_method
from .distributed import decide_on_main, on_main_only, on_main_then_barrier, place_model_on_cpu_without_accelerator
from .host_patches import keep_process_group, second_deepspeed_setup
from .merge import merge_warmup_adapter, merged_dir, uses_adapter
from .release import log_memory_per_rank, release_stage
from .stages import (
    WarmupDecision,
    config_hash,
    decide_warmup,
    derive_warmup_config,
    marker_path,
    read_marker,
    write_marker,
)

LOG = get_logger(__name__)

# Raw (unvalidated) recipes seen by `SODAPlugin.register`, keyed by config path. The
# validated config is normalized (derived keys, resolved defaults) and cannot be
# validated a second time, so the warmup config is derived from the raw one.
_RAW_CONFIGS: dict[str, dict[str, Any]] = {}


def _config_key(cfg: Mapping[str, Any]) -> str:
    return str(cfg.get("axolotl_config_path") or "")


def remember_raw_config(cfg: Mapping[str, Any]) -> None:
    raw = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    _RAW_CONFIGS[_config_key(cfg)] = copy.deepcopy(raw)


def raw_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as `SODAPlugin.register` (or `GADPlugin.register`) saw it, before validation."""
    raw = _RAW_CONFIGS.get(_config_key(cfg))
    if raw is None:
        raise RuntimeError(
            "soda: the recipe was not registered by the plugin's `register`; list the plugin under "
            "`plugins:` and load the config with Axolotl's `load_cfg`."
        )
    return raw


def soda_config(cfg: Mapping[str, Any]) -> SodaConfig | None:
    block = cfg.get("soda")
    if block is None:
        return None
    return block if isinstance(block, SodaConfig) else SodaConfig.model_validate(dict(block))


def is_dpo(cfg: Mapping[str, Any]) -> bool:
    return rl_method(cfg) == "dpo"


@contextlib.contextmanager
def _restore_accelerate_env() -> Iterator[None]:
    """The warmup's `load_cfg` rewrites `ACCELERATE_*` (e.g. its gradient accumulation
    steps); DPO's trainer must read the recipe's values again."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("ACCELERATE_")}
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("ACCELERATE_") and k not in saved]:
            del os.environ[key]
        os.environ.update(saved)


def run_warmup(warmup_cfg: Mapping[str, Any]) -> None:
    """Train the SFT warmup described by the raw config `warmup_cfg`, in this process."""
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_datasets
    from axolotl.integrations.base import PluginManager
    from axolotl.utils.dict import DictDefault
    import axolotl.train as axolotl_train

    from .dataset_type import bad_row_policy
    from .strict_rows import clean_soda_datasets

    manager = PluginManager.get_instance()
    outer_cfg = manager.cfg
    cfg = None
    try:
        with _restore_accelerate_env():
            with second_deepspeed_setup(bool(warmup_cfg.get("deepspeed"))):
                cfg = load_cfg(DictDefault(copy.deepcopy(dict(warmup_cfg))))
            place_model_on_cpu_without_accelerator(cfg)
            if cfg.get("rl"):  # GAD's warmup is a GRPO run
                from axolotl.common.datasets import load_preference_datasets

                dataset_meta = load_preference_datasets(cfg=cfg, cli_args=TrainerCliArgs())
            else:
                clean_soda_datasets(cfg, need_student=False, policy=bad_row_policy(cfg))
                dataset_meta = load_datasets(cfg=cfg, cli_args=TrainerCliArgs())
            with keep_process_group():
                model, tokenizer, trainer = axolotl_train.train(cfg=cfg, dataset_meta=dataset_meta)
            del model, tokenizer, dataset_meta
            release_stage(trainer)
            del trainer
    finally:
        manager.cfg = outer_cfg
        if cfg is not None:
            remove_axolotl_temp_config(cfg.get("axolotl_config_path"))
        gc.collect()
    log_memory_per_rank("after the warmup, released before the next stage")


def remove_axolotl_temp_config(path: str | None) -> None:
    """Delete the copy of the warmup config that Axolotl's `load_cfg` leaves in the temp
    folder when given a dict (axolotl/cli/config.py:252-258 in 0.21, 259-264 in 0.19:
    `NamedTemporaryFile(delete=False, prefix="axolotl_config_")`, never removed). Only
    the trackers' callbacks read it, when training begins; without this every chained
    run left one file in /tmp."""
    if not path:
        return
    file = Path(path)
    if file.parent == Path(tempfile.gettempdir()) and file.name.startswith("axolotl_config_"):
        file.unlink(missing_ok=True)


def point_at_warmup(cfg: Any, directory: str) -> None:
    """Make the DPO stage load q_w (policy, tokenizer and, by TRL, the reference)."""
    original = cfg.base_model
    cfg.base_model = directory
    for key in ("base_model_config", "tokenizer_config"):
        if cfg.get(key) in (None, original):
            cfg[key] = directory


def require_finished_warmup(directory: str, expected: Mapping[str, Any], block: str = "soda") -> None:
    marker = read_marker(directory)
    second = "dpo" if block == "soda" else "gad"
    if marker is None:
        raise FileNotFoundError(
            f"`{block}.stage: {second}` needs a finished warmup, but {marker_path(directory)} does not "
            f"exist. Run the warmup first (`{block}.stage: warmup` or `chain`)"
            + (", or remove the `soda.warmup` block and set `base_model` to your warmup model." if block == "soda" else ".")
        )
    if marker.get("config_hash") != config_hash(expected):
        LOG.warning(
            "soda: the warmup in %s was made by a config that differs from this recipe's "
            "`%s.warmup`; using it anyway because `%s.stage: %s`.", directory, block, block, second
        )


def run_or_reuse_warmup(warmup_cfg: dict[str, Any], on_change: OnWarmupChange, block: str = "soda") -> str:
    """Train the warmup unless a finished one with this config is in its folder; its folder."""
    from accelerate import PartialState

    PartialState()  # joins the process group of a multi-process launch, if any
    directory = warmup_cfg["output_dir"]
    decision: WarmupDecision = decide_on_main(lambda: decide_warmup(warmup_cfg, directory, on_change, block))
    LOG.info("soda: %s", decision.reason)
    if decision.run:
        LOG.info("soda: %s", describe_warmup_start(warmup_cfg, directory))
        # A stale marker must not survive a re-run that is killed half-way.
        on_main_then_barrier(lambda: marker_path(directory).unlink(missing_ok=True))
        run_warmup(warmup_cfg)
        if uses_adapter(warmup_cfg):
            # Before the marker: a run killed during the merge is a warmup to redo.
            on_main_then_barrier(lambda: merge_warmup_adapter(warmup_cfg, directory))
        on_main_then_barrier(lambda: write_marker(directory, "warmup", warmup_cfg))
        LOG.info("soda: warmup finished; marker written to %s", marker_path(directory))
    return directory


def _checkpoints(directory: str) -> list[str]:
    found = Path(directory).glob("checkpoint-*") if Path(directory).is_dir() else []
    return sorted((p.name for p in found if p.name.split("-")[-1].isdigit()), key=lambda n: int(n.split("-")[-1]))


def describe_warmup_start(warmup_cfg: Mapping[str, Any], directory: str) -> str:
    """Whether the warmup about to train restarts from step 0 or Axolotl resumes it."""
    partial = [name for name in ("model.safetensors", "adapter_model.safetensors", "merged")
               if (Path(directory) / name).exists()]
    left = f" (an unfinished earlier run left {', '.join(partial)}; it is overwritten)" if partial else ""
    checkpoints = _checkpoints(directory)
    if checkpoints and warmup_cfg.get("auto_resume_from_checkpoints"):
        return f"the warmup resumes from {directory}/{checkpoints[-1]} (`auto_resume_from_checkpoints`){left}"
    return f"the warmup trains from step 0{left}"


def describe_dpo_start(cfg: Any) -> str:
    checkpoints = _checkpoints(str(cfg.get("output_dir") or ""))
    if cfg.get("resume_from_checkpoint"):
        return f"DPO resumes from {cfg.get('resume_from_checkpoint')}"
    if checkpoints and cfg.get("auto_resume_from_checkpoints"):
        return f"DPO resumes from {cfg.get('output_dir')}/{checkpoints[-1]} (`auto_resume_from_checkpoints`)"
    return "DPO trains from step 0"


def prepare_dpo_stage(cfg: Any) -> None:
    """Run or reuse the warmup as `soda.stage` says, and start DPO from it."""
    soda = soda_config(cfg)
    if soda is None or soda.warmup is None or not is_dpo(cfg):
        return
    warmup_cfg = derive_warmup_config(raw_config(cfg), soda)
    if soda.stage is Stage.DPO:
        directory = warmup_cfg["output_dir"]
        require_finished_warmup(directory, warmup_cfg)
    else:
        directory = run_or_reuse_warmup(warmup_cfg, soda.warmup.on_config_change)
        if soda.stage is Stage.WARMUP:
            LOG.info("soda: `soda.stage: warmup`; q_w is in %s, stopping before DPO.", directory)
            raise SystemExit(0)
    if uses_adapter(warmup_cfg):
        # DPO trains a fresh adapter on the merged q_w; with it disabled, the reference is q_w.
        directory = str(merged_dir(directory))
    point_at_warmup(cfg, directory)
    LOG.info("soda: DPO starts from the warmup model %s, which is also its reference; %s.",
             directory, describe_dpo_start(cfg))


# `output_dir`s of the LoRA DPO stages whose training finished in this process.
_TRAINED_ADAPTERS: set[str] = set()


def wants_final_merge(cfg: Mapping[str, Any]) -> bool:
    """A soda DPO stage that trains a LoRA adapter: merged into `<output_dir>/merged` at its end."""
    return soda_config(cfg) is not None and is_dpo(cfg) and uses_adapter(cfg)


def drop_stale_final_merge(cfg: Any) -> None:
    """Before DPO trains: a `merged/` left by an earlier run is not this run's student."""
    if wants_final_merge(cfg):
        on_main_then_barrier(lambda: shutil.rmtree(merged_dir(cfg.output_dir), ignore_errors=True))


def note_trained(cfg: Any) -> None:
    """From `post_train`, which Axolotl calls only once `trainer.train()` has returned."""
    if wants_final_merge(cfg):
        _TRAINED_ADAPTERS.add(str(cfg.output_dir))


def merge_final_adapter(cfg: Any) -> None:
    """From `post_train_unload`: merge the finished DPO adapter into `<output_dir>/merged`
    (rank 0), with the tokenizer, so that the judge and `share.py` get a full model.

    Axolotl calls `post_train_unload` from a `finally` (`axolotl/cli/train.py`, `do_train`),
    after a failed run too, and after its `train` has destroyed the process group: only a run
    whose training finished (`note_trained`) and whose save raised nothing is merged, and the
    other ranks do not wait for rank 0 (`on_main_only`).
    """
    output_dir = str(cfg.get("output_dir") or "")
    if not wants_final_merge(cfg) or output_dir not in _TRAINED_ADAPTERS:
        return
    _TRAINED_ADAPTERS.discard(output_dir)
    if sys.exc_info()[1] is not None:
        LOG.warning("soda: DPO did not finish cleanly; its adapter is not merged into %s.", merged_dir(output_dir))
        return
    gc.collect()  # the DPO trainer is gone by now; the merge loads two models on the CPU
    on_main_only(lambda: merge_warmup_adapter(cfg, output_dir))
    LOG.info("soda: the student is the full model %s (DPO's adapter merged into q_w); evaluate and "
             "share that folder.", merged_dir(output_dir))
