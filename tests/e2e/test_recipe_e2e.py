"""One GPU recipe, reduced in size and steps, trained end to end on CPU with its DeepSpeed
ZeRO-2 setting through the real `axolotl train` CLI: warmup (LoRA) → merge → DPO (LoRA)
→ merge into the student `<output_dir>/merged`, which the judge and share.py then take.

`recipes/llama8b_lora_soda.yml` is the one chosen: it runs every soda path the GPU
recipes use (chain, DeepSpeed in both stages, precomputed reference, and the LoRA merge).
Every change to the recipe is listed below or in `tests/recipe_overrides.py` with its reason.
"""

import json
import math
import signal
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from axolotl_run import axolotl_train, write_config
from model_checks import attention_runnable, attention_states, kills
from recipe_overrides import RECIPES_DIR, cpu_recipe, write_fixtures

pytestmark = pytest.mark.e2e

RECIPE = RECIPES_DIR / "llama8b_lora_soda.yml"
LAUNCHER = Path(__file__).with_name("deepspeed_cpu_launch.py")

# key -> (value, reason); `soda.warmup.*` keys go into the warmup block.
SIZE_AND_STEPS = {
    "max_steps": (3, "3 steps per stage keep the test under ~90 s on 2 cores"),
    "soda.warmup.max_steps": (3, "as above, for the warmup"),
    "micro_batch_size": (2, "the 24-row fixture; 2 pairs per step"),
    "gradient_accumulation_steps": (1, "one process here, not 8 GPUs; no accumulation needed"),
    "soda.warmup.micro_batch_size": (2, "as above, for the warmup"),
    "soda.warmup.gradient_accumulation_steps": (1, "as above, for the warmup"),
    "sequence_len": (256, "fixture rows are < 100 tokens"),
    "lora_r": (4, "the tiny model's hidden size is 32"),
    "lora_alpha": (8, "alpha = 2 r, as in the recipe"),
    "save_steps": (3, "a checkpoint at the last step shows DeepSpeed's own files (`latest`, `zero_to_fp32.py`)"),
    "soda.warmup.save_strategy": ("steps", "the recipe's warmup writes no checkpoint (`\"no\"`); here one shows "
                                           "DeepSpeed's files in the warmup too"),
    "logging_steps": (1, "every step's loss and DPO margin are checked"),
    "dataset_processes": (1, "two cores: no worker pool"),
}


def _reduced(cfg):
    for key, (value, _reason) in SIZE_AND_STEPS.items():
        if key.startswith("soda.warmup."):
            cfg["soda"]["warmup"][key.rsplit(".", 1)[1]] = value
        else:
            cfg[key] = value
    return cfg


