"""Pairs from the builder train through the real `axolotl train` CLI with `type: soda`."""

import math

import pytest

from axolotl_run import axolotl_train, base_config, write_config
from soda_data import valid_rows, write_jsonl
from soda_plugin.pairs import build_pairs
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.snapshot import store

pytestmark = pytest.mark.e2e


def test_builder_output_trains_with_dpo(tiny_model_dirs, tmp_path):
    rows = valid_rows(16)
    teacher = write_jsonl([{k: r[k] for k in ("content", "teacher_response")} for r in rows], tmp_path / "t.jsonl")
    snapshot = tmp_path / "snapshot"
    store.write_shard(snapshot, 0, [
        {"prompt_id": prompt_id(r["content"]), "sample_index": 0, "prompt": r["content"],
         "response": r["student_response"], "finish_reason": "stop", "prompt_tokens": 0,
         "response_tokens": 0, "source": "q0:tiny-qwen2"} for r in rows
    ])
    store.write_manifest(snapshot, {"model": "tiny-qwen2", "backend": "transformers", "sampling": {"seed": 0}})
    pairs = tmp_path / "pairs"
    report = build_pairs([teacher], [snapshot], pairs)
    assert report.kept == 16

    cfg = base_config(tiny_model_dirs["qwen2"], pairs / "data", tmp_path / "out", rl="dpo", trl={"beta": 0.1},
                      precompute_ref_log_probs=True, learning_rate=1.0e-3, max_steps=2)
    cfg["datasets"] = [{"path": str(pairs / "data"), "ds_type": "parquet", "type": "soda"}]
    run = axolotl_train(write_config(cfg, tmp_path / "dpo.yml"))
    assert run.returncode == 0, f"DPO on builder output failed:\n{run.output[-4000:]}"
    logs = run.step_logs()
    assert len(logs) == 2 and all(math.isfinite(log["loss"]) for log in logs)
    assert (tmp_path / "out" / "model.safetensors").is_file()
