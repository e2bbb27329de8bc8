"""Make the `soda` dataset type reachable under the names Axolotl's loaders resolve.

Axolotl resolves a dataset `type` by importing a module: SFT types from
`axolotl.prompt_strategies.<type>` (function `load`), DPO types from
`axolotl.prompt_strategies.dpo.<type>` (function `default`), and a dotted type
`a.b` from `axolotl.prompt_strategies.a.b` for SFT or attribute `b` of top-level module `a`
for DPO. Axolotl has no registry API, so we alias our one module under those names in
`sys.modules`; the DPO dotted form is served by `soda_plugin.soda` itself.
"""

from __future__ import annotations

import sys

from . import dataset_type

ALIASES = (
    "axolotl.prompt_strategies.soda",
    "axolotl.prompt_strategies.dpo.soda",
    "axolotl.prompt_strategies.soda_plugin.soda",
)


def register_dataset_type() -> None:
    """Idempotent; runs when `soda_plugin.train.plugin` is imported (Axolotl imports plugins
    before it loads datasets)."""
    for name in ALIASES:
        sys.modules.setdefault(name, dataset_type)
