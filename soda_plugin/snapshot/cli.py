"""Resolve `soda snapshot` arguments (recipe + flags) into one snapshot run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from .config import SnapshotConfig
from ..format.prompts import prompts_from_file, prompts_from_recipe
from .engine import EngineInfo, SamplingSettings, create_engine
from .launchers import DataParallel
from .options import data_parallel_size, engine_options, installed_version, max_prompt_tokens, sampling_overrides
from .ray_launcher import RayLaunch, check_backend, import_ray
from .runner import SnapshotSummary, run_snapshot


def _recipe(path: str | None) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text()) if path else {}


def resolve_settings(recipe: dict[str, Any], args: argparse.Namespace) -> tuple[SnapshotConfig, SamplingSettings]:
    block = dict(((recipe.get("soda") or {}).get("snapshot")) or {})
    for key in ("backend", "dtype", "tensor_parallel_size", "base_url", "shard_size", "max_prompt_tokens",
                "ray_address", "shard_timeout_s"):
        if getattr(args, key, None) is not None:
            block[key] = getattr(args, key)
    config = SnapshotConfig.model_validate(block)
    return config, SamplingSettings(**{**sampling_overrides(config), **sampling_overrides(args)})


def ray_launch(config: SnapshotConfig, args: argparse.Namespace, model: str, options: dict[str, Any]) -> RayLaunch:
    """The Ray run: workers as requested (else resolved on the cluster), one engine each."""
    backend = config.backend.value
    check_backend(backend)
    import_ray()  # a missing Ray fails here, before the manifest is written
    return RayLaunch(address=config.ray_address, workers=getattr(args, "data_parallel_size", None)
                     or config.data_parallel_size, backend=backend, model=model, engine_options=options,
                     info=EngineInfo(backend, model, installed_version(backend), options),
                     shard_timeout_s=config.shard_timeout_s)


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
    if config.ray_address:
        return run_snapshot(ray_launch(config, args, model, options), prompts, out, settings, **common)
    ranks = data_parallel_size(config, getattr(args, "data_parallel_size", None))
    if ranks > 1:
        launcher = DataParallel(ranks, backend, model, options, EngineInfo(backend, model, installed_version(backend),
                                                                         options), config.shard_timeout_s)
        return run_snapshot(launcher, prompts, out, settings, **common)
    engine = create_engine(backend, model, **options)
    try:
        return run_snapshot(engine, prompts, out, settings, **common)
    finally:
        engine.close()
