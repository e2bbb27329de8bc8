"""Pure logic of the warmup → DPO chain: derive the warmup config, hash it, read and
write stage markers, and decide whether the warmup must run. No Axolotl imports here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .args import OnWarmupChange, SodaConfig
from ..format.fileio import atomic_write_text
from ..constants import DPO_ONLY_KEYS, LORA_KERNEL_KEYS, MARKER_SCHEMA_VERSION, STAGE_MARKER_FILENAME

# Keys that change where or how verbosely a stage runs, not what it produces.
_NOT_HASHED = ("output_dir", "axolotl_config_path", "logging_steps", "dataset_prepared_path",
               "dataset_num_proc", "dataset_processes", "save_steps", "save_total_limit",
               "use_wandb", "use_mlflow", "use_tensorboard", "hub_model_id", "hub_strategy")
_NOT_HASHED_PREFIXES = ("wandb_", "mlflow_", "comet_", "swanlab_", "trackio_")
_DIGESTS: dict[tuple[str, int, int], str] = {}


class WarmupConfigChangedError(RuntimeError):
    """A finished warmup exists but was made by a different warmup config."""


def default_warmup_dir(output_dir: str | None) -> str:
    return str(Path(output_dir or "./model-out") / "warmup")


def _require_warmup(soda: SodaConfig) -> None:
    if soda.warmup is None:
        raise ValueError("this recipe has no `soda.warmup` block, so there is no warmup stage to derive.")


def warmup_dir(raw: Mapping[str, Any], soda: SodaConfig) -> str:
    _require_warmup(soda)
    return soda.warmup.output_dir or default_warmup_dir(raw.get("output_dir"))


def derive_warmup_config(raw: Mapping[str, Any], soda: SodaConfig) -> dict[str, Any]:
    """The SFT config of the warmup stage, derived from the recipe's (DPO) config.

    DPO-only keys are removed, `soda.warmup` values override top-level ones, and the
    `soda` block keeps only what the SFT view reads.
    """
    _require_warmup(soda)
    cfg = {k: copy.deepcopy(v) for k, v in raw.items() if k not in DPO_ONLY_KEYS and k != "soda"}
    cfg.update(copy.deepcopy(soda.warmup.overrides()))
    cfg["output_dir"] = warmup_dir(raw, soda)
    cfg["soda"] = {"on_bad_row": soda.on_bad_row.value}
    # A fresh SFT run, never a resume of the DPO run's checkpoints.
    cfg.pop("resume_from_checkpoint", None)
    if cfg.get("adapter") and all(cfg.get(key) is None for key in LORA_KERNEL_KEYS):
        # Unset, Axolotl would turn the kernels on for this SFT config and off for the DPO
        # one. The kernel patch replaces the attention *class*'s `forward` with one that
        # calls per-instance `apply_qkv`/`apply_o`, which only the patched stage's model
        # gets: the DPO model, built next in the same process, would crash in its first
        # forward. Both stages run without them unless the recipe sets them.
        cfg.update({key: False for key in LORA_KERNEL_KEYS})
    return cfg


def _hashed(key: str) -> bool:
    return key not in _NOT_HASHED and not key.startswith(_NOT_HASHED_PREFIXES)


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()[:16]
    return _DIGESTS[key]


def content_digest(value: Any) -> Any:
    """What a path names, by content: a local file's (or folder's files') bytes; any other
    value (a Hub id) as it is."""
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    if path.is_file():
        return _file_digest(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return hashlib.sha256("".join(f"{p.relative_to(path)}:{_file_digest(p)};" for p in files).encode()).hexdigest()[:16]
    return value


def data_fingerprint(cfg: Mapping[str, Any]) -> list[Any]:
    """The content of each warmup dataset: a teacher file regenerated at the same path is new data."""
    return [content_digest(entry.get("path")) for entry in cfg.get("datasets") or [] if isinstance(entry, Mapping)]


def _hashed_view(cfg: Mapping[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in cfg.items() if _hashed(k)}
    if view.get("deepspeed"):
        # By content: the resolved absolute path changes when the checkout moves.
        view["deepspeed"] = content_digest(view["deepspeed"])
    view["datasets (content)"] = data_fingerprint(cfg)
    return view


def config_hash(cfg: Mapping[str, Any]) -> str:
    blob = json.dumps(_hashed_view(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], old_data: Any = None) -> list[str]:
    keys = sorted(k for k in set(old) | set(new) if _hashed(k) and k != "deepspeed")
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    if old_data is not None and old_data != data_fingerprint(new):
        changed.append("the content of the warmup datasets")
    return changed


def marker_path(stage_dir: str | os.PathLike) -> Path:
    return Path(stage_dir) / STAGE_MARKER_FILENAME


def read_marker(stage_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = marker_path(stage_dir)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_marker(stage_dir: str | os.PathLike, stage: str, cfg: Mapping[str, Any]) -> Path:
    """Atomically record that `stage` finished in `stage_dir` with config `cfg`."""
    path = marker_path(stage_dir)
    record = {
        "schema": MARKER_SCHEMA_VERSION,
        "stage": stage,
        "config_hash": config_hash(cfg),
        "config": json.loads(json.dumps(dict(cfg), default=str)),
        "datasets_content": data_fingerprint(cfg),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True))
    return path


@dataclass(frozen=True)
class WarmupDecision:
    run: bool
    directory: str
    reason: str


def decide_warmup(cfg: Mapping[str, Any], directory: str, on_change: OnWarmupChange,
                  block: str = "soda") -> WarmupDecision:
    """Whether the warmup described by `cfg` must (re)run in `directory`.

    Raises:
        WarmupConfigChangedError: a finished warmup came from another config and the
            policy is `error`.
    """
    marker = read_marker(directory)
    if marker is None:
        return WarmupDecision(True, directory, f"no finished warmup in {directory}")
    if marker.get("config_hash") == config_hash(cfg):
        return WarmupDecision(False, directory, f"warmup in {directory} is finished (config {marker['config_hash']})")
    diff = changed_keys(marker.get("config", {}), cfg, marker.get("datasets_content"))
    if OnWarmupChange(on_change) is OnWarmupChange.RERUN:
        return WarmupDecision(True, directory, f"warmup config changed ({'; '.join(diff)}); re-running")
    raise WarmupConfigChangedError(
        f"the finished warmup in {directory} was made by a different warmup config "
        f"(hash {marker.get('config_hash')} vs {config_hash(cfg)}); changed: {'; '.join(diff) or 'unknown'}. "
        f"Set `{block}.warmup.on_config_change: rerun` to train it again, or point "
        f"`{block}.warmup.output_dir` to a new folder."
    )
