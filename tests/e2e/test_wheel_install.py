"""soda from its wheel, as a user without a clone gets it: the wheel carries the recipes and
their DeepSpeed JSON; installed into a fresh venv, outside the repo, `soda fetch recipes ./r`
copies them and Axolotl's `load_cfg` of `./r/qwen7b_soda.yml` resolves its `deepspeed:` file,
and `soda demo` runs its stages in any working directory (tests/e2e/test_smollm2_demo.py runs
the whole quick demo from the same wheel). The wheel and its venv: tests/e2e/wheel_venv.py.
"""

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from ports import reserved_port
from wheel_venv import ROOT, installed_wheel
from wheel_venv import run as _run

pytestmark = pytest.mark.e2e

STAGES = ("fetch", "teacher", "snapshot", "pairs", "judge", "analyze", "share", "demo")
# Run in the fresh venv: Axolotl's own config loading of the fetched recipe, and the shipped
# fallback for a recipe that has no deepspeed/ beside it (`axolotl train https://…/recipe.yml`).
LOAD = r"""
import json, os, sys
import torch.distributed as dist
# load_cfg sets DeepSpeed up at once (prepare_optim_env -> deepspeed.init_distributed): give it a
# one-process gloo group, as tests/e2e/deepspeed_cpu_launch.py does (CPU torch has no nccl).
os.environ.update(MASTER_ADDR="127.0.0.1", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
dist.init_process_group("gloo", rank=0, world_size=1)
from axolotl.cli.config import load_cfg
import soda_plugin
from soda_plugin.train.deepspeed_path import resolve_deepspeed_path
recipe, model, out, alone, result = sys.argv[1:]
cfg = load_cfg(recipe, base_model=model, output_dir=f"{out}/out", dataset_prepared_path=f"{out}/prepared")
bare = {"deepspeed": "deepspeed/zero3.json", "axolotl_config_path": alone}
resolve_deepspeed_path(bare)
with open(result, "w") as f:
    json.dump({"deepspeed": cfg.deepspeed, "deepspeed_file": os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE"),
               "base_model": cfg.base_model, "plugins": cfg.plugins,
               "soda_plugin": soda_plugin.__file__, "shipped": bare["deepspeed"]}, f, default=str)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return installed_wheel(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    return installed_wheel(tmp_path_factory)[1]


def test_wheel_carries_the_recipes_deepspeed_json_and_entry_points(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = {f"soda_plugin/recipes/{p.name}" for p in (ROOT / "recipes").glob("*.yml")}
    deepspeed = {f"soda_plugin/recipes/deepspeed/{p.name}" for p in (ROOT / "recipes" / "deepspeed").glob("*.json")}
    assert "soda_plugin/recipes/qwen7b_soda.yml" in recipes and len(deepspeed) == 2
    assert recipes | deepspeed <= names
    templates = {f"soda_plugin/{p.relative_to(ROOT / 'soda_plugin').as_posix()}"
                 for p in (ROOT / "soda_plugin").rglob("templates/*.txt")}  # the judge's prompt templates
    assert templates and {"soda_plugin/cli/main.py", "soda_plugin/recipe_files.py", *templates} <= names
    assert not [n for n in names if n.split("/")[0] in ("recipes", "tests", "tools") or "__pycache__" in n]
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert "soda = soda_plugin.cli.main:main" in entry_points.decode()
    assert "[axolotl.cli_commands]\nsoda = soda_plugin.cli.axolotl_command:soda" in entry_points.decode()


def test_installed_soda_is_the_wheels_and_lists_its_stages(venv, tmp_path):
    found = _run([venv / "bin" / "python", "-c", "import soda_plugin; print(soda_plugin.__file__)"], cwd=tmp_path)
    assert Path(found.stdout.strip()).is_relative_to(venv)
    help_text = _run([venv / "bin" / "soda", "--help"], cwd=tmp_path).stdout
    positions = [help_text.index(f"\n  {stage} ") for stage in STAGES]
    assert positions == sorted(positions)
    # The same command as an Axolotl subcommand, through the installed `axolotl.cli_commands` entry point.
    axolotl = _run([venv / "bin" / "python", "-m", "axolotl.cli.main", "soda", "--help"], cwd=tmp_path).stdout
    assert "usage: soda <stage>" in axolotl and all(f"\n  {stage} " in axolotl for stage in STAGES)


def test_fetched_recipe_resolves_its_deepspeed_json_in_load_cfg(venv, tiny_model_dirs, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _run([venv / "bin" / "soda", "fetch", "recipes", "./r"], cwd=work)
    assert (work / "r" / "qwen7b_soda.yml").read_bytes() == (ROOT / "recipes" / "qwen7b_soda.yml").read_bytes()
    assert not (work / "deepspeed").exists()  # found beside the recipe, not in the working directory
    alone = tmp_path / "downloaded" / "qwen14b_soda.yml"  # a recipe without its deepspeed/ folder
    alone.parent.mkdir()
    shutil.copy2(work / "r" / "qwen14b_soda.yml", alone)
    # The recipe's data, where `soda teacher` and `soda pairs` would write it: the plugin refuses a
    # recipe whose local data does not exist yet, and only the paths are read here.
    recipe = yaml.safe_load((work / "r" / "qwen7b_soda.yml").read_text())
    for entry in [*recipe["datasets"], *recipe["soda"]["warmup"]["datasets"]]:
        data = work / entry["path"]
        data.parent.mkdir(parents=True, exist_ok=True)
        if data.suffix:
            data.touch()
        else:
            data.mkdir()
    result = tmp_path / "result.json"
    with reserved_port() as port:
        _run([venv / "bin" / "python", "-c", LOAD, "r/qwen7b_soda.yml", tiny_model_dirs["qwen2"], tmp_path,
              alone, result], cwd=work, timeout=600, MASTER_PORT=str(port))
    loaded = json.loads(result.read_text())
    assert Path(loaded["soda_plugin"]).is_relative_to(venv)
    assert loaded["base_model"] == str(tiny_model_dirs["qwen2"]) and loaded["plugins"] == ["soda_plugin.SODAPlugin"]
    # The plugin resolved `deepspeed: deepspeed/zero2.json` next to the recipe; Axolotl then
    # read that file (cfg.deepspeed holds its content) and handed its path to Accelerate.
    fetched = work / "r" / "deepspeed" / "zero2.json"
    assert loaded["deepspeed_file"] == str(fetched.resolve())
    assert loaded["deepspeed"] == json.loads(fetched.read_text())
    # The recipe-path fallback: the wheel's own copy of the JSON.
    shipped = Path(loaded["shipped"])
    assert shipped.is_relative_to(venv) and shipped.parts[-3:] == ("recipes", "deepspeed", "zero3.json")
    assert shipped.read_bytes() == (ROOT / "recipes" / "deepspeed" / "zero3.json").read_bytes()


@pytest.mark.slow
def test_demo_runs_its_stages_from_the_wheel_in_any_directory(venv, tmp_path):
    """`soda demo` from the wheel, in a directory that is not the clone, with its default paths:
    SmolLM2 converted into ./outputs/models, the teacher's answers and q0's snapshot in
    ./outputs/miniature-quick, and nothing else written there."""
    from soda_plugin.miniature import tasks
    from soda_plugin.miniature.settings import budget_settings
    from soda_plugin.snapshot.store import iter_rows

    work = tmp_path / "work"
    work.mkdir()
    _run([venv / "bin" / "soda", "demo", "--quick", "--stop-after", "snapshot"], cwd=work, venv=venv, timeout=600)
    out = work / "outputs" / "miniature-quick"
    assert sorted(p.name for p in work.iterdir()) == ["outputs"]
    assert sorted(p.name for p in (work / "outputs").iterdir()) == ["miniature-quick", "models"]
    assert (work / "outputs" / "models" / "SmolLM2-135M-Instruct" / "model.safetensors").is_file()
    n_train = budget_settings("quick", out).n_train
    prompts = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    teacher = [json.loads(line) for line in (out / "data" / "teacher.jsonl").read_text().splitlines()]
    assert len(prompts) == len(teacher) == n_train
    # The local teacher answered every training prompt, through `soda teacher`, with its program's answer.
    assert sorted(json.dumps(row["content"]) for row in teacher) == sorted(json.dumps(row["content"]) for row in prompts)
    assert all(row["teacher_response"] == tasks.teacher_answer(row["content"][-1]["content"]) for row in teacher)
    snapshot = out / "snapshots" / "q0"
    assert sorted(snapshot.glob("shards/shard-*.jsonl"))
    rows = list(iter_rows(snapshot))
    assert len(rows) == n_train and {r["prompt_id"] for r in rows} == {r["prompt_id"] for r in teacher}
    assert all(r["finish_reason"] in ("stop", "length") for r in rows) and any(r["response"].strip() for r in rows)
    # Stopped after the snapshot: no pairs, no training, no report.
    assert not any((out / name).exists() for name in ("pairs", "runs", "configs", "report.md", "summary.json"))
