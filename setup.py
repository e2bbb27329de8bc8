"""The wheel's packages; everything else is in pyproject.toml.

pyproject.toml cannot both discover packages and map one onto another folder, and the
recipes stay in the top-level `recipes/` folder: the wheel carries them as the package
`soda_plugin.recipes` (files: `[tool.setuptools.package-data]`).
"""

from setuptools import find_namespace_packages, setup

setup(packages=[*find_namespace_packages(include=["soda_plugin", "soda_plugin.*"]), "soda_plugin.recipes",
                "soda_plugin.recipes.deepspeed"],
      package_dir={"soda_plugin.recipes": "recipes"})
