"""The model card tells the truth (issue 14, item 5): the base model's Hub id (never a local
path), this model beside Base and SeqKD on the same prompts, an install line that works
without PyPI, and the launch command the recipe's header gives."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from soda_plugin.share import card as card_module
from soda_plugin.share import model_card

ROOT = Path(__file__).resolve().parents[2]
CPU_RECIPE = ROOT / "recipes" / "smollm2_cpu_soda.yml"
GPU_RECIPE = ROOT / "recipes" / "qwen7b_soda.yml"
# What soda_plugin.smollm2.convert_smollm2 writes (transformers keeps the GGUF's general.name).
SMOLLM2_CONFIG = {"_model_name_or_path": "Smollm2 135M 8k Lc100K Mix1 Ep2", "model_type": "llama"}
PROTOCOL = {"judge_model": "program-teacher", "template": "pairwise", "template_sha": "abc", "ci_level": 0.95,
            "bootstrap_resamples": 200, "seed": 0}
# A miniature run: Base, SODA and SeqKD per seed, and an ablation.
MODELS = ["base", "soda_s0", "seqkd_s0", "soda-sibling_s0", "soda_s1", "seqkd_s1"]


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def section(card: str, title: str) -> str:
    return card.split(f"## {title}\n")[1].split("\n## ")[0]


@pytest.fixture
def miniature(tmp_path):
    """The miniature's SODA recipe, its base the converted SmolLM2 folder, a trained model."""
    base = tmp_path / "outputs" / "models" / "SmolLM2-135M-Instruct"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    recipe = recipes / CPU_RECIPE.name
    recipe.write_text(CPU_RECIPE.read_text().replace("base_model: ./outputs/models/SmolLM2-135M-Instruct",
                                                     f"base_model: {base}"))
    model = tmp_path / "outputs" / "miniature" / "runs" / "seed1" / "soda"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"\0" * 16)
    (model / "config.json").write_text("{}")
    return {"base": base, "recipe": recipe, "model": model}


