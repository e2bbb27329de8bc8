"""What a miniature run ran on, written beside its figures.

Training here is bit-reproducible on one machine (same config, same weights), but two
machines of the same size have given different trained weights from the same code and
seeds: CPU kernels differ with the instruction set torch picks and the thread count.
The report records both, so two reports can be told apart before their figures are
compared.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "trl", "axolotl", "datasets")


def cpu_model() -> str:
    """The first `model name` of /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def source_commit(directory: Path) -> str | None:
    """The git commit of the checkout holding `directory` (with `+dirty` when it has
    uncommitted changes), or None outside a clone or without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def machine_facts() -> dict[str, Any]:
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        # torch's own version string keeps the build tag (+cpu, +cu130) that its
        # distribution metadata may drop: the CPU and CUDA wheels ship different kernels.
        "packages": {**package_versions(), "torch": torch.__version__},
        "soda_commit": source_commit(Path(__file__).resolve().parent),
    }


def machine_line(facts: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in facts["packages"].items() if version)
    return (f"{facts['cpu']}, {facts['cores']} cores, torch CPU kernels {facts['torch_cpu_capability']} on "
            f"{facts['torch_threads']} threads; Python {facts['python']}, {versions}; "
            f"soda {facts['soda_commit'] or '(not a git checkout)'}")
