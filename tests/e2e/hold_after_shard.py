"""Run a snapshot tool and hold it still once its Nth shard is on disk, for a kill test.

    python hold_after_shard.py N FD TOOL [TOOL ARGS...]

Runs TOOL (e.g. `tools/snapshot_q0.py`) as `__main__` in this process, with
`soda_plugin.snapshot.store.write_shard` wrapped: when the Nth shard has been written, the
wrapper writes that shard's path and a newline to the inherited file descriptor FD and
blocks forever. The test reads FD, then SIGKILLs the process: the kill lands between two
shards, mid-run, by construction rather than by timing.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading


def main() -> None:
    count, fd, tool, *argv = sys.argv[1:]
    from soda_plugin.snapshot import store

    original = store.write_shard
    written = 0

    def write_shard(*args, **kwargs):
        nonlocal written
        path = original(*args, **kwargs)
        written += 1
        if written == int(count):
            os.write(int(fd), f"{path}\n".encode())
            threading.Event().wait()  # until SIGKILL
        return path

    store.write_shard = write_shard
    sys.argv = [tool, *argv]
    runpy.run_path(tool, run_name="__main__")


if __name__ == "__main__":
    main()
