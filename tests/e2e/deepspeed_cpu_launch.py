"""`axolotl train` in one CPU process with DeepSpeed: start a one-process gloo group first.

Test-only launcher. Axolotl 0.19's `setup_deepspeed_env` (utils/trainer.py) calls
`deepspeed.comm.init_distributed(dist_backend="nccl")` for a one-process launch, and CPU
torch has no nccl. DeepSpeed reuses a process group that already exists, so a gloo group
started here lets the same code path run. A multi-process CPU launch is no way around it:
Accelerate never selects DeepSpeed when it runs on CPU (`accelerate/state.py`, `not cpu`),
so the run silently trains without ZeRO.

    python tests/e2e/deepspeed_cpu_launch.py recipe.yml

It always trains in this process (`--launcher python`): another launcher would start a
child process without the group.
"""

import os
import sys
from pathlib import Path

if __name__ == "__main__":  # the DPO data pipeline spawns workers that re-import this file
    import torch.distributed as dist

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ports import reserved_port

    os.environ.update(MASTER_ADDR="127.0.0.1", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    if "MASTER_PORT" in os.environ:
        dist.init_process_group("gloo", rank=0, world_size=1)
    else:  # run by hand: a port no other process is given; the group's store holds it after init
        with reserved_port() as port:
            os.environ["MASTER_PORT"] = str(port)
            dist.init_process_group("gloo", rank=0, world_size=1)
    from axolotl.cli.main import main

    sys.argv = ["axolotl", "train", *sys.argv[1:], "--launcher", "python"]
    main()
