"""Every GPU recipe through Axolotl's real config loading, its DeepSpeed JSON through
DeepSpeed's own config class, and the values every recipe must share.

What the CPU machine cannot run is overridden, each override with its reason, in
`tests/recipe_overrides.py`.
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from recipe_overrides import (
    GPU_RECIPES, RECIPES_DIR, SEQKD_RECIPES, SODA_RECIPES, cpu_recipe, family, load_recipe, write_fixtures,
)

STUDENTS = ("qwen3b", "qwen7b", "qwen14b", "llama3b", "llama8b")
# GAD's published settings (microsoft/LMOps gad/scripts/train/*.sh, docs/budgets.md): batch
# 256 prompts per optimizer step and grad_clip 0.2 in every stage; SeqKD lr 5e-6 for 3 epochs,
# warmup lr 1e-6 for 1 epoch, the GAD stage lr 1e-6.
GAD_ROWS_PER_STEP = 256
GAD_GRAD_CLIP = 0.2
GAD_SEQKD_LR, GAD_SEQKD_EPOCHS = 5.0e-6, 3
GAD_WARMUP_LR, GAD_WARMUP_EPOCHS = 1.0e-6, 1
GAD_STAGE_LR = 1.0e-6
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is 12 plus 7?"}]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("recipe_data"))


def _ids(paths):
    return [p.stem for p in paths]


def test_every_student_has_a_soda_and_a_seqkd_recipe_and_lora_variants():
    names = {p.stem for p in GPU_RECIPES}
    for student in STUDENTS:
        assert {f"{student}_soda", f"{student}_seqkd"} <= names
    assert {"llama8b_lora_soda", "qwen7b_lora_soda"} <= names


def _load(cfg):
    from axolotl.cli.config import load_cfg
    from axolotl.utils.dict import DictDefault

    return load_cfg(DictDefault(cfg))


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=_ids(GPU_RECIPES))
def test_recipe_passes_axolotl_load_cfg(recipe, tiny_model_dirs, fixtures, tmp_path):
    cfg = _load(cpu_recipe(recipe, tiny_model_dirs, fixtures, tmp_path))
    raw = load_recipe(recipe)
    assert cfg.sequence_len == raw["sequence_len"] == 3584
    assert cfg.gradient_checkpointing is True
    # The GPU settings themselves pass Axolotl's validation here; only `deepspeed` is removed.
    assert cfg.bf16 is True and cfg.tf32 is True and cfg.attn_implementation == "sdpa"
    if raw.get("rl"):
        assert str(getattr(cfg.rl, "value", cfg.rl)) == "dpo" and cfg.precompute_ref_log_probs is True
        assert cfg.soda["warmup"]["num_epochs"] == raw["soda"]["warmup"]["num_epochs"]
        assert cfg.soda["precompute_ref_batch_size"] == raw["soda"]["precompute_ref_batch_size"]
    # The budget keys survive Axolotl's validation as written.
    assert cfg.max_grad_norm == GAD_GRAD_CLIP and cfg.soda["gpus"] == raw["soda"]["gpus"]
    assert cfg.micro_batch_size * cfg.gradient_accumulation_steps * cfg.soda["gpus"] == GAD_ROWS_PER_STEP
    assert cfg.max_steps is None and cfg.num_epochs == raw["num_epochs"]


@pytest.mark.parametrize("recipe", SODA_RECIPES, ids=_ids(SODA_RECIPES))
def test_derived_warmup_config_passes_axolotl_load_cfg(recipe, tiny_model_dirs, fixtures, tmp_path):
    from soda_plugin.train.args import SodaConfig
    from soda_plugin.train.stages import derive_warmup_config

    raw = cpu_recipe(recipe, tiny_model_dirs, fixtures, tmp_path)
    warmup = derive_warmup_config(raw, SodaConfig.model_validate(raw["soda"]))
    cfg = _load(warmup)
    assert cfg.rl is None and cfg.learning_rate == raw["soda"]["warmup"]["learning_rate"]
    assert cfg.datasets[0]["path"] == str(fixtures["json"])  # the teacher data, not the pairs
    assert cfg.adapter == raw.get("adapter")
    # GAD's warmup budget reaches the SFT stage Axolotl trains; it writes no checkpoints
    # (the chain never resumes a warmup: derive_warmup_config drops resume_from_checkpoint).
    assert cfg.micro_batch_size * cfg.gradient_accumulation_steps * raw["soda"]["gpus"] == GAD_ROWS_PER_STEP
    assert cfg.max_grad_norm == GAD_GRAD_CLIP and cfg.num_epochs == GAD_WARMUP_EPOCHS and cfg.max_steps is None
    assert cfg.save_strategy == "no" and "resume_from_checkpoint" not in warmup


def _deepspeed_path(recipe: Path) -> Path:
    return recipe.parent / load_recipe(recipe)["deepspeed"]


def test_every_recipe_names_a_shipped_deepspeed_json_by_size():
    for recipe in GPU_RECIPES:
        path = _deepspeed_path(recipe)
        assert path.parent == RECIPES_DIR / "deepspeed" and path.is_file(), recipe.name
        stage = json.loads(path.read_text())["zero_optimization"]["stage"]
        assert stage == (3 if recipe.name.startswith("qwen14b") else 2), recipe.name


@pytest.mark.parametrize("json_path", sorted((RECIPES_DIR / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_deepspeed_json_parses_with_deepspeed_config(json_path, tmp_path):
    """Fill the `auto` values as the HF Trainer does for one recipe, then let DeepSpeed parse it."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    raw = load_recipe(RECIPES_DIR / "qwen7b_soda.yml")
    hf = HfTrainerDeepSpeedConfig(str(json_path))
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=raw["micro_batch_size"],
                             gradient_accumulation_steps=raw["gradient_accumulation_steps"],
                             max_grad_norm=raw["max_grad_norm"], learning_rate=raw["learning_rate"], use_cpu=True)
    hf.trainer_config_process(args)
    model = SimpleNamespace(config=SimpleNamespace(hidden_size=3584, hidden_sizes=None))
    hf.trainer_config_finalize(args, model, num_training_steps=700)  # ~one DPO epoch at 256 pairs per step
    ds = DeepSpeedConfig(hf.config)
    assert ds.zero_optimization_stage == json.loads(json_path.read_text())["zero_optimization"]["stage"]
    assert ds.train_micro_batch_size_per_gpu == raw["micro_batch_size"]
    assert ds.gradient_accumulation_steps == raw["gradient_accumulation_steps"]
    assert ds.gradient_clipping == raw["max_grad_norm"]


