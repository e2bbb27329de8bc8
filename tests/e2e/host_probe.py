"""Build Axolotl's DPO trainer for a config, the way `axolotl train` does, and record what it holds.

    python tests/e2e/host_probe.py dpo.yml result.json

Test-only. Reads the installed Axolotl's own objects (the trainer TRL built, its train
set), not soda's logs: whether a reference model is resident and whether TRL's precompute
path wrote the reference log-probs into the train set.
"""

import json
import sys

if __name__ == "__main__":  # the dataset map spawns workers that re-import this file
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_preference_datasets
    from axolotl.train import setup_model_and_trainer

    cfg = load_cfg(sys.argv[1])
    meta = load_preference_datasets(cfg=cfg, cli_args=TrainerCliArgs())
    trainer = setup_model_and_trainer(cfg, meta)[0]
    train = trainer.train_dataset
    result = {
        "trainer": type(trainer).__name__,
        "ref_model_resident": trainer.ref_model is not None,
        "columns": list(train.column_names),
        "rows": len(train),
        "ref_chosen_logps": [float(v) for v in train["ref_chosen_logps"]] if "ref_chosen_logps" in train.column_names else None,
    }
    with open(sys.argv[2], "w") as handle:
        json.dump(result, handle)
