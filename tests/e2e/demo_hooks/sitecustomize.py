"""Holds one stage of a `soda demo` run still at a chosen point, for a kill test
(tests/e2e/test_demo_resume.py). Loaded by every Python process of the run when this folder
is on PYTHONPATH; it acts only in the stage process that `SODA_DEMO_HOLD` names:

    SODA_DEMO_HOLD=snapshot   after `soda snapshot` has written its first shard
    SODA_DEMO_HOLD=pairs      after `soda pairs` has every judge verdict back (and cached),
                              before any pair is written

There it writes `<stage> <what>` and a newline to the FIFO `SODA_DEMO_HOLD_FIFO` and blocks
until killed: the test reads the line and SIGKILLs the whole run, which lands at that point
by construction rather than by timing. The demo starts its stages as
`python -m soda_plugin.cli <stage>`; `sys.orig_argv` keeps the module and stage names.
"""

import os
import sys
import threading


def _hold(message: str) -> None:
    fd = os.open(os.environ["SODA_DEMO_HOLD_FIFO"], os.O_WRONLY)
    os.write(fd, f"{message}\n".encode())
    os.close(fd)
    threading.Event().wait()  # until SIGKILL


def _hold_after_first_shard() -> None:
    from soda_plugin.snapshot import store

    original = store.write_shard

    def write_shard(*args, **kwargs):
        path = original(*args, **kwargs)
        _hold(f"snapshot {path}")
        return path

    store.write_shard = write_shard


def _hold_after_verdicts() -> None:
    from soda_plugin.verdict.calls import JudgeCalls

    original = JudgeCalls.fetch_verdicts

    async def fetch_verdicts(self, requests):
        verdicts = await original(self, requests)  # each verdict is flushed to the cache as it arrives
        _hold(f"pairs {len(verdicts)}")
        return verdicts

    JudgeCalls.fetch_verdicts = fetch_verdicts


def _stage() -> str | None:
    argv = list(getattr(sys, "orig_argv", []))
    if "-m" in argv and argv[argv.index("-m") + 1:argv.index("-m") + 2] == ["soda_plugin.cli"]:
        rest = argv[argv.index("-m") + 2:]
        return rest[0] if rest else None
    return None


_HOLDS = {"snapshot": _hold_after_first_shard, "pairs": _hold_after_verdicts}
if os.environ.get("SODA_DEMO_HOLD") in _HOLDS and _stage() == os.environ["SODA_DEMO_HOLD"]:
    _HOLDS[os.environ["SODA_DEMO_HOLD"]]()