# Keys every recipe shares (values equal across recipes); the groups say where.
SHARED_ALL = (
    "sequence_len", "val_set_size", "bf16", "tf32", "attn_implementation", "gradient_checkpointing",
    "gradient_checkpointing_kwargs", "optimizer", "weight_decay", "max_grad_norm", "lr_scheduler",
    # logging and checkpoints
    "logging_steps", "save_strategy", "save_steps", "save_total_limit", "seed",
    "soda.on_bad_row", "soda.gpus",
)
SHARED_SODA = (
    # DPO stage
    "rl", "trl.beta", "precompute_ref_log_probs", "soda.precompute_ref_batch_size", "warmup_ratio",
    "micro_batch_size", "gradient_accumulation_steps", "num_epochs",
    # warmup stage
    "soda.warmup.num_epochs", "soda.warmup.lr_scheduler", "soda.warmup.warmup_ratio",
    "soda.warmup.micro_batch_size", "soda.warmup.gradient_accumulation_steps",
    "soda.warmup.save_strategy", "soda.warmup.datasets",
    # q0 snapshot sampling
    "soda.snapshot.backend", "soda.snapshot.temperature", "soda.snapshot.top_p", "soda.snapshot.max_tokens",
    "soda.snapshot.n", "soda.snapshot.seed", "soda.snapshot.dtype",
)
SHARED_SODA_BY_KIND = ("learning_rate", "soda.warmup.learning_rate")  # full fine-tuning vs LoRA
SHARED_LORA = ("adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_linear")
SHARED_SEQKD = ("learning_rate", "warmup_ratio", "micro_batch_size", "gradient_accumulation_steps", "num_epochs",
                "datasets")


def _get(cfg, dotted):
    value = cfg
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return "<missing>"
        value = value[part]
    return value


def _assert_shared(recipes, keys):
    loaded = {p.name: load_recipe(p) for p in recipes}
    for key in keys:
        values = {name: _get(cfg, key) for name, cfg in loaded.items()}
        assert "<missing>" not in values.values(), f"`{key}` missing: {values}"
        assert len({json.dumps(v, sort_keys=True) for v in values.values()}) == 1, f"`{key}` differs: {values}"


