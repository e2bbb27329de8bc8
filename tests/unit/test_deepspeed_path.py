"""A recipe's `deepspeed:` path resolves from any working directory, and from a URL."""

import shutil
from pathlib import Path

import pytest
import yaml

from recipe_overrides import RECIPES_DIR, cpu_recipe, write_fixtures
from soda_plugin.train.deepspeed_path import resolve_deepspeed_path

ZERO2 = (RECIPES_DIR / "deepspeed" / "zero2.json").resolve()


def test_relative_path_resolves_next_to_the_recipe_copy(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    (bundle / "deepspeed").mkdir(parents=True)
    shutil.copy(ZERO2, bundle / "deepspeed" / "zero2.json")
    monkeypatch.chdir(tmp_path)
    cfg = {"deepspeed": "deepspeed/zero2.json", "axolotl_config_path": str(bundle / "r.yml")}
    resolve_deepspeed_path(cfg)
    assert cfg["deepspeed"] == str((bundle / "deepspeed" / "zero2.json").resolve())


def test_recipe_alone_outside_the_repo_falls_back_to_the_shipped_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = {"deepspeed": "deepspeed/zero2.json", "axolotl_config_path": str(tmp_path / "alone" / "r.yml")}
    resolve_deepspeed_path(cfg)
    assert cfg["deepspeed"] == str(ZERO2)


def test_working_directory_wins_as_in_axolotl(tmp_path, monkeypatch):
    (tmp_path / "deepspeed").mkdir()
    (tmp_path / "deepspeed" / "zero2.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    cfg = {"deepspeed": "deepspeed/zero2.json"}
    resolve_deepspeed_path(cfg)
    assert cfg["deepspeed"] == str((tmp_path / "deepspeed" / "zero2.json").resolve())


def test_missing_json_names_every_place_looked_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"`deepspeed: deepspeed/zero9.json` was not found; looked in .*recipes"):
        resolve_deepspeed_path({"deepspeed": "deepspeed/zero9.json"})


def test_dict_and_absent_values_are_left_alone():
    cfg = {"deepspeed": {"zero_optimization": {"stage": 2}}}
    resolve_deepspeed_path(cfg)
    assert cfg["deepspeed"] == {"zero_optimization": {"stage": 2}}
    resolve_deepspeed_path({})


def test_recipe_fetched_by_url_loads_with_its_deepspeed_json(tiny_model_dirs, tmp_path, monkeypatch):
    """`axolotl train https://…/qwen7b_soda.yml`: Axolotl downloads the YAML alone into a
    temporary folder (`check_remote_config`); the served text is the recipe with only the
    documented CPU swaps. The plugin resolves `deepspeed:` before Axolotl reads it."""
    import requests

    import soda_plugin.train.chain as chain
    from axolotl.cli import config as axolotl_config

    cfg = cpu_recipe(RECIPES_DIR / "qwen7b_soda.yml", tiny_model_dirs, write_fixtures(tmp_path / "data"), tmp_path,
                     train=True)
    served = yaml.safe_dump(cfg).encode()

    class Response:
        content = served

        def raise_for_status(self):
            pass

    monkeypatch.setattr(requests, "get", lambda url, timeout: Response())
    # a GPU recipe: soda's preflight would stop it on this CPU machine before the path is resolved
    monkeypatch.setattr("soda_plugin.train.preflight._has_cuda", lambda: True)
    monkeypatch.chdir(tmp_path)
    local = axolotl_config.check_remote_config("https://example.org/soda/recipes/qwen7b_soda.yml")
    assert Path(local).parent != RECIPES_DIR and not (Path(local).parent / "deepspeed").exists()
    # Axolotl's `prepare_plugins` calls `SODAPlugin.register` (where the path is resolved);
    # `load_cfg` itself is not run because it would start DeepSpeed (see recipe_overrides).
    raw = axolotl_config.DictDefault(yaml.safe_load(Path(local).read_text()))
    raw.axolotl_config_path = local
    axolotl_config.prepare_plugins(raw)
    assert raw.deepspeed == str(ZERO2)
    assert chain._RAW_CONFIGS[str(local)]["deepspeed"] == str(ZERO2)  # the warmup inherits it
