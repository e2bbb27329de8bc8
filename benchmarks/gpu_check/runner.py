"""Running each phase in its own process, under a timeout, and keeping what it recorded.

Every phase runs in a fresh process (its own CUDA allocator and peak) or, with `--cpu`, a fork of
the parent after the heavy imports; its process group is SIGKILLed at its timeout. A phase writes
its values through `Recorder` as it goes, so a killed phase keeps what it measured.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

class Recorder:
    """Phase results, rewritten to disk after every value so a killed phase keeps what it had."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, Any] = {}
        self.status = "running"
        self.error: str | None = None

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.flush()
        print(f"[gpu_check] {key} = {value}", flush=True)

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            self[key] = value

    def flush(self) -> None:
        record = {"status": self.status, "error": self.error, "values": self.values}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str))
        tmp.replace(self.path)


def run_subprocess(cmd: list[str], log: Path, timeout: float, env: dict[str, str]) -> tuple[int | str, float, float]:
    """Run `cmd` in its own process group; return (exit code or 'timeout', wall s, peak RSS MB)."""
    start = time.monotonic()
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # the group this call started
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    return ("timeout" if timed_out else proc.returncode), wall, usage.ru_maxrss / 1024


def preimport() -> None:
    """Import the heavy modules once in the parent (CPU mode) so that forked phases start at once.

    Never touches CUDA: a CUDA context made before fork() is unusable in the child, which is
    why GPU runs start every phase as a fresh process instead."""
    import importlib

    for name in ("torch", "transformers", "datasets", "peft", "trl", "trl.trainer.dpo_trainer",
                 "soda_plugin.train.views", "soda_plugin.train.stages", "soda_plugin.train.merge",
                 "soda_plugin.snapshot.transformers_engine"):
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - the phase that needs it records the failure
            print(f"[gpu_check] preimport {name}: {type(error).__name__}: {error}", flush=True)


def run_forked(name: str, settings_path: Path, log: Path, timeout: float, env: dict[str, str]) -> tuple[int | str, float, float]:
    """Run phase `name` in a fork of this process; same contract as `run_subprocess`."""
    start = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    import warnings

    # Python 3.12 warns on fork() with threads (torch/pyarrow pools made at import). The child
    # only runs one phase and exits; a deadlock there would be ended by the phase timeout.
    warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks.*")
    pid = os.fork()
    if pid == 0:  # the phase process
        code = 1
        try:
            os.setsid()  # its own process group, so a timeout ends what it started too
            fd = os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.environ.clear()
            os.environ.update(env)
            code = run_phase_child(name, str(settings_path))
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)  # the group of the fork made above
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.2)
    code = os.waitstatus_to_exitcode(status)
    return ("timeout" if timed_out else code), time.monotonic() - start, usage.ru_maxrss / 1024


def last_error_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        if re.search(r"(Error|Exception|error:|Killed|Traceback)", line):
            return line.strip()[:300]
    return (lines[-1].strip()[:300] if lines else "(empty log)")


def run_phase_child(name: str, settings_path: str) -> int:
    settings = json.loads(Path(settings_path).read_text())
    rec = Recorder(Path(settings["workdir"]) / f"phase_{name}.json")
    rec.flush()
    try:
        import torch

        torch.manual_seed(settings["seed"])
        if settings["device"] != "cuda":
            torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))
        phase_functions()[name](settings, rec)
        if rec.status == "running":
            rec.status = "ok"
    except BaseException as error:  # noqa: BLE001 - recorded for the table
        traceback.print_exc()
        rec.status = "failed"
        rec.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"[:400]
    rec.flush()
    return 0 if rec.status in ("ok", "skipped") else 1



def phase_functions() -> dict[str, Callable[[dict[str, Any], Recorder], None]]:
    from . import phases

    return phases.PHASE_FUNCTIONS
