"""The GPU recipes, loaded on this CPU-only, offline machine: what is swapped, and why.

Every override the recipe tests apply is listed here with its reason; nothing else in
a recipe is changed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
# The per-student GPU recipes (the CPU demo's smollm2_* recipes are tested by the demo).
# GAD's recipes (`*_gad.yml`, a `gad:` block, `rl: grpo`) are tested on their own (tests/unit/test_recipes_gad.py).
GAD_RECIPES = sorted(p for p in RECIPES_DIR.glob("*_gad.yml") if not p.name.startswith("smollm2"))
GPU_RECIPES = sorted(p for p in RECIPES_DIR.glob("*.yml") if not p.name.startswith("smollm2") and p not in GAD_RECIPES)
SODA_RECIPES = [p for p in GPU_RECIPES if p.name.endswith("_soda.yml")]
SEQKD_RECIPES = [p for p in GPU_RECIPES if p.name.endswith("_seqkd.yml")]


def family(recipe: dict[str, Any]) -> str:
    """Tiny model family standing in for the recipe's student."""
    name = recipe["base_model"].lower()
    if "llama" in name:
        return "llama"
    if "qwen" in name:
        return "qwen2"
    raise ValueError(f"no tiny model family for `base_model: {recipe['base_model']}`")


# Applied where Axolotl's own `load_cfg` runs in the test process. `bf16`, `tf32` and
# `attn_implementation: flash_attention_2` pass `load_cfg` on CPU and are kept there.
IN_PROCESS_OVERRIDES: dict[str, tuple[Any, str]] = {
    "deepspeed": (None, "`load_cfg` sets DeepSpeed up at once (`prepare_optim_env`), and Axolotl 0.19 then "
                        "initializes an nccl process group in a one-process launch, which CPU torch lacks; "
                        "the JSONs are parsed by DeepSpeed itself in test_recipes.py and trained with in "
                        "tests/e2e/test_recipe_e2e.py"),
}
# Applied only where a recipe trains on this CPU (tests/e2e/test_recipe_e2e.py).
TRAIN_OVERRIDES: dict[str, tuple[Any, str]] = {
    "bf16": (False, "float32 on CPU, as the CPU demo: bf16 autocast on 2 cores is slow and not what is tested"),
    "tf32": (False, "TF32 is a CUDA matmul mode; the Trainer refuses `tf32` without a CUDA GPU"),
}

# Swapped for every load: model and data the machine has.
SWAPS = {
    "base_model": "the tiny random model of the same family (no download)",
    "datasets[].path / soda.warmup.datasets[].path": "local fixture files with the same columns and ds_type",
    "output_dir / dataset_prepared_path": "a temporary folder (the repo tree stays clean)",
}


def load_recipe(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _swap_datasets(entries: list[dict[str, Any]], fixtures: dict[str, Path]) -> list[dict[str, Any]]:
    swapped = []
    for entry in entries:
        entry = dict(entry)
        entry["path"] = str(fixtures[entry["ds_type"]])
        swapped.append(entry)
    return swapped


def cpu_recipe(path: Path, model_dirs: dict[str, Path], fixtures: dict[str, Path], out: Path,
               *, train: bool = False) -> dict[str, Any]:
    """The recipe at `path` with the documented swaps and overrides applied."""
    cfg = copy.deepcopy(load_recipe(path))
    cfg["base_model"] = str(model_dirs[family(cfg)])
    cfg["datasets"] = _swap_datasets(cfg["datasets"], fixtures)
    warmup = (cfg.get("soda") or {}).get("warmup") or {}
    if warmup.get("datasets"):
        warmup["datasets"] = _swap_datasets(warmup["datasets"], fixtures)
    cfg["output_dir"] = str(out / "out")
    cfg["dataset_prepared_path"] = str(out / "prepared")
    overrides = TRAIN_OVERRIDES if train else IN_PROCESS_OVERRIDES
    for key, (value, _reason) in overrides.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


def write_fixtures(directory: Path) -> dict[str, Path]:
    """One teacher jsonl (SFT view needs no student column) and one pairs parquet folder."""
    import pandas as pd

    from soda_data import valid_rows, write_jsonl

    rows = valid_rows(24)
    teacher = write_jsonl([{k: r[k] for k in ("content", "teacher_response")} for r in rows],
                          directory / "teacher" / "train.jsonl")
    pairs = directory / "pairs" / "data"
    pairs.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(pairs / "train-00000.parquet")
    return {"json": teacher, "parquet": pairs}
