"""What soda relies on in the installed Axolotl and TRL, checked on their own objects.

The reference-model skip wraps `axolotl.train.setup_reference_model`, which
`setup_model_and_trainer` must look up as a module global; TRL must then take its
precompute path with no reference model (trl `DPOTrainer.__init__`: `if ref_model is None:
if is_peft_model(self.model) or args.precompute_ref_log_probs: self.ref_model = None`, and
`_precompute_ref_logps` with `self.ref_model or self.model`). Run on every leg of CI, so
a host release that moves either fails here, not on a GPU node.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from axolotl_run import base_config, write_config
from soda_data import valid_rows, write_jsonl

pytestmark = pytest.mark.e2e

PROBE = Path(__file__).with_name("host_probe.py")


def _probe(tmp_path: Path, model_dir: Path, **soda) -> dict:
    data = write_jsonl(valid_rows(8), tmp_path / "pairs.jsonl")
    cfg = base_config(model_dir, data, tmp_path / "out", rl="dpo", trl={"beta": 0.1},
                      precompute_ref_log_probs=True, soda=dict(soda))
    config = write_config(cfg, tmp_path / "dpo.yml")
    result = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, str(PROBE), str(config), str(result)], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return json.loads(result.read_text())


def test_soda_hands_trl_no_reference_model_and_trl_precomputes_with_the_policy(tiny_model_dirs, tmp_path):
    soda = _probe(tmp_path / "soda", tiny_model_dirs["qwen2"])
    assert soda["trainer"].endswith("DPOTrainer")
    assert soda["ref_model_resident"] is False
    assert soda["rows"] == 8 and {"ref_chosen_logps", "ref_rejected_logps"} <= set(soda["columns"])
    assert all(math.isfinite(v) and v < 0 for v in soda["ref_chosen_logps"])

    kept = _probe(tmp_path / "kept", tiny_model_dirs["qwen2"], free_reference_model=False)
    assert kept["ref_model_resident"] is True, "without soda's skip, Axolotl loads a second model"
    # Same start model, same rows: the policy-computed reference equals the resident one.
    assert kept["ref_chosen_logps"] == pytest.approx(soda["ref_chosen_logps"], rel=1e-4)
