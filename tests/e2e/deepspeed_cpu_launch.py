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

if __name__ == "__main__":  # the DPO data pipeline spawns workers that re-import this file
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("gloo", rank=0, world_size=1)
    from axolotl.cli.main import main

    sys.argv = ["axolotl", "train", *sys.argv[1:], "--launcher", "python"]
    main()
