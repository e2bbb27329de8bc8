"""soda from its wheel, as a user without a clone gets it: the wheel carries the recipes and
their DeepSpeed JSON; installed into a fresh venv, outside the repo, `soda fetch recipes ./r`
copies them and Axolotl's `load_cfg` of `./r/qwen7b_soda.yml` resolves its `deepspeed:` file.

No download: the wheel is built without build isolation (this venv's setuptools), and the
fresh venv sees this venv's site-packages (the dependencies) through a .pth file, without
the editable install's finder; soda_plugin itself comes from the wheel only.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ports import reserved_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "soda_plugin", "recipes")
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


def _run(args, *, cwd, timeout=300, **env_extra):
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **env_extra}  # nothing from the clone
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: the build writes build/ and *.egg-info, and must not do so in the clone
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", tmp / "dist", src], cwd=tmp)
    wheel, = (tmp / "dist").glob("soda_plugin-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh venv with only the wheel installed; this venv's site-packages supply the dependencies."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    python = venv / "bin" / "python"
    # Installed before the .pth below exists, so pip sees no soda-plugin already installed (the
    # editable one) and touches nothing outside the fresh venv.
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
         cwd=venv.parent)
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=venv.parent).stdout.strip())
    # Plain path lines: the directories join sys.path after the venv's own site-packages, and
    # their .pth files (the editable install's finder among them) are not run.
    (purelib / "zz_soda_test_dependencies.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    return venv


def test_wheel_carries_the_recipes_deepspeed_json_and_entry_points(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = {f"soda_plugin/recipes/{p.name}" for p in (ROOT / "recipes").glob("*.yml")}
    deepspeed = {f"soda_plugin/recipes/deepspeed/{p.name}" for p in (ROOT / "recipes" / "deepspeed").glob("*.json")}
    assert "soda_plugin/recipes/qwen7b_soda.yml" in recipes and len(deepspeed) == 2
    assert recipes | deepspeed <= names
    assert {"soda_plugin/cli/main.py", "soda_plugin/recipe_files.py", "soda_plugin/judge/templates/pairwise_v1.txt"} <= names
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
