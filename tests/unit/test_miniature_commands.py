"""The miniature's concurrent stage runner: processes really overlap, share the cores, and a
failure names its log without leaving the others running."""

import sys
import time

import pytest

from soda_plugin.miniature.pipeline import StageError, run_commands_concurrently


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_commands_run_at_the_same_time_with_a_thread_cap(tmp_path):
    # Each waits for the other's file: run one after the other, neither would finish.
    wait_for = ("import os, pathlib, time\n"
                "pathlib.Path(r'{mine}').touch()\n"
                "deadline = time.time() + 20\n"
                "while not pathlib.Path(r'{theirs}').exists():\n"
                "    assert time.time() < deadline, 'the other process never ran'\n"
                "    time.sleep(0.05)\n"
                "print('threads', os.environ['OMP_NUM_THREADS'])\n")
    a, b = tmp_path / "a", tmp_path / "b"
    run_commands_concurrently([(_python(wait_for.format(mine=a, theirs=b)), tmp_path / "a.log"),
                               (_python(wait_for.format(mine=b, theirs=a)), tmp_path / "b.log")], threads_each=1)
    for log in ("a.log", "b.log"):
        assert "threads 1" in (tmp_path / log).read_text()


def test_a_failure_names_its_log_and_stops_the_rest(tmp_path):
    marker = tmp_path / "still-running"
    slow = _python(f"import pathlib, time\ntime.sleep(30)\npathlib.Path(r'{marker}').touch()")
    start = time.perf_counter()
    with pytest.raises(StageError, match="fails.log") as failure:
        run_commands_concurrently([(_python("import sys\nprint('broken input')\nsys.exit(3)"), tmp_path / "fails.log"),
                                   (slow, tmp_path / "slow.log")])
    assert "exited with code 3" in str(failure.value) and "broken input" in str(failure.value)
    assert time.perf_counter() - start < 20 and not marker.exists()
