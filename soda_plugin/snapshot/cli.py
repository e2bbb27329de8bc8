"""Resolve `soda snapshot` arguments (recipe + flags) into one snapshot run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from .config import SnapshotConfig
from ..format.prompts import prompts_from_file, prompts_from_recipe
from .engine import EngineInfo, SamplingSettings, create_engine
from .options import data_parallel_size, engine_options, installed_version, max_prompt_tokens, sampling_overrides
from .runner import SnapshotSummary, run_snapshot


def _recipe(path: str | None) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text()) if path else {}


def resolve_settings(recipe: dict[str, Any], args: argparse.Namespace) -> tuple[SnapshotConfig, SamplingSettings]:
    block = dict(((recipe.get("soda") or {}).get("snapshot")) or {})
    for key in ("backend", "dtype", "tensor_parallel_size", "base_url", "shard_size", "max_prompt_tokens"):
        if getattr(args, key, None) is not None:
            block[key] = getattr(args, key)
    config = SnapshotConfig.model_validate(block)
    return config, SamplingSettings(**{**sampling_overrides(config), **sampling_overrides(args)})


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
