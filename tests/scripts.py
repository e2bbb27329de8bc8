"""Run a repository shell script as a user would, bounded: a script that hangs is killed with
everything it started (its own session) and the test fails with the output's tail."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: Path, *args: str, timeout_s: float, tail: int = 6000) -> tuple[int, str]:
    """`bash script args...` from the repository root; its exit code and merged output."""
    proc = subprocess.Popen(["bash", str(script), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script's background pip runs too
        output, _ = proc.communicate()
        pytest.fail(f"{script.relative_to(ROOT)} {' '.join(args)} ran past {timeout_s} s:\n{output[-tail:]}")
    return proc.returncode, output
