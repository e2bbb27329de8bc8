"""`--cpu`: a site folder that shows this interpreter's packages as the GPU machine would have them.

The dry run must fail where the GPU run would: an `axolotl train` that imports a package the
GPU machine lacks and nobody brings, or that probes for one (transformers imports `kernels`
only where it is installed). So `--cpu` runs its `axolotl train` processes with `python -S`
(no venv site-packages) and PYTHONPATH = the check's site folder (stand-ins), this view (links
to the venv's copies of `GPU_MACHINE_PACKAGES` and `WHEELS`, dist-info included), the repo.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
from pathlib import Path

from .carry import GPU_MACHINE_PACKAGES, normalize, wheel_names


def _top_level_entries(dist: md.Distribution) -> set[str]:
    entries = set()
    for file in dist.files or []:
        parts = Path(str(file)).parts
        if parts and parts[0] != ".." and not parts[0].endswith(".pth") and parts[0] != "__pycache__":
            entries.add(parts[0])
    return entries


def build_view(dest: Path, skip: set[str]) -> list[str]:
    """Link the allowed distributions' top-level files into `dest` (made fresh); never a name in
    `skip` (the stand-ins). Returns the distributions linked."""
    allowed = GPU_MACHINE_PACKAGES | wheel_names()
    dest.mkdir(parents=True, exist_ok=True)
    linked = []
    for dist in md.distributions():
        name = normalize(dist.metadata["Name"] or "")
        if name not in allowed:
            continue
        base = Path(str(dist.locate_file("")))
        for entry in _top_level_entries(dist):
            if entry.split(".")[0] in skip:
                continue
            target = dest / entry
            if not target.exists() and (base / entry).exists():
                os.symlink(base / entry, target)
        linked.append(name)
    missing = sorted(wheel_names() - set(linked))
    if missing:
        raise RuntimeError(f"--cpu needs these in {sys.executable}'s environment (they are the wheels the GPU "
                           f"run brings): {', '.join(missing)}")
    return sorted(linked)
