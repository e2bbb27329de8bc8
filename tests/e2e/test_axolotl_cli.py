"""The `soda` type and the warmup → DPO chain through the real `axolotl train` CLI."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from axolotl_run import BIN, axolotl_train, base_config, dpo_chain_config, write_config
from soda_data import valid_rows, write_jsonl

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_jsonl(valid_rows(24), tmp_path_factory.mktemp("data") / "pairs.jsonl")


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(directory) / "model.safetensors"))


def _assert_ok(run, what):
    assert run.returncode == 0, f"{what} failed:\n{run.output[-4000:]}"


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_sft_with_soda_type(family, tiny_model_dirs, pairs, tmp_path):
    out = tmp_path / "out"
    run = axolotl_train(write_config(base_config(tiny_model_dirs[family], pairs, out), tmp_path / "sft.yml"))
    _assert_ok(run, "SFT")
    logs = run.step_logs()
    assert len(logs) == 3 and all(math.isfinite(log["loss"]) for log in logs)
    assert (out / "model.safetensors").is_file()
    assert not torch.equal(_weights(out)["model.norm.weight"], _weights(tiny_model_dirs[family])["model.norm.weight"])


@pytest.mark.parametrize("trim", [True, False])
def test_dpo_alone_with_soda_type_and_no_resident_reference(trim, tiny_model_dirs, pairs, tmp_path):
    cfg = base_config(tiny_model_dirs["qwen2"], pairs, tmp_path / "out", rl="dpo", trl={"beta": 0.1},
                      precompute_ref_log_probs=True, learning_rate=1.0e-3,
                      soda={"precompute_only_trained_rows": trim})
    run = axolotl_train(write_config(cfg, tmp_path / "dpo.yml"))
    _assert_ok(run, "DPO")
    logs = run.step_logs()
    assert logs[0]["rewards/margins"] == 0.0, "policy and reference must both be the start model at step 0"
    assert logs[-1]["rewards/margins"] != 0.0, "DPO must move the policy away from the reference"
    assert "no second model is loaded" in run.output
    # 3 steps x 2 rows use 6 of the 24 pairs: reference log-probs for 3 batches, or all 12 without the trim.
    assert ("trains on 6 of the 24 pairs" in run.output) is trim
    assert f"Computing reference log probs for train dataset: 100%|██████████| {3 if trim else 12}/" in run.output


@pytest.fixture(scope="module")
def chained(tiny_model_dirs, pairs, tmp_path_factory):
    """One chained run (warmup then DPO) shared by the tests that inspect or re-run it."""
    root = tmp_path_factory.mktemp("chain")
    cfg = dpo_chain_config(tiny_model_dirs["llama"], pairs, root / "out")
    config = write_config(cfg, root / "chain.yml")
    run = axolotl_train(config)
    _assert_ok(run, "chained warmup → DPO")
    return {"root": root, "cfg": cfg, "config": config, "run": run, "warmup": root / "out" / "warmup"}


def test_chain_writes_warmup_marker_and_starts_dpo_from_it(chained):
    warmup, run = chained["warmup"], chained["run"]
    marker = json.loads((warmup / "soda_stage.json").read_text())
    assert marker["stage"] == "warmup" and len(marker["config_hash"]) == 16
    assert marker["config"]["learning_rate"] == 1.0e-3 and "rl" not in marker["config"]
    assert (warmup / "model.safetensors").is_file()
    logs = run.step_logs()
    sft_logs = [log for log in logs if "rewards/margins" not in log]
    dpo_logs = [log for log in logs if "rewards/margins" in log]
    assert len(sft_logs) == 3 and len(dpo_logs) == 3
    # q_w is both the policy's start and the reference: margins are exactly 0 at step 0.
    assert dpo_logs[0]["rewards/margins"] == 0.0
    assert f"DPO starts from the warmup model {warmup}" in run.output
    assert (chained["root"] / "out" / "model.safetensors").is_file()


def test_second_run_skips_the_finished_warmup(chained):
    before = (chained["warmup"] / "model.safetensors").stat().st_mtime_ns
    run = axolotl_train(chained["config"])
    _assert_ok(run, "re-run")
    assert f"warmup in {chained['warmup']} is finished" in run.output
    assert len([log for log in run.step_logs() if "rewards/margins" not in log]) == 0
    assert (chained["warmup"] / "model.safetensors").stat().st_mtime_ns == before


def test_changed_warmup_config_is_detected(chained):
    cfg = dict(chained["cfg"], soda={"warmup": {"learning_rate": 2.0e-3, "max_steps": 3}})
    run = axolotl_train(write_config(cfg, chained["root"] / "changed.yml"))
    assert run.returncode != 0
    assert "was made by a different warmup config" in run.output
    assert "learning_rate: 0.001 -> 0.002" in run.output


def test_dpo_stage_alone_starts_from_the_given_warmup(chained, tiny_model_dirs, tmp_path):
    # Learning rate 0: the DPO output must be exactly the warmup weights, not the base's.
    cfg = dict(chained["cfg"], learning_rate=0.0, output_dir=str(tmp_path / "dpo_only"),
               soda={"stage": "dpo", "warmup": {"learning_rate": 1.0e-3, "max_steps": 3,
                                                "output_dir": str(chained["warmup"])}})
    run = axolotl_train(write_config(cfg, tmp_path / "dpo_only.yml"))
    _assert_ok(run, "DPO-only stage")
    dpo, warm, base = _weights(tmp_path / "dpo_only"), _weights(chained["warmup"]), _weights(tiny_model_dirs["llama"])
    assert all(torch.equal(dpo[name], warm[name]) for name in warm)
    assert not all(torch.equal(warm[name], base[name]) for name in base)


def test_warmup_stage_alone_stops_before_dpo(tiny_model_dirs, pairs, tmp_path):
    cfg = dpo_chain_config(tiny_model_dirs["qwen2"], pairs, tmp_path / "out")
    cfg["soda"]["stage"] = "warmup"
    run = axolotl_train(write_config(cfg, tmp_path / "warmup_only.yml"))
    _assert_ok(run, "warmup-only stage")
    assert (tmp_path / "out" / "warmup" / "soda_stage.json").is_file()
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert not any("rewards/margins" in log for log in run.step_logs())


def test_bad_soda_key_fails_at_config_time_naming_it(tiny_model_dirs, pairs, tmp_path):
    cfg = dpo_chain_config(tiny_model_dirs["qwen2"], pairs, tmp_path / "out")
    cfg["soda"]["warmup"]["lerning_rate"] = cfg["soda"]["warmup"].pop("learning_rate")
    run = axolotl_train(write_config(cfg, tmp_path / "bad.yml"))
    assert run.returncode != 0
    assert "unknown key `soda.warmup.lerning_rate`: did you mean `soda.warmup.learning_rate`?" in run.output
    assert not (tmp_path / "out" / "warmup").exists()


def test_two_process_cpu_launch_chains_with_one_writer(tiny_model_dirs, pairs, tmp_path):
    cfg = dpo_chain_config(tiny_model_dirs["qwen2"], pairs, tmp_path / "out")
    launcher = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "axolotl.cli.train"]
    run = axolotl_train(write_config(cfg, tmp_path / "chain2.yml"), launcher=launcher)
    _assert_ok(run, "two-process chain")
    assert "MULTI_CPU over 2 processes" in run.output
    assert sorted(p.name for p in (tmp_path / "out" / "warmup").glob("soda_stage*")) == ["soda_stage.json"]
    dpo_logs = [log for log in run.step_logs() if "rewards/margins" in log]
    # Not bit-exact here: the precompute pass and the training step pad different batches.
    assert dpo_logs and abs(dpo_logs[0]["rewards/margins"]) < 1e-5
    # Data parallel: 3 steps x 2 ranks x 2 rows = 12 of the 24 rows, kept by the precompute trim;
    # they make exactly one epoch (a trim that forgot the second rank would keep 6: two epochs).
    assert "trains on 12 of the 24 pairs" in run.output
    assert dpo_logs[-1]["epoch"] == 1.0
    assert (tmp_path / "out" / "model.safetensors").is_file()
