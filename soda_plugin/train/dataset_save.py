"""Save a prepared dataset in this process when one process is asked for.

Axolotl saves every prepared dataset with `num_proc >= 1`
(axolotl/utils/data/shared.py:500-504, 0.21: `num_proc=min(max(1, len(dataset) // 256),
num_workers)`), and `datasets` sends any `num_proc >= 1` save through a spawned pool
(datasets/arrow_dataset.py:1907-1908 in 5.0.1, 1905-1906 in 4.8.4: `if num_proc is not None and num_proc >= 1:
with mp.get_context("spawn").Pool(num_proc)`). A spawned child re-runs the launching
script (`axolotl train`: the whole stack) before it writes a byte, and its pool's Manager
is one more such process: 9 s per save on two cores, 30 s while three trainings share
them, for a single shard nothing could parallelize. With one process asked for, the
shard is written here, by the same `_save_to_disk_single`, into the same files.
"""

from __future__ import annotations

import functools


def install_in_process_single_save() -> None:
    """Make `Dataset.save_to_disk(..., num_proc=1)` write in this process (idempotent)."""
    from datasets import Dataset

    original = Dataset.save_to_disk
    if getattr(original, "_soda_in_process", False):
        return

    @functools.wraps(original)
    def save_to_disk(self, *args, **kwargs):
        if kwargs.get("num_proc") == 1:
            kwargs["num_proc"] = None  # datasets' own in-process branch (arrow_dataset.py:1920)
        return original(self, *args, **kwargs)

    save_to_disk._soda_in_process = True  # type: ignore[attr-defined]
    Dataset.save_to_disk = save_to_disk
