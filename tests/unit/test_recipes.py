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
        assert cfg.soda["warmup"]["max_steps"] == raw["soda"]["warmup"]["max_steps"]


@pytest.mark.parametrize("recipe", SODA_RECIPES, ids=_ids(SODA_RECIPES))
def test_derived_warmup_config_passes_axolotl_load_cfg(recipe, tiny_model_dirs, fixtures, tmp_path):
    from soda_plugin.args import SodaConfig
    from soda_plugin.stages import derive_warmup_config

    raw = cpu_recipe(recipe, tiny_model_dirs, fixtures, tmp_path)
    warmup = derive_warmup_config(raw, SodaConfig.model_validate(raw["soda"]))
    cfg = _load(warmup)
    assert cfg.rl is None and cfg.learning_rate == raw["soda"]["warmup"]["learning_rate"]
    assert cfg.datasets[0]["path"] == str(fixtures["json"])  # the teacher data, not the pairs
    assert cfg.adapter == raw.get("adapter")


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
    hf.trainer_config_finalize(args, model, num_training_steps=raw["max_steps"])
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
    "soda.on_bad_row",
)
SHARED_SODA = (
    # DPO stage
    "rl", "trl.beta", "precompute_ref_log_probs", "warmup_ratio", "micro_batch_size",
    "gradient_accumulation_steps", "num_epochs", "max_steps",
    # warmup stage
    "soda.warmup.max_steps", "soda.warmup.lr_scheduler", "soda.warmup.warmup_ratio",
    "soda.warmup.micro_batch_size", "soda.warmup.gradient_accumulation_steps",
    "soda.warmup.datasets",
    # q0 snapshot sampling
    "soda.snapshot.backend", "soda.snapshot.temperature", "soda.snapshot.top_p", "soda.snapshot.max_tokens",
    "soda.snapshot.n", "soda.snapshot.seed", "soda.snapshot.dtype",
)
SHARED_SODA_BY_KIND = ("learning_rate", "soda.warmup.learning_rate")  # full fine-tuning vs LoRA
SHARED_LORA = ("adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_linear")
SHARED_SEQKD = ("learning_rate", "warmup_ratio", "micro_batch_size", "gradient_accumulation_steps", "max_steps",
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
def test_seqkd_matches_soda_data_model_and_step_budget(student):
    soda, seqkd = load_recipe(RECIPES_DIR / f"{student}_soda.yml"), load_recipe(RECIPES_DIR / f"{student}_seqkd.yml")
    warmup = soda["soda"]["warmup"]
    assert seqkd["max_steps"] == warmup["max_steps"] + soda["max_steps"]
    assert seqkd["datasets"] == warmup["datasets"]
    assert seqkd["learning_rate"] == warmup["learning_rate"]
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
                 "num_epochs", "max_tokens", "optimizer")
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

    from soda_plugin.args import SodaConfig
    from soda_plugin.chat_format import render_prompt
    from soda_plugin.stages import derive_warmup_config

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
