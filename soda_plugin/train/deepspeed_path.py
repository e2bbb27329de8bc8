"""Find a recipe's DeepSpeed JSON from any working directory.

Axolotl opens `deepspeed:` relative to the working directory only, and `axolotl train
https://…/recipe.yml` saves the recipe alone in a temporary folder. soda recipes name
the shared configs relative to their own folder (`deepspeed/zero2.json`), so this looks
in the working directory (Axolotl's behaviour), then next to the recipe, then in soda's
own `recipes/` folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, MutableMapping

from ..recipe_files import shipped_recipes_dir

SHIPPED_RECIPES = shipped_recipes_dir()  # the clone's recipes/, or the wheel's soda_plugin/recipes/


def deepspeed_candidates(value: str, config_path: str | None) -> list[Path]:
    path = Path(value).expanduser()
    if path.is_absolute():
        return [path]
    places = [Path.cwd()]
    if config_path:
        places.append(Path(config_path).resolve().parent)
    places.append(SHIPPED_RECIPES)
    return [place / path for place in places]


def resolve_deepspeed_path(cfg: MutableMapping[str, Any]) -> None:
    """Replace a relative `deepspeed:` path by the absolute path of the first match.

    Raises:
        FileNotFoundError: naming every place looked in, when no candidate exists.
    """
    value = cfg.get("deepspeed")
    if not isinstance(value, str) or not value or value.startswith(("http://", "https://")):
        return
    candidates = deepspeed_candidates(value, cfg.get("axolotl_config_path"))
    for candidate in candidates:
        if candidate.is_file():
            cfg["deepspeed"] = str(candidate.resolve())
            return
    raise FileNotFoundError(
        f"`deepspeed: {value}` was not found; looked in {', '.join(str(c) for c in candidates)}. "
        "Give an absolute path, or run from a folder holding it."
    )