def test_shared_values_agree_across_all_recipes():
    _assert_shared(GPU_RECIPES, SHARED_ALL)


def test_shared_values_agree_across_soda_recipes():
    _assert_shared(SODA_RECIPES, SHARED_SODA)
    full = [p for p in SODA_RECIPES if "_lora_" not in p.name]
    lora = [p for p in SODA_RECIPES if "_lora_" in p.name]
    _assert_shared(full, SHARED_SODA_BY_KIND)
    _assert_shared(lora, SHARED_SODA_BY_KIND + SHARED_LORA)


def test_shared_values_agree_across_seqkd_recipes():
    _assert_shared(SEQKD_RECIPES, SHARED_SEQKD)


@pytest.mark.parametrize("student", STUDENTS)
def test_seqkd_matches_soda_data_and_model(student):
    soda, seqkd = load_recipe(RECIPES_DIR / f"{student}_soda.yml"), load_recipe(RECIPES_DIR / f"{student}_seqkd.yml")
    warmup = soda["soda"]["warmup"]
    assert seqkd["datasets"] == warmup["datasets"]
    assert seqkd["micro_batch_size"] * seqkd["gradient_accumulation_steps"] == (
        warmup["micro_batch_size"] * warmup["gradient_accumulation_steps"])
    for key in ("base_model", "deepspeed", "special_tokens", "sequence_len", "attn_implementation"):
        assert seqkd.get(key) == soda.get(key), key


@pytest.mark.parametrize("student", STUDENTS)
def test_each_student_reads_its_own_snapshot_and_pairs(student):
    for recipe in RECIPES_DIR.glob(f"{student}_*soda.yml"):
        raw = load_recipe(recipe)
        assert raw["soda"]["snapshot"]["output_dir"] == f"./data/snapshots/{student}/q0"
        assert raw["datasets"][0]["path"] == f"./data/pairs/{student}/data"
        assert raw["output_dir"] == f"./outputs/{recipe.stem}"


def test_every_open_value_has_a_reason_comment():
    """The keys whose values the paper leaves open carry a one-line reason on their line."""
    open_keys = ("learning_rate", "beta", "max_steps", "temperature", "deepspeed", "lora_r", "sequence_len",
                 "gradient_accumulation_steps", "micro_batch_size", "lr_scheduler", "warmup_ratio", "weight_decay",
                 "num_epochs", "max_tokens", "optimizer", "max_grad_norm", "save_steps", "save_strategy",
                 "precompute_ref_batch_size", "gpus")
    for recipe in GPU_RECIPES:
        for line in recipe.read_text().splitlines():
            key = line.strip().split(":", 1)[0]
            if key in open_keys and not line.strip().startswith("#"):
                assert "  # " in line, f"{recipe.name}: `{line.strip()}` has no reason comment"


@pytest.mark.parametrize("family_name", ["llama", "qwen2"])
def test_one_chat_template_for_sft_dpo_and_snapshot(family_name, tiny_model_dirs, fixtures, tmp_path):
    """Per family: the tokenizer Axolotl builds for the warmup (SFT) and for DPO, and the one
    the snapshot engines load (`AutoTokenizer` on `base_model`), render the same prompt."""
    from axolotl.loaders import load_tokenizer
    from transformers import AutoTokenizer

    from soda_plugin.train.args import SodaConfig
    from soda_plugin.format.chat_format import render_prompt
    from soda_plugin.train.stages import derive_warmup_config

    recipes = [p for p in SODA_RECIPES if family(load_recipe(p)) == family_name]
    assert recipes
    rendered = set()
    for recipe in recipes:
        raw = cpu_recipe(recipe, tiny_model_dirs, fixtures, tmp_path / recipe.stem)
        assert "chat_template" not in raw, "a recipe template would differ from the snapshot tool's"
        warmup = derive_warmup_config(raw, SodaConfig.model_validate(raw["soda"]))
        for cfg in (_load(raw), _load(warmup)):
            rendered.add(render_prompt(load_tokenizer(cfg), MESSAGES))
        rendered.add(render_prompt(AutoTokenizer.from_pretrained(raw["base_model"]), MESSAGES))
    assert len(rendered) == 1, rendered


