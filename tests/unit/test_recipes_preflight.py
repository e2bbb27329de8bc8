"""A recipe that cannot run here stops in Axolotl's own `load_cfg`, in one line of soda's
words, before DeepSpeed, a process group, a model or an output folder exists.

Named to sort after test_memory.py: a GPU recipe that gets past `register` leaves `tf32`'s
process-wide numerics behind (tests/unit/test_recipes_gad.py).
"""

import copy
import re

import pytest
import torch

from recipe_overrides import GAD_RECIPES, RECIPES_DIR, cpu_recipe, load_recipe, write_fixtures
from soda_plugin.format.dataset_path import looks_local
from soda_plugin.train.preflight import check_deepspeed_has_gpu, check_precision_has_gpu, missing_data

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
SODA_GPU = RECIPES_DIR / "llama8b_soda.yml"
GAD_GPU = GAD_RECIPES[0]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("preflight_data"))


def _load_cfg(cfg):
    from axolotl.cli.config import load_cfg
    from axolotl.utils.dict import DictDefault

    return load_cfg(DictDefault(copy.deepcopy(cfg)))


def _nothing_started(out):
    import axolotl.utils.distributed as axolotl_distributed
    import torch.distributed as dist

    assert not (dist.is_available() and dist.is_initialized()), "a process group was created"
    assert axolotl_distributed.distributed_state is None, "Axolotl's distributed state was created"
    assert not (out / "out").exists(), "the output folder was created"


@no_cuda
@pytest.mark.parametrize("recipe", [SODA_GPU, GAD_GPU], ids=lambda p: p.stem)
def test_gpu_recipe_without_cuda_stops_before_deepspeed(recipe, tiny_model_dirs, fixtures, tmp_path, monkeypatch):
    cfg = cpu_recipe(recipe, tiny_model_dirs, fixtures, tmp_path)
    cfg["deepspeed"] = load_recipe(recipe)["deepspeed"]  # the recipe tests drop it; here it is the point
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    cpu = "recipes/smollm2_cpu_gad.yml" if recipe in GAD_RECIPES else "recipes/smollm2_cpu_soda.yml"
    with pytest.raises(ValueError) as raised:
        _load_cfg(cfg)
    message = str(raised.value)
    assert "\n" not in message
    # `.*`: Axolotl 0.19 keeps an earlier test's SODAPlugin registered, which resolves the path first.
    assert re.match(r"soda: this recipe is a GPU recipe \(`deepspeed: .*deepspeed/zero\d\.json`", message)
    assert "`bf16: true`" in message and "no CUDA device" in message
    assert f"train {cpu} instead (`axolotl train {cpu} --launcher python`)" in message
    assert "MASTER_ADDR" not in message
    _nothing_started(tmp_path)


@no_cuda
def test_deepspeed_without_cuda_passes_where_axolotl_starts_no_process_group(monkeypatch):
    cfg = {"deepspeed": "deepspeed/zero2.json", "rl": "dpo"}
    with pytest.raises(ValueError, match="no CUDA device"):
        check_deepspeed_has_gpu(cfg)
    monkeypatch.setenv("AXOLOTL_IS_PREPROCESS", "1")  # `axolotl preprocess`: tokenizing a GPU recipe on a CPU
    check_deepspeed_has_gpu(cfg)


@no_cuda
def test_gpu_precision_switches_stop_before_any_data_in_load_datasets(tiny_model_dirs, fixtures, tmp_path):
    """`bf16`/`tf32` pass Axolotl's validation on a CPU (the recipe tests rely on it) and are
    refused by `TrainingArguments` once the model is loaded: soda refuses them first."""
    from soda_plugin.train.plugin import SODAPlugin

    cfg = {"bf16": True, "tf32": False, "rl": "dpo", "soda": {}, "datasets": []}
    with pytest.raises(ValueError, match=r"^soda: this recipe is a GPU recipe \(`bf16: true`\)"):
        SODAPlugin().load_datasets(cfg, preprocess=False)
    assert SODAPlugin().load_datasets(dict(cfg, soda=None), preprocess=True) is None  # `axolotl preprocess`
    check_precision_has_gpu({"bf16": "auto", "fp16": False, "tf32": False})  # a CPU recipe passes


