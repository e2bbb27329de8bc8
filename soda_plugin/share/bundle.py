"""Which files a published model repo holds, and where.

Layout: the model folder's files at the top (so `from_pretrained(repo)` works), and the
recipe with its DeepSpeed JSON under `recipe/`, keeping the recipe's relative
`deepspeed:` path valid for a downloaded copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..cost.recorder import COST_FILENAME

RECIPE_DIR = "recipe"
MODEL_SUFFIXES = (".safetensors", ".json", ".jinja", ".model", ".txt", ".tiktoken")
# Training by-products that are not the model (stage markers hold the training config).
SKIP_MODEL_FILES = {"README.md", "debug.log", "soda_stage.json", "training_args.bin", COST_FILENAME}


@dataclass(frozen=True)
class BundleFile:
    local: Path
    path_in_repo: str

    @property
    def size(self) -> int:
        return self.local.stat().st_size


def _model_files(model_dir: Path) -> list[BundleFile]:
    from ..format.model_folder import refuse_adapter_only

    # An adapter on a Hub base is a usable upload; soda's LoRA DPO adapter sits on the local
    # `<warmup dir>/merged`, so whoever downloads it could not load it.
    refuse_adapter_only(model_dir, use="a published repo", hub_base_ok=True)
    files = [BundleFile(p, p.name) for p in sorted(model_dir.iterdir())
             if p.is_file() and p.suffix in MODEL_SUFFIXES and p.name not in SKIP_MODEL_FILES]
    if not any(f.local.suffix == ".safetensors" for f in files):
        raise FileNotFoundError(f"{model_dir} holds no `*.safetensors` weights; pass the trained `output_dir`.")
    return files


def _deepspeed_file(recipe_path: Path, recipe: dict[str, Any]) -> BundleFile | None:
    value = recipe.get("deepspeed")
    if not isinstance(value, str):
        return None
    from ..train.deepspeed_path import deepspeed_candidates

    relative = Path(value)
    found = next((c for c in deepspeed_candidates(value, str(recipe_path)) if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"the recipe's `deepspeed: {value}` was not found next to {recipe_path}.")
    in_repo = relative.as_posix() if not relative.is_absolute() else f"deepspeed/{relative.name}"
    return BundleFile(found.resolve(), f"{RECIPE_DIR}/{in_repo}")


def plan_bundle(model_dir: str | Path, recipe_path: str | Path) -> list[BundleFile]:
    """The files to upload (the card is added by `publish`).

    Raises:
        FileNotFoundError: no weights in `model_dir`, or the recipe's DeepSpeed JSON is missing.
        ValueError: the recipe's `deepspeed:` is absolute, so a downloaded copy could not find it;
            or `model_dir` holds only an adapter on a local base (pass `<output_dir>/merged`).
    """
    recipe_path = Path(recipe_path)
    recipe = yaml.safe_load(recipe_path.read_text())
    if isinstance(recipe.get("deepspeed"), str) and Path(recipe["deepspeed"]).is_absolute():
        raise ValueError(
            f"`deepspeed: {recipe['deepspeed']}` is absolute; make it relative to the recipe (e.g. "
            "`deepspeed/zero2.json`) so the published bundle works where it is downloaded."
        )
    files = _model_files(Path(model_dir))
    files.append(BundleFile(recipe_path.resolve(), f"{RECIPE_DIR}/{recipe_path.name}"))
    deepspeed = _deepspeed_file(recipe_path, recipe)
    if deepspeed is not None:
        files.append(deepspeed)
    return files