def _stages(raw):
    """(name, settings) of each training stage a recipe runs; the warmup inherits the top level."""
    top = {k: v for k, v in raw.items() if k != "soda"}
    if "warmup" not in raw.get("soda", {}):
        return [("seqkd", top)]
    return [("warmup", {**top, **raw["soda"]["warmup"]}), ("dpo", top)]


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=_ids(GPU_RECIPES))
def test_every_stage_takes_gads_batch_and_grad_clip_on_the_declared_gpus(recipe):
    """256 rows (DPO: pairs) per optimizer step on the recipe's `soda.gpus`, and GAD's clip."""
    raw = load_recipe(recipe)
    gpus = raw["soda"]["gpus"]
    assert f"--num_processes {gpus} " in recipe.read_text(), "the launch command runs another GPU count"
    for stage, cfg in _stages(raw):
        rows = cfg["micro_batch_size"] * cfg["gradient_accumulation_steps"] * gpus
        assert rows == GAD_ROWS_PER_STEP, f"{recipe.name} {stage}: {rows} rows per step"
        assert cfg["max_grad_norm"] == GAD_GRAD_CLIP, f"{recipe.name} {stage}"
        # Epochs over the rows actually kept, never a step count fixed before the data exists.
        assert "max_steps" not in cfg and cfg["num_epochs"] >= 1, f"{recipe.name} {stage}"


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=_ids(GPU_RECIPES))
def test_learning_rates_and_epochs_are_gads_except_lora_rates(recipe):
    raw = load_recipe(recipe)
    expected = {"seqkd": (GAD_SEQKD_LR, GAD_SEQKD_EPOCHS), "warmup": (GAD_WARMUP_LR, GAD_WARMUP_EPOCHS),
                "dpo": (GAD_STAGE_LR, 1)}  # DPO: one epoch over the kept pairs (the paper gives no length)
    for stage, cfg in _stages(raw):
        lr, epochs = expected[stage]
        assert cfg["num_epochs"] == epochs, f"{recipe.name} {stage}"
        if raw.get("adapter") != "lora":  # LoRA rates differ, each with its reason on the line
            assert cfg["learning_rate"] == lr, f"{recipe.name} {stage}"


@pytest.mark.parametrize("recipe", SODA_RECIPES, ids=_ids(SODA_RECIPES))
def test_dpo_training_args_carry_the_precompute_batch_size(recipe, tiny_model_dirs, fixtures, tmp_path):
    """`soda.precompute_ref_batch_size` reaches TRL's `DPOConfig` through Axolotl's own builder;
    without it TRL would precompute at `per_device_train_batch_size` (1 here)."""
    from axolotl.core.builders.rl import HFRLTrainerBuilder

    raw = cpu_recipe(recipe, tiny_model_dirs, fixtures, tmp_path)
    raw.update(bf16=False, tf32=False)  # TrainingArguments refuses bf16/tf32 without a CUDA GPU
    args, _ = HFRLTrainerBuilder(_load(raw), None, None)._build_training_arguments(total_num_steps=10)
    assert args.precompute_ref_log_probs is True and args.per_device_train_batch_size == 1
    assert args.precompute_ref_batch_size == raw["soda"]["precompute_ref_batch_size"] == 4
    assert args.max_grad_norm == GAD_GRAD_CLIP and args.gradient_accumulation_steps == 32


def test_cpu_warmup_steps_replace_the_dpo_stages_warmup_ratio(tiny_model_dirs, fixtures, tmp_path):
    """The CPU recipe's `soda.warmup` counts LR warm-up in steps while its DPO stage keeps a
    ratio: the derived warmup config carries only the steps, and Axolotl accepts it."""
    from soda_plugin.train.args import SodaConfig
    from soda_plugin.train.stages import derive_warmup_config

    raw = load_recipe(RECIPES_DIR / "smollm2_cpu_soda.yml")
    raw.update(base_model=str(tiny_model_dirs["llama"]), output_dir=str(tmp_path / "out"),
               dataset_prepared_path=str(tmp_path / "prepared"),
               datasets=[{"path": str(fixtures["parquet"]), "ds_type": "parquet", "type": "soda"}])
    assert raw["warmup_ratio"] and raw["soda"]["warmup"]["warmup_steps"]
    warmup = derive_warmup_config(raw, SodaConfig.model_validate(raw["soda"]))
    assert warmup["warmup_steps"] == raw["soda"]["warmup"]["warmup_steps"] and warmup["warmup_ratio"] is None
    cfg = _load(warmup)
    assert cfg.warmup_steps == raw["soda"]["warmup"]["warmup_steps"] and not cfg.warmup_ratio
    assert cfg.lr_scheduler == "constant_with_warmup" and cfg.rl is None
