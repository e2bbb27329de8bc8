"""A failure of the rank-0-only work (merge, marker write) reaches every rank at once,
with its cause, in two real gloo processes: not a wait for the 30-minute barrier timeout."""

import os
import subprocess
import sys
import time

RANK_SCRIPT = """
import sys, torch.distributed as dist
from datetime import timedelta
dist.init_process_group("gloo", timeout=timedelta(minutes=30))
from soda_plugin.train.distributed import on_main_then_barrier
from soda_plugin.train.stages import write_marker
on_main_then_barrier(lambda: write_marker(sys.argv[1], "warmup", {"learning_rate": 1e-5}))
print("returned normally")
"""



def test_a_marker_write_failing_on_rank_zero_stops_every_rank_with_the_cause(tmp_path, held_port):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the warmup folder should be")
    stage_dir = blocker / "warmup"  # rank 0's write fails: its parent is a file
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(held_port), WORLD_SIZE="2")
    start = time.monotonic()
    ranks = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(stage_dir)], env=dict(env, RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    outputs = [rank.communicate(timeout=120)[0] for rank in ranks]
    seconds = time.monotonic() - start
    print(f"both ranks exited {seconds:.1f} s after start")
    for rank, output in zip(ranks, outputs):
        assert rank.returncode != 0 and "returned normally" not in output
        assert "NotADirectoryError" in output and str(blocker) in output, output[-2000:]
    assert seconds < 60
