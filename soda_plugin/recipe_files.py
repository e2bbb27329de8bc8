"""Where soda's own recipes and DeepSpeed JSON are, in a clone and in an installed wheel.

A clone (or an editable install) has them in the top-level `recipes/` folder; the wheel
carries that folder as `soda_plugin/recipes/` (setup.py maps the package
`soda_plugin.recipes` onto `recipes/`). `soda fetch recipes` copies them out, and
`deepspeed_path` falls back on them.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# The files that travel: pyproject.toml's package-data for `soda_plugin.recipes` says the same.
RECIPE_PATTERNS = ("*.yml", "deepspeed/*.json")


def shipped_recipes_dir() -> Path:
    """`soda_plugin/recipes` in a wheel install, else the clone's `recipes/` beside the package."""
    packaged = _PACKAGE / "recipes"
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / "recipes"


def shipped_recipe_files() -> list[Path]:
    """Every shipped recipe and DeepSpeed JSON, relative to `shipped_recipes_dir()`, sorted."""
    root = shipped_recipes_dir()
    return sorted({p.relative_to(root) for pattern in RECIPE_PATTERNS for p in root.glob(pattern) if p.is_file()})
