"""Which packages the GPU check replaces by import-only stand-ins, and writing them.

`axolotl train` imports these at module level on the path the check runs (the soda recipe: SFT
warmup, then DPO with soda's reference pass) without ever using them, and the user's GPU machine
as the check assumes it (`carry.GPU_MACHINE_PACKAGES`) does not have them; bitsandbytes and wandb
alone are more than the 64 MiB that travels. Found by running the `--cpu` chain against
`gpu_view` (only the machine's packages and `carry.WHEELS`) until it imported cleanly.

Each becomes a two-line package in the check's own site folder (`write_standins`), never in a venv, on PYTHONPATH only for the check's child processes; its
behaviour is `standin_module.py`'s (imports work, any use raises `StandinUsedError`).

A package the chain really uses must not be here: the run would fail with that error, naming it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SUPPORT_MODULE = "_soda_standin"

# top-level module -> why it is not brought (wheel sizes: PyPI, cp312 manylinux x86-64).
STANDINS: dict[str, str] = {
    "bitsandbytes": "43.1 MB wheel; axolotl/kernels/lora.py and loaders/adapter.py import it at module level",
    "wandb": "20.3 MB wheel; axolotl/utils/callbacks/__init__.py imports it at module level",
    "posthog": "Axolotl's telemetry client (axolotl/telemetry/manager.py); the check sets AXOLOTL_DO_NOT_TRACK=1",
    "evaluate": "eval metrics (axolotl/utils/callbacks/__init__.py); the check has no eval set",
}


def write_standins(site: Path, names: dict[str, str] | None = None) -> list[str]:
    """Write the stand-in packages `names` (default: all) and their support module into `site`
    (created). Returns the top-level names written. Replaces an earlier stand-in of the same
    name; refuses to overwrite a real package installed there."""
    names = STANDINS if names is None else names
    site.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("standin_module.py"), site / f"{SUPPORT_MODULE}.py")
    for name in names:
        package = site / name
        init = package / "__init__.py"
        if package.exists() and not (init.is_file() and SUPPORT_MODULE in init.read_text()):
            raise FileExistsError(f"{package} holds a real package; the stand-in for `{name}` would replace it. "
                                  "Give the check its own site folder (SODA_GPU_SITE).")
        shutil.rmtree(package, ignore_errors=True)
        package.mkdir()
        init.write_text(f'"""Import-only stand-in: {names[name]}."""\nimport {SUPPORT_MODULE}\n\n'
                        f"{SUPPORT_MODULE}.become_standin(__name__)\n")
    return list(names)