def test_missing_pairs_and_teacher_files_name_the_command_that_writes_each(tiny_model_dirs, fixtures, tmp_path):
    raw = load_recipe(SODA_GPU)
    cfg = cpu_recipe(SODA_GPU, tiny_model_dirs, fixtures, tmp_path)
    cfg["datasets"][0]["path"] = raw["datasets"][0]["path"]  # ./data/pairs/llama8b/data
    cfg["soda"]["warmup"]["datasets"][0]["path"] = str(tmp_path / "teacher" / "train.jsonl")
    with pytest.raises(ValueError) as raised:
        _load_cfg(cfg)
    message = str(raised.value)
    assert "\n" not in message
    assert "`datasets[0].path: ./data/pairs/llama8b/data` does not exist (looked in " in message
    assert "`soda pairs --teacher TEACHER.jsonl --snapshot Q0_DIR --out ./data/pairs/llama8b` writes it" in message
    assert (f"`soda.warmup.datasets[0].path: {tmp_path / 'teacher' / 'train.jsonl'}` does not exist; "
            f"`soda teacher --prompts PROMPTS --model TEACHER --out {tmp_path / 'teacher' / 'train.jsonl'}` writes it") in message
    _nothing_started(tmp_path)


def test_gad_recipe_names_the_teacher_file(tiny_model_dirs, fixtures, tmp_path):
    cfg = cpu_recipe(GAD_GPU, tiny_model_dirs, fixtures, tmp_path)
    cfg["datasets"][0]["path"] = str(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match=r"`datasets\[0\]\.path: .*missing\.jsonl` does not exist; `soda teacher "):
        _load_cfg(cfg)
    _nothing_started(tmp_path)


def test_cpu_recipe_with_its_data_passes(tiny_model_dirs, fixtures, tmp_path):
    raw = load_recipe(RECIPES_DIR / "smollm2_cpu_soda.yml")
    raw.update(base_model=str(tiny_model_dirs["llama"]), output_dir=str(tmp_path / "out"),
               dataset_prepared_path=str(tmp_path / "prepared"),
               datasets=[{"path": str(fixtures["parquet"]), "ds_type": "parquet", "type": "soda"}])
    cfg = _load_cfg(raw)
    assert cfg.datasets[0]["path"] == str(fixtures["parquet"])


@pytest.mark.parametrize("path, local", [
    ("./data/pairs/llama8b/data", True), ("/abs/teacher.jsonl", True), ("~/pairs", True),
    ("data/teacher/train.jsonl", True), ("data/pairs/qwen7b/data", True), ("teacher.jsonl", True),
    ("ytz20/LMSYS-Chat-GPT-5-Chat-Response", False), ("someone/pairs", False), ("imdb", False),
])
def test_a_hub_id_is_left_to_axolotl(path, local):
    assert looks_local(path) is local


def test_only_soda_entries_and_only_the_data_the_stage_reads_are_checked(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    cfg = {"rl": "dpo", "datasets": [{"path": missing, "type": "chat_template"},
                                     {"path": "someone/pairs", "type": "soda"}],
           "soda": {"stage": "dpo", "warmup": {"datasets": [{"path": missing, "type": "soda"}]}}}
    assert missing_data(cfg) == []  # another type; a Hub id; `stage: dpo` reads no warmup data
    cfg["soda"]["stage"] = "chain"
    assert [m.split("`")[1] for m in missing_data(cfg)] == [f"soda.warmup.datasets[0].path: {missing}"]
    cfg["test_datasets"] = [{"path": missing, "type": "soda_plugin.soda"}]
    assert "soda pairs" in missing_data(cfg)[0] and "`test_datasets[0].path" in missing_data(cfg)[0]
