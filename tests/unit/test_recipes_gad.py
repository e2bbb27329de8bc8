"""GAD's GPU recipes: through Axolotl's real config loading, GAD's published values, the
batch arithmetic, a reason on every open value, and the same data and model as SeqKD's."""

from __future__ import annotations

import pytest

from recipe_overrides import GAD_RECIPES, RECIPES_DIR, cpu_recipe, load_recipe, write_fixtures

STUDENTS = ("qwen3b", "qwen7b", "qwen14b", "llama3b", "llama8b")
GPUS = 8
GAD_PROMPTS_PER_STEP = 256
GAD = {"trl.num_generations": 8, "trl.temperature": 0.8, "trl.beta": 0.001, "trl.epsilon": 0.2,
       "trl.max_completion_length": 1536, "trl.num_iterations": 1, "trl.loss_type": "dapo",
       "trl.scale_rewards": "group", "trl.vllm_importance_sampling_correction": False,
       "trl.use_bias_correction_kl": False, "learning_rate": 1.0e-6, "lr_scheduler": "constant",
       "max_grad_norm": 0.2, "weight_decay": 0.01, "gad.discriminator.learning_rate": 1.0e-6,
       "gad.discriminator.max_grad_norm": 0.2, "gad.discriminator.weight_decay": 0.01,
       "gad.warmup.learning_rate": 1.0e-6, "gad.warmup.num_epochs": 1, "gad.warmup.critic_warmup": 10,
       "vllm.tensor_parallel_size": 2, "sequence_len": 3584, "save_steps": 50}


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _ids(paths):
    return [p.stem for p in paths]


def test_every_student_has_a_gad_recipe():
    assert {p.stem for p in GAD_RECIPES} == {f"{s}_gad" for s in STUDENTS}


@pytest.mark.parametrize("recipe", GAD_RECIPES, ids=_ids(GAD_RECIPES))
def test_gad_recipe_holds_gads_published_values_and_batch(recipe):
    raw = load_recipe(recipe)
    for key, value in GAD.items():
        assert _get(raw, key) == value, (recipe.name, key)
    rollouts = raw["micro_batch_size"] * raw["gradient_accumulation_steps"] * GPUS
    assert rollouts == GAD_PROMPTS_PER_STEP * raw["trl"]["num_generations"], recipe.name
    assert f"--num_processes {GPUS} " in recipe.read_text()
    seqkd = load_recipe(RECIPES_DIR / recipe.name.replace("_gad", "_seqkd"))
    assert raw["datasets"] == seqkd["datasets"]  # the same teacher file as SeqKD
    for key in ("base_model", "special_tokens", "sequence_len", "attn_implementation"):
        assert raw.get(key) == seqkd.get(key), key


@pytest.mark.parametrize("recipe", GAD_RECIPES, ids=_ids(GAD_RECIPES))
def test_every_open_value_has_a_reason_comment(recipe):
    """Every training value GAD published or left open says on its line which it is."""
    open_keys = {"learning_rate", "beta", "temperature", "deepspeed", "sequence_len", "gradient_accumulation_steps",
                 "micro_batch_size", "lr_scheduler", "weight_decay", "num_epochs", "max_completion_length",
                 "optimizer", "max_grad_norm", "save_steps", "save_strategy", "num_generations", "epsilon",
                 "num_iterations", "loss_type", "scale_rewards", "mask_truncated_completions", "critic_warmup",
                 "kl_coef", "use_vllm", "vllm_mode", "tensor_parallel_size", "gpu_memory_utilization",
                 "vllm_importance_sampling_correction", "use_bias_correction_kl", "trainer_cls", "bf16"}
    seen = set()
    for line in recipe.read_text().splitlines():
        key = line.strip().split(":", 1)[0]
        if key in open_keys and not line.strip().startswith("#"):
            seen.add(key)
            assert "  # " in line, f"{recipe.name}: `{line.strip()}` has no reason comment"
    assert seen == open_keys, open_keys - seen


@pytest.mark.parametrize("recipe", GAD_RECIPES, ids=_ids(GAD_RECIPES))
def test_gad_recipe_passes_axolotl_load_cfg(recipe, tiny_model_dirs, tmp_path):
    from axolotl.cli.config import load_cfg
    from axolotl.utils.dict import DictDefault

    cfg = load_cfg(DictDefault(cpu_recipe(recipe, tiny_model_dirs, write_fixtures(tmp_path / "data"), tmp_path)))
    assert str(getattr(cfg.rl, "value", cfg.rl)) == "grpo" and cfg.trainer_cls == "soda_plugin.gad.trainer.GADTrainer"
    assert cfg.gad["warmup"]["critic_warmup"] == 10 and cfg.trl.use_vllm is True
    assert cfg.bf16 is True and cfg.gradient_checkpointing is True
