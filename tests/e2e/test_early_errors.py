"""`soda fetch recipes`, then `axolotl train` on a machine without GPUs or without the data:
one line in soda's words naming what is missing, before DeepSpeed, a process group, a model
or an output folder exists."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(torch.cuda.is_available(), reason="the refusals are those of a machine without CUDA")]

BIN = Path(sys.executable).parent
ERROR_LINE = "[ERROR] [soda_plugin.train.preflight] soda: "


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """A user's folder after `soda fetch recipes`: the recipes, their DeepSpeed JSONs, no data."""
    folder = tmp_path_factory.mktemp("user")
    subprocess.run([str(BIN / "soda"), "fetch", "recipes"], cwd=folder, check=True, timeout=120,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert (folder / "recipes" / "llama8b_soda.yml").is_file()
    return folder


def _train(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    env.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    run = subprocess.run([str(BIN / "axolotl"), "train", *args], cwd=folder, env=env, text=True, timeout=600,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(run.stdout[-3000:])
    return run


def _soda_line(output: str) -> str:
    lines = [line for line in output.splitlines() if ERROR_LINE in line]
    assert len(lines) == 1, output[-4000:]
    return lines[0].split(ERROR_LINE, 1)[1]


def test_gpu_recipe_on_a_cpu_machine_names_the_cpu_recipe(fetched):
    """The README's command as a user types it: Axolotl's default launcher (`accelerate launch`)."""
    run = _train(fetched, "recipes/llama8b_soda.yml")
    assert run.returncode != 0
    assert _soda_line(run.stdout) == (
        "`llama8b_soda.yml` is a GPU recipe (`deepspeed: deepspeed/zero2.json`, `bf16: true`, `tf32: true`) and "
        "this machine has no CUDA device; on a CPU, train recipes/smollm2_cpu_soda.yml instead "
        "(`axolotl train recipes/smollm2_cpu_soda.yml --launcher python`).")
    assert "MASTER_ADDR" not in run.stdout and "ProcessGroupNCCL" not in run.stdout
    assert not (fetched / "outputs").exists(), "nothing is written before the refusal"


@pytest.mark.parametrize("recipe, where, writer", [
    ("smollm2_cpu_soda.yml", "`datasets[0].path: ./outputs/miniature/pairs/q0/data` does not exist",
     "`soda pairs --teacher TEACHER.jsonl --snapshot Q0_DIR --recipe recipes/smollm2_cpu_soda.yml "
     "--out ./outputs/miniature/pairs/q0` writes it"),
    ("smollm2_cpu_gad.yml", "`datasets[0].path: ./outputs/miniature/teacher.jsonl` does not exist",
     "`soda teacher --prompts PROMPTS --model TEACHER --out ./outputs/miniature/teacher.jsonl` writes it"),
])
def test_recipe_without_its_data_names_the_soda_command_that_writes_it(fetched, recipe, where, writer):
    run = _train(fetched, f"recipes/{recipe}", "--launcher", "python")
    assert run.returncode != 0
    line = _soda_line(run.stdout)
    assert line.startswith(f"`{recipe}` reads data that is not built yet: {where} (looked in {fetched}); ")
    assert line.endswith(f"{writer}.")
    assert "could not be loaded" not in run.stdout
    assert not (fetched / "outputs").exists(), "nothing is written before the refusal"
