"""GAD through the real `axolotl train` CLI on a tiny model: both models learn and are saved,
verl's discriminator-only steps leave the policy as it was, and a killed GAD stage resumes
from its checkpoint (policy and discriminator) and finishes."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from axolotl_run import axolotl_train, write_config
from soda_data import valid_rows, write_jsonl

pytestmark = pytest.mark.e2e


def gad_config(model_dir, data, output_dir, **extra) -> dict:
    cfg = {
        "base_model": str(model_dir), "plugins": ["soda_plugin.GADPlugin"],
        "trainer_cls": "soda_plugin.gad.trainer.GADTrainer",
        "datasets": [{"path": str(data), "ds_type": "json", "type": "soda"}],
        "sequence_len": 256, "rl": "grpo",
        "trl": {"num_generations": 4, "temperature": 0.8, "max_completion_length": 12, "beta": 0.001,
                "use_vllm": False},
        "micro_batch_size": 4, "gradient_accumulation_steps": 2, "max_steps": 2, "learning_rate": 1.0e-3,
        "optimizer": "adamw_torch", "lr_scheduler": "constant", "weight_decay": 0.01, "max_grad_norm": 0.2,
        "output_dir": str(output_dir), "bf16": False, "fp16": False, "tf32": False, "dataset_num_proc": 1,
        "val_set_size": 0, "logging_steps": 1, "save_strategy": "no", "seed": 7,
        "gad": {"discriminator": {"learning_rate": 1.0e-3},
                "warmup": {"max_steps": 2, "learning_rate": 1.0e-3, "critic_warmup": 3}},
    }
    cfg.update(extra)
    return cfg


def weights(folder) -> dict:
    return load_file(str(folder / "model.safetensors"))


def differs(a: dict, b: dict) -> bool:
    shared = set(a) & set(b)
    assert shared
    return any(not a[k].equal(b[k]) for k in shared)


def backbone(discriminator: dict) -> dict:
    """D's backbone tensors under the causal LM's names (`model.` prefix), without its head."""
    return {k: v for k, v in discriminator.items() if k.startswith("model.")}


def test_gad_chain_trains_both_models_and_freezes_the_policy_while_only_d_trains(tiny_model_dirs, tmp_path):
    model = tiny_model_dirs["qwen2"]
    data = write_jsonl(valid_rows(24), tmp_path / "teacher.jsonl")
    out = tmp_path / "gad"
    run = axolotl_train(write_config(gad_config(model, data, out), tmp_path / "gad.yml"))
    assert run.returncode == 0, run.output[-4000:]

    base, warm, final = weights(model), weights(out / "warmup"), weights(out)
    d_warm, d_final = weights(out / "warmup" / "discriminator"), weights(out / "discriminator")
    # critic_warmup 3 > the warmup's 2 steps: every warmup step trained D only (verl's critic warmup)
    assert not differs(base, warm), "the policy changed during discriminator-only steps"
    assert differs(backbone(base), backbone(d_warm)), "D's backbone did not train in the warmup"
    assert "score.weight" in d_warm and "lm_head.weight" not in d_warm  # a scalar head, not the LM head
    assert d_warm["score.weight"].shape[0] == 1
    # The GAD stage: both models move, from the warmup's
    assert differs(warm, final), "the policy did not train in the GAD stage"
    assert differs(d_warm, d_final), "D did not train in the GAD stage"
    for stage_dir, stage in ((out / "warmup", "gad-warmup"), (out, "gad")):
        cost = json.loads((stage_dir / "cost.json").read_text())
        assert cost["stage"] == stage and cost["finished"] and cost["optimizer_steps"] == 2


def test_a_killed_gad_stage_resumes_both_models_from_its_checkpoint(tiny_model_dirs, tmp_path):
    model = tiny_model_dirs["qwen2"]
    data = write_jsonl(valid_rows(24), tmp_path / "teacher.jsonl")
    out = tmp_path / "gad"
    cfg = gad_config(model, data, out, max_steps=3, save_strategy="steps", save_steps=1,
                     plugins=["soda_plugin.GADPlugin", "fault_plugin.FaultPlugin"])
    cfg["gad"]["warmup"]["critic_warmup"] = 1
    config = write_config(cfg, tmp_path / "gad.yml")
    killed = axolotl_train(config, env={"SODA_TEST_KILL_AT": "gad_step=2"})
    assert killed.returncode != 0
    checkpoint = out / "checkpoint-1"
    assert (checkpoint / "discriminator" / "model.safetensors").is_file()
    assert (checkpoint / "discriminator" / "optimizer.pt").is_file()
    assert not (out / "model.safetensors").exists() and not (out / "discriminator").exists()
    warmup_mtime = (out / "warmup" / "model.safetensors").stat().st_mtime_ns

    cfg["resume_from_checkpoint"] = str(checkpoint)  # the fault plugin stays: no kill point is set now
    resumed = axolotl_train(write_config(cfg, config))
    assert resumed.returncode == 0, resumed.output[-4000:]
    assert (out / "warmup" / "model.safetensors").stat().st_mtime_ns == warmup_mtime, "the warmup trained again"
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert differs(weights(checkpoint / "discriminator"), weights(out / "discriminator"))
    cost = json.loads((out / "cost.json").read_text())
    assert cost["finished"] and cost["optimizer_steps"] == 2 and cost.get("resumed_from_step") == 1

    # The same run uninterrupted: the resumed one restored both models (and D's AdamW) at step 1.
    straight = tmp_path / "straight"
    cfg.update(output_dir=str(straight), resume_from_checkpoint=None)
    cfg["gad"]["warmup"]["output_dir"] = str(out / "warmup")  # the same finished warmup
    assert axolotl_train(write_config(cfg, tmp_path / "straight.yml")).returncode == 0
    for name in ("model.safetensors", "discriminator/model.safetensors"):
        a, b = load_file(str(out / name)), load_file(str(straight / name))
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert worst < 1e-5, (name, worst)


# The 7B GAD recipe, reduced, through DeepSpeed ZeRO-3 (its setting) in one CPU process:
# key -> (value, reason). `gad.warmup.*` keys go into the warmup block.
SIZE_AND_STEPS = {
    "max_steps": (2, "2 steps per stage keep the test short on 2 cores"),
    "gad.warmup.max_steps": (2, "as above, for the warmup"),
    "gad.warmup.critic_warmup": (2, "one discriminator-only step, then one SFT step"),
    "micro_batch_size": (4, "the 24-row fixture; 1 prompt x 4 rollouts per forward"),
    "gradient_accumulation_steps": (2, "2 prompts per step in one process, not 256 on 8 GPUs"),
    "gad.discriminator.micro_batch_size": (4, "as the policy's"),
    "trl.num_generations": (4, "4 rollouts per prompt keep it short (GAD: 8)"),
    "trl.max_completion_length": (12, "tiny random model: short rollouts"),
    "trl.use_vllm": (False, "no vLLM on CPU: rollouts through transformers' generate"),
    "learning_rate": (1.0e-3, "a tiny model must move in 2 steps"),
    "gad.discriminator.learning_rate": (1.0e-3, "as above"),
    "gad.warmup.learning_rate": (1.0e-3, "as above"),
    "sequence_len": (256, "fixture rows are < 100 tokens"),
    "save_steps": (1, "a checkpoint at every step: D's DeepSpeed state is saved beside the policy's"),
    "logging_steps": (1, "every step"),
    "dataset_processes": (1, "two cores: no worker pool"),
}


def test_the_7b_gad_recipe_trains_both_models_under_deepspeed_zero3(tiny_model_dirs, tmp_path, monkeypatch,
                                                                    held_port):
    import sys
    from pathlib import Path

    from recipe_overrides import RECIPES_DIR, cpu_recipe, write_fixtures

    recipe = RECIPES_DIR / "qwen7b_gad.yml"
    cfg = cpu_recipe(recipe, tiny_model_dirs, write_fixtures(tmp_path / "data"), tmp_path, train=True)
    assert cfg["deepspeed"] == "deepspeed/zero3.json"
    cfg.pop("vllm")
    for key, (value, _reason) in SIZE_AND_STEPS.items():
        target, name = cfg, key
        for part in key.split(".")[:-1]:
            target = target[part]
        target[key.split(".")[-1]] = value
    config = write_config(cfg, tmp_path / recipe.name)
    monkeypatch.setenv("MASTER_PORT", str(held_port))
    launcher = [sys.executable, str(Path(__file__).with_name("deepspeed_cpu_launch.py"))]
    run = axolotl_train(config, launcher=launcher, timeout=900)
    assert run.returncode == 0, run.output[-4000:]
    out = tmp_path / "out"
    for stage in (out / "warmup", out):
        # D's DeepSpeed state (sharded optimizer) in each checkpoint, its gathered weights beside the student
        assert (stage / "checkpoint-2" / "discriminator" / "deepspeed" / "latest").is_file(), stage
        assert (stage / "checkpoint-2" / "latest").is_file(), stage  # the policy's own DeepSpeed checkpoint
    base = weights(tiny_model_dirs["qwen2"])
    d_warm, d_final = weights(out / "warmup" / "discriminator"), weights(out / "discriminator")
    assert all(d_warm[k].shape == base[k].shape for k in backbone(base))  # gathered, not ZeRO-3 shards
    assert differs(backbone(base), backbone(d_warm)) and differs(d_warm, d_final)
    assert differs(weights(out / "warmup"), weights(out))