def _judge_run(out: Path) -> Path:
    """results.json + prompt_scores.jsonl: soda_s1 missed prompt p3; base missed p4."""
    scores = {"base": [0.3, 0.2, 0.4, None], "soda_s0": [0.5, 0.5, 0.5, 0.5], "seqkd_s0": [0.4, 0.4, 0.4, 0.4],
              "soda-sibling_s0": [0.45, 0.45, 0.45, 0.45], "soda_s1": [0.6, 0.4, None, 0.5],
              "seqkd_s1": [0.2, 0.4, 0.9, 0.6]}
    rows, results = [], []
    for model, values in scores.items():
        kept = [v for v in values if v is not None]
        rows += [{"model": model, "benchmark": "miniature", "prompt_id": f"p{i + 1}", "score": v}
                 for i, v in enumerate(values) if v is not None]
        results.append({"model": model, "benchmark": "miniature", "score": 100 * sum(kept) / len(kept),
                        "ci_low": 0.0, "ci_high": 100.0, "n_prompts": 4, "n_scored": len(kept),
                        "excluded": {"no_student_answer": 4 - len(kept)} if len(kept) < 4 else {}})
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"protocol": PROTOCOL, "models": MODELS,
                                                  "benchmarks": ["miniature"], "results": results}))
    (out / "prompt_scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out / "results.json"


def _card(recipe, **kwargs):
    return model_card(repo_id="me/smol-soda", recipe_path=recipe, teacher="program-teacher", **kwargs)


# 1. base_model -------------------------------------------------------------------------

def test_base_model_is_the_hub_id_of_the_converted_smollm2_not_its_local_path(miniature):
    card = _card(miniature["recipe"])
    assert front_matter(card)["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert str(miniature["base"]) not in card.split("---\n")[1]
    assert "- Student (base): HuggingFaceTB/SmolLM2-135M-Instruct (trained from the local folder" in card


def test_base_model_key_is_left_out_for_an_unrecorded_local_folder_and_set_by_base_model_id(miniature):
    (miniature["base"] / "config.json").write_text("{}")
    card = _card(miniature["recipe"])
    assert "base_model" not in front_matter(card) and str(miniature["base"]) not in card.split("---\n")[1]
    assert "its Hub id is not recorded: pass `--base-model-id`" in card
    named = _card(miniature["recipe"], base_model_id="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert front_matter(named)["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ValueError, match="not a Hub model id"):
        _card(miniature["recipe"], base_model_id=str(miniature["base"]))
    # A Hub recipe keeps its id.
    assert front_matter(_card(GPU_RECIPE))["base_model"] == "Qwen/Qwen2.5-7B-Instruct"


# 2. judge table ------------------------------------------------------------------------

def _table_rows(card: str) -> dict[str, str]:
    lines = [line for line in section(card, "Judge scores").splitlines() if line.startswith("| ")][1:]
    return {line.split(" | ")[0][2:]: line.split(" | ")[1].rstrip(" |") for line in lines}


def test_judge_table_is_this_model_beside_base_and_seqkd_of_its_seed_on_the_paired_prompts(tmp_path, miniature):
    from soda_plugin.share.scores import read_prompt_scores

    results = _judge_run(tmp_path / "judge")
    card = _card(miniature["recipe"], scores=json.loads(results.read_text()), model_name="soda_s1",
                 prompt_scores=read_prompt_scores(results.parent / "prompt_scores.jsonl"))
    rows = _table_rows(card)
    assert list(rows) == ["soda_s1 (this model)", "Base (q0): base", "SeqKD: seqkd_s1"]
    # Paired: only p1 and p2 were scored for all three (soda_s1 lacks p3, base lacks p4).
    assert rows["soda_s1 (this model)"].startswith("50.0 [")
    assert rows["Base (q0): base"].startswith("25.0 [")
    assert rows["SeqKD: seqkd_s1"].startswith("30.0 [")  # not its own 52.5 over four prompts
    assert "the same 2 of 4 prompts for every row" in card
    assert "soda_s0" not in rows and "soda-sibling_s0 |" not in card


def test_judge_table_says_when_only_unpaired_aggregates_exist(tmp_path, miniature):
    from soda_plugin.judge.report import json_table

    document = json.loads(_judge_run(tmp_path / "judge").read_text())
    # results.json, and the scores.json `soda judge table` writes from it: the same card.
    for scores in (document, json.loads(json_table(document))):
        card = _card(miniature["recipe"], scores=scores, model_name="soda_s1")
        assert list(_table_rows(card)) == ["soda_s1 (this model)", "Base (q0): base", "SeqKD: seqkd_s1"]
        assert "**not on the same prompts**" in card and "`soda_s1` 3 of 4" in card and "`seqkd_s1` 4 of 4" in card


def test_judge_table_needs_a_model_name_that_is_in_the_results(tmp_path, miniature):
    results = json.loads(_judge_run(tmp_path / "judge").read_text())
    with pytest.raises(ValueError, match="pass `--model-name`"):
        _card(miniature["recipe"], scores=results)
    with pytest.raises(ValueError, match="`--model-name soda_s7` is not a model of the judge results; they hold "
                                         "`base`, `soda_s0`"):
        _card(miniature["recipe"], scores=results, model_name="soda_s7")


# 3. install line -----------------------------------------------------------------------

def _install(card: str) -> str:
    return next(line for line in section(card, "Reproduce").splitlines() if line.startswith("pip install"))


def test_install_line_names_the_repository_or_the_wheel_never_a_bare_pypi_name(tmp_path, miniature, monkeypatch):
    from soda_plugin import __version__

    monkeypatch.setattr(card_module, "_REPO_ROOT", tmp_path, raising=False)  # a clone whose pyproject has no [project.urls]
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "soda-plugin"\nversion = "{__version__}"\n')
    wheel = _install(_card(miniature["recipe"]))
    assert wheel.startswith(f'pip install "./soda_plugin-{__version__}-py3-none-any.whl"')
    assert "pip install soda-plugin " not in _card(miniature["recipe"])
    given = _install(_card(miniature["recipe"], source_repo_url="https://github.com/me/soda"))
    assert given.startswith('pip install "git+https://github.com/me/soda"')
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "soda-plugin"\nversion = "{__version__}"\n'
                                             '[project.urls]\nRepository = "https://github.com/org/soda"\n')
    assert _install(_card(miniature["recipe"])).startswith('pip install "git+https://github.com/org/soda"')
    # A DeepSpeed recipe needs the extra.
    assert _install(_card(GPU_RECIPE)).startswith('pip install "soda-plugin[deepspeed] @ git+https://github.com/org/soda"')


# 4. reproduce command ------------------------------------------------------------------

def _commands(card: str) -> list[str]:
    return section(card, "Reproduce").split("```bash\n")[1].split("```")[0].splitlines()


def test_reproduce_is_the_launch_command_of_the_recipes_own_header(tmp_path, miniature):
    cpu = _commands(_card(miniature["recipe"]))
    assert cpu[-1] == "axolotl train recipe/smollm2_cpu_soda.yml --launcher python"
    assert not any("num_processes" in c for c in cpu)
    assert cpu[1] == "hf download me/smol-soda --include 'recipe/*' --local-dir ."  # huggingface-cli no longer works
    gpu = _commands(_card(GPU_RECIPE))
    assert gpu[-1] == "accelerate launch --multi_gpu --num_processes 8 -m axolotl.cli.train recipe/qwen7b_soda.yml"
    # No command in the header (a config the miniature wrote): Axolotl's own.
    bare = tmp_path / "soda_s1.yml"
    bare.write_text(yaml.safe_dump(yaml.safe_load(miniature["recipe"].read_text())))
    assert _commands(_card(bare))[-1] == "axolotl train recipe/soda_s1.yml"


# All four, as a new user meets them: the dry run of tools/share.py -------------------------

def _share(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(ROOT / "tools" / "share.py"), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_dry_run_on_a_miniature_model_writes_a_truthful_card(tmp_path, miniature):
    results = _judge_run(tmp_path / "judge")
    common = ["--model-dir", miniature["model"], "--recipe", miniature["recipe"], "--repo", "me/smol-soda",
              "--teacher", "program-teacher", "--scores", results, "--dry-run"]
    ambiguous = _share(*common)
    assert ambiguous.returncode != 0 and "pass `--model-name`" in ambiguous.stderr
    assert "Traceback" not in ambiguous.stderr
    run = _share(*common, "--model-name", "soda_s1", "--source-url", "https://github.com/me/soda")
    assert run.returncode == 0, run.stderr
    card = run.stdout.split("--- README.md ---\n", 1)[1]
    assert front_matter(card)["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert list(_table_rows(card)) == ["soda_s1 (this model)", "Base (q0): base", "SeqKD: seqkd_s1"]
    assert "the same 2 of 4 prompts for every row" in card  # prompt_scores.jsonl found beside results.json
    assert _install(card).startswith('pip install "git+https://github.com/me/soda"')
    assert _commands(card)[-1] == "axolotl train recipe/smollm2_cpu_soda.yml --launcher python"
