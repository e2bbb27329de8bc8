"""soda_plugin: SODA black-box distillation for Axolotl.

In a recipe: `plugins: [soda_plugin.SODAPlugin]` and `type: soda` in `datasets:`.
Nothing heavy is imported here: the tools (snapshot, pair builder) must start fast and
run in environments without Axolotl (the vLLM one).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "SODAPlugin":
        from .train.plugin import SODAPlugin

        return SODAPlugin
    if name == "GADPlugin":
        from .gad.plugin import GADPlugin

        return GADPlugin
    if name == "soda":
        # The DPO loader resolves `type: soda_plugin.soda` as this attribute.
        from .train.dataset_type import default

        return default
    raise AttributeError(f"module 'soda_plugin' has no attribute {name!r}")


__all__ = ["SODAPlugin", "GADPlugin", "soda", "__version__"]
