"""Whether a recipe's dataset `path` names a local file or folder, or may be a Hub id.

One rule for every stage that checks a path before Axolotl reads it (`soda snapshot`'s
prompt reading, `axolotl train`'s preflight): a path that starts with `.`, `/` or `~`,
ends with a data-file suffix, or has two or more `/` is local; anything else (`owner/name`,
`name`) may be a Hub dataset id and is left to Axolotl's loader.
"""

from __future__ import annotations

from pathlib import Path

# File suffixes that make a dataset `path` a local file, never a Hub id.
DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".arrow", ".csv")


def looks_local(path: str) -> bool:
    """True when `path` can only be a local file or folder (see the module's rule)."""
    return path.startswith((".", "/", "~")) or path.endswith(DATA_SUFFIXES) or path.count("/") >= 2


def is_missing_local_path(path: str) -> bool:
    """A path that can only be local and is absent; a possible Hub id is never "missing"."""
    return looks_local(path) and not Path(path).expanduser().exists()


__all__ = ["DATA_SUFFIXES", "is_missing_local_path", "looks_local"]
