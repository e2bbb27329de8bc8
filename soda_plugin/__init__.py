"""soda_plugin: SODA black-box distillation for Axolotl.

In a recipe: `plugins: [soda_plugin.SODAPlugin]` and `type: soda` in `datasets:`.
"""

from .dataset_type import default as soda
from .registry import register_dataset_type

register_dataset_type()

__version__ = "0.1.0"


def __getattr__(name: str):
    # Axolotl is imported lazily so that `import soda_plugin` stays light for the tools.
    if name == "SODAPlugin":
        from .plugin import SODAPlugin

        return SODAPlugin
    raise AttributeError(name)


__all__ = ["SODAPlugin", "soda", "__version__"]
