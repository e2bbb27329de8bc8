"""`python -m benchmarks.gpu_check` or `python benchmarks/gpu_check` (from the repo root)."""

import sys
from pathlib import Path

if not __package__:  # `python benchmarks/gpu_check`: the folder itself is sys.path[0]
    sys.path[0] = str(Path(__file__).resolve().parents[2])  # the repo root, not the package's own folder

from benchmarks.gpu_check.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
