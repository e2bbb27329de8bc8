"""tools/share.py: the bundle, the card, the dry run, the push, and no token anywhere."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from soda_plugin.share import model_card, plan_bundle, publish
from soda_plugin.share.publish import SecretInBundleError

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "qwen7b_soda.yml"
SECRET = "hf_SECRETabcdef0123456789"


@pytest.fixture
def model_dir(tmp_path):
    out = tmp_path / "qwen7b_soda"
    out.mkdir()
    for name, body in {"model.safetensors": b"\0" * 16, "config.json": b"{}", "tokenizer.json": b"{}",
                       "chat_template.jinja": b"{{ x }}", "debug.log": b"log", "README.md": b"axolotl card",
                       "soda_stage.json": b"{}"}.items():
        (out / name).write_bytes(body)
    (out / "checkpoint-500").mkdir()
    (out / "warmup").mkdir()
    return out


@pytest.fixture
def scores(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"soda": {"lmsys": 51.5, "vicuna": 51.4}}))
    return path


def test_bundle_holds_model_files_recipe_and_its_deepspeed_json(model_dir):
    files = {f.path_in_repo: f.local for f in plan_bundle(model_dir, RECIPE)}
    assert set(files) == {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
                          "recipe/qwen7b_soda.yml", "recipe/deepspeed/zero2.json"}
    assert files["recipe/deepspeed/zero2.json"] == ROOT / "recipes" / "deepspeed" / "zero2.json"
    # The recipe's relative `deepspeed:` path is valid inside the bundle.
    assert "recipe/" + yaml.safe_load(RECIPE.read_text())["deepspeed"] in files


def test_bundle_refuses_a_folder_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="no `\\*.safetensors` weights"):
        plan_bundle(tmp_path, RECIPE)


def _adapter_folder(path, base):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
    (path / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    # Axolotl also writes the model config and, for `rl` + adapter, the PEFT-keyed model.
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"\0" * 16)
    return path


@pytest.mark.parametrize("merged", [True, False])
def test_bundle_refuses_a_lora_adapter_on_a_local_base_and_names_the_merged_model(tmp_path, merged):
    out = _adapter_folder(tmp_path / "llama8b_lora_soda", str(tmp_path / "llama8b_lora_soda" / "warmup" / "merged"))
    if merged:
        (out / "merged").mkdir()
        (out / "merged" / "model.safetensors").write_bytes(b"\0" * 16)
    hint = f"pass {out / 'merged'}, the full model" if merged else f"{out / 'merged'} does not exist"
    with pytest.raises(ValueError, match=f"holds a LoRA adapter on .*warmup/merged.*, not a full model.*; {hint}"):
        plan_bundle(out, RECIPE)
    if merged:
        assert {f.path_in_repo for f in plan_bundle(out / "merged", RECIPE)} >= {"model.safetensors"}


def test_bundle_takes_an_adapter_on_a_hub_base(tmp_path):
    out = _adapter_folder(tmp_path / "run", "Qwen/Qwen2.5-7B-Instruct")
    assert {"adapter_model.safetensors", "adapter_config.json"} <= {f.path_in_repo for f in plan_bundle(out, RECIPE)}


def test_card_names_teacher_student_snapshot_recipe_and_scores(scores):
    card = model_card(repo_id="me/qwen-soda", recipe_path=RECIPE, teacher="gpt-5-chat",
                      scores=json.loads(scores.read_text()))
    assert card.startswith("---\nbase_model: Qwen/Qwen2.5-7B-Instruct\n")
    assert "- Teacher: gpt-5-chat" in card and "- Student (base): Qwen/Qwen2.5-7B-Instruct" in card
    assert "`temperature`=1.0" in card and "`max_tokens`=1536" in card  # snapshot settings
    assert "- Recipe: `recipe/qwen7b_soda.yml` with `recipe/deepspeed/zero2.json`" in card
    assert "`beta`=0.1" in card and "`num_epochs`=1" in card and "`max_grad_norm`=0.2" in card
    assert '"lmsys": 51.5' in card


def _run_tool(*args, env_extra):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, str(ROOT / "tools" / "share.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_dry_run_prints_files_and_card_and_never_the_token(model_dir, scores):
    run = _run_tool("--model-dir", str(model_dir), "--recipe", str(RECIPE), "--repo", "me/qwen-soda",
                    "--teacher", "gpt-5-chat", "--scores", str(scores), "--dry-run", env_extra={"HF_TOKEN": SECRET})
    assert run.returncode == 0, run.stderr
    assert "would push to https://huggingface.co/me/qwen-soda" in run.stdout
    for path in ("model.safetensors", "recipe/qwen7b_soda.yml", "recipe/deepspeed/zero2.json", "README.md"):
        assert f"  {path}  <- " in run.stdout
    assert "debug.log" not in run.stdout and "checkpoint-500" not in run.stdout
    assert "--- README.md ---\n---\nbase_model: Qwen/Qwen2.5-7B-Instruct" in run.stdout
    assert SECRET not in run.stdout + run.stderr


def test_push_uses_the_environment_token_and_one_commit(model_dir, tmp_path, monkeypatch):
    from fake_hub import cached_login_and_fake_hub

    hub = cached_login_and_fake_hub(tmp_path, monkeypatch)  # HF_TOKEN wins over a cached login
    monkeypatch.setenv("HF_TOKEN", SECRET)
    files = plan_bundle(model_dir, RECIPE)
    url = publish("me/qwen-soda", files, "card", private=True)
    assert url == "https://huggingface.co/me/qwen-soda"
    assert hub.calls[:2] == [("HfApi", SECRET),
                             ("create_repo", "me/qwen-soda", {"repo_type": "model", "private": True, "exist_ok": True})]
    (name, repo, paths), = hub.calls[2:]
    assert (name, repo) == ("create_commit", "me/qwen-soda")
    assert "README.md" in paths and "recipe/deepspeed/zero2.json" in paths


def test_push_without_token_fails_before_any_call_even_with_a_cached_login(model_dir, tmp_path, monkeypatch):
    from fake_hub import cached_login_and_fake_hub

    hub = cached_login_and_fake_hub(tmp_path, monkeypatch)
    with pytest.raises(PermissionError, match="set `HF_TOKEN`"):
        publish("me/x", plan_bundle(model_dir, RECIPE), "card")
    assert hub.calls == []


def test_soda_share_without_token_exits_naming_it_before_any_call(model_dir, tmp_path, monkeypatch, capsys):
    from fake_hub import CACHED_TOKEN, cached_login_and_fake_hub

    from soda_plugin.cli.main import main

    hub = cached_login_and_fake_hub(tmp_path, monkeypatch)
    with pytest.raises(SystemExit, match=r"^soda share: set `HF_TOKEN` \(a Hub write token\)"):
        main(["share", "--model-dir", str(model_dir), "--recipe", str(RECIPE), "--repo", "me/qwen-soda",
              "--teacher", "gpt-5-chat"])
    assert hub.calls == []
    out = capsys.readouterr()
    assert CACHED_TOKEN not in out.out + out.err


def test_a_recipe_holding_the_token_is_refused(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    recipe = tmp_path / "leaky.yml"
    recipe.write_text(RECIPE.read_text().replace("seed: 42", f"seed: 42\nhub_token: {SECRET}"))
    (tmp_path / "deepspeed").mkdir()
    (tmp_path / "deepspeed" / "zero2.json").write_text("{}")
    with pytest.raises(SecretInBundleError, match="recipe/leaky.yml") as info:
        publish("me/x", plan_bundle(model_dir, recipe), "card", dry_run=True)
    assert SECRET not in str(info.value)


def test_card_renders_a_judge_results_document_as_its_table():
    document = {
        "protocol": {"judge_model": "gpt-4o", "template": "pairwise", "template_sha": "abc123", "ci_level": 0.95,
                     "bootstrap_resamples": 1000, "seed": 0},
        "models": ["soda"], "benchmarks": ["lmsys"],
        "results": [{"model": "soda", "benchmark": "lmsys", "score": 51.5, "ci_low": 50.9, "ci_high": 52.1,
                     "n_prompts": 479, "n_scored": 479, "excluded": {}}],
    }
    card = model_card(repo_id="me/qwen-soda", recipe_path=RECIPE, teacher="gpt-5-chat", scores=document)
    assert "## Judge scores" in card and "| soda (this model) | 51.5 [50.9, 52.1] |" in card
    assert "all 479 prompts scored for every row" in card and "no Base or SeqKD row" in card