def test_llama8b_lora_recipe_trains_with_deepspeed_on_cpu(tiny_model_dirs, tmp_path, monkeypatch, held_port):
    cfg = _reduced(cpu_recipe(RECIPE, tiny_model_dirs, write_fixtures(tmp_path / "data"), tmp_path, train=True))
    assert cfg["deepspeed"] == "deepspeed/zero2.json" and cfg["adapter"] == "lora"
    # The recipe is copied outside the repo with only its YAML: soda finds the shared JSON.
    cfg["plugins"] = cfg["plugins"] + ["fault_plugin.FaultPlugin"]
    config = write_config(cfg, tmp_path / RECIPE.name)
    monkeypatch.setenv("MASTER_PORT", str(held_port))
    out = tmp_path / "out"
    warmup, merged = out / "warmup", out / "warmup" / "merged"
    # Killed during the merge: q_w's weights are saved in `merged/`, its tokenizer not yet.
    events = tmp_path / "events.txt"
    run = axolotl_train(config, launcher=[sys.executable, str(LAUNCHER)], timeout=600,
                        env={"SODA_TEST_EVENTS": str(events), "SODA_TEST_KILL_AT": "during_merge"})
    assert run.returncode == -signal.SIGKILL and kills(events) == ["during_merge"], run.output[-3000:]
    assert (merged / "model.safetensors").is_file() and not (warmup / "soda_stage.json").exists()
    # The same command again: the half-merged warmup is not trusted; it is trained and merged again.
    events = tmp_path / "events-rerun.txt"
    run = axolotl_train(config, launcher=[sys.executable, str(LAUNCHER)], timeout=600,
                        env={"SODA_TEST_EVENTS": str(events)})
    assert run.returncode == 0, run.output[-4000:]
    # Both stages ran in one process with the recipe's LoRA kernel settings; whatever the
    # warmup did to the attention class, the DPO model's instances can run it.
    states = attention_states(events)
    assert [s["stage"] for s in states] == ["warmup", "dpo"], states
    assert all(attention_runnable(s) for s in states), states
    assert "the warmup trains from step 0 (an unfinished earlier run left" in run.output
    assert (merged / "tokenizer_config.json").is_file() and (warmup / "soda_stage.json").is_file()
    # DeepSpeed trained both stages: its checkpoint files exist in each.
    for stage_dir in (warmup, out):
        checkpoint = stage_dir / "checkpoint-3"
        assert (checkpoint / "latest").is_file() and (checkpoint / "zero_to_fp32.py").is_file(), stage_dir
    # The warmup adapter was merged into a full model, and DPO started from it.
    assert (warmup / "adapter_config.json").is_file() and (merged / "model.safetensors").is_file()
    # PEFT recorded the model the DPO adapter was trained on: the merged q_w.
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(merged)
    base = load_file(str(tiny_model_dirs["llama"] / "model.safetensors"))
    q_w = load_file(str(merged / "model.safetensors"))
    assert not torch.equal(q_w["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    logs = run.step_logs()
    dpo = [log for log in logs if "rewards/margins" in log]
    assert len(logs) - len(dpo) == 3 and len(dpo) == 3
    assert all(math.isfinite(log["loss"]) for log in logs)
    # Reference = merged q_w = the policy before its first update (fresh adapter, B = 0).
    assert abs(dpo[0]["rewards/margins"]) < 1e-6
    # DPO trained its adapter: PEFT starts every B at 0, so a non-zero B is a change from q_w.
    adapter = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [tensor for name, tensor in adapter.items() if "lora_B" in name]
    assert lora_b and any(bool(tensor.abs().sum() > 0) for tensor in lora_b)
    _check_final_merge(out, merged, adapter, cfg, config, tmp_path)


def _check_final_merge(out, q_w_dir, adapter, cfg, config, tmp_path):
    """The LoRA run's student is the full model `<output_dir>/merged`: DPO's adapter merged
    into q_w (not q0), loadable by plain transformers, answered by the judge, shareable."""
    from transformers import AutoModelForCausalLM

    from soda_plugin.evalsets import EvalPrompt
    from soda_plugin.judge.answers import check_student, generate_answers
    from soda_plugin.share import model_card, plan_bundle, publish

    student = out / "merged"
    assert (student / "model.safetensors").is_file() and (student / "tokenizer_config.json").is_file()
    assert not (student / "adapter_config.json").exists()
    weights, q_w = load_file(str(student / "model.safetensors")), load_file(str(q_w_dir / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj"
    lora = {k.split(f"{name}.")[-1]: v for k, v in adapter.items() if f"{name}.lora_" in k}
    scale = cfg["lora_alpha"] / cfg["lora_r"]
    assert not torch.equal(weights[f"{name}.weight"], q_w[f"{name}.weight"])
    assert torch.allclose(weights[f"{name}.weight"],
                          q_w[f"{name}.weight"] + scale * lora["lora_B.weight"] @ lora["lora_A.weight"], atol=1e-6)
    model = AutoModelForCausalLM.from_pretrained(str(student))  # plain transformers, no PEFT
    assert torch.equal(model.state_dict()[f"{name}.weight"], weights[f"{name}.weight"])
    # The judge's answer step takes the student and refuses the adapter folder.
    with pytest.raises(ValueError, match=f"pass {student}"):
        check_student("transformers", str(out))
    prompt = EvalPrompt("vicuna", "p1", [{"role": "user", "content": "What is 12 plus 7?"}], None)
    summary = generate_answers("transformers", str(student), {"batch_size": 1}, {"vicuna": [prompt]},
                               tmp_path / "answers", max_tokens=4, progress=False)["vicuna"]
    assert summary.prompts_generated == 1 and summary.answers_written == 1, summary.report()
    # share.py's dry run takes it too, and refuses the adapter (its base is a local folder).
    card = model_card(repo_id="me/x", recipe_path=config, teacher="t")
    report = publish("me/x", plan_bundle(student, config), card, dry_run=True)
    assert f"model.safetensors  <- {student / 'model.safetensors'}" in report
    with pytest.raises(ValueError, match=f"pass {student}"):
        plan_bundle(out, config)
