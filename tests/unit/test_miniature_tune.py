"""The validation sweep: its knobs reach the training configs, shared work is keyed by the
settings that make it, and its report reads validation answers only."""

from pathlib import Path

import pytest

from soda_plugin.miniature.pipeline import q0_name, seqkd_config, soda_config
from soda_plugin.miniature.settings import mode_settings
from soda_plugin.miniature.tune import GRID, Variant, seqkd_key, warmup_key, write_sweep_report


@pytest.fixture
def full(tmp_path):
    return mode_settings(False, tmp_path / "tune", seeds=(0, 1), ablation=False)


def test_full_mode_ablates_on_every_seed_and_validates_on_40_prompts(tmp_path):
    settings = mode_settings(False, tmp_path)
    assert settings.ablation_seeds == settings.seeds == (0, 1, 2) and settings.n_val == 40
    assert mode_settings(False, tmp_path, ablation_seeds=(1,)).ablation_seeds == (1,)


def test_variant_knobs_reach_the_soda_and_seqkd_configs(full, tmp_path):
    variant = Variant("v", warmup_steps=6, dpo_steps=12, beta=0.5, dpo_learning_rate=5e-5, warmup_learning_rate=1e-4)
    settings = variant.apply(full)
    soda = soda_config(settings, 1, tmp_path / "pairs", tmp_path / "pairs", tmp_path / "soda", tmp_path / "warmup")
    assert soda["trl"]["beta"] == 0.5 and soda["learning_rate"] == 5e-5 and soda["max_steps"] == 12
    assert soda["soda"]["warmup"]["learning_rate"] == 1e-4 and soda["soda"]["warmup"]["max_steps"] == 6
    seqkd = seqkd_config(settings, 1, tmp_path / "teacher.jsonl", tmp_path / "seqkd")
    assert seqkd["learning_rate"] == 1e-4 and seqkd["max_steps"] == 18 and seqkd["seed"] == 1
    recipe = soda_config(full, 1, tmp_path / "p", tmp_path / "p", tmp_path / "s", tmp_path / "w")
    assert recipe["trl"]["beta"] == 0.1 and recipe["learning_rate"] == 1e-5  # None keeps the recipe's values


def test_shared_runs_are_keyed_by_what_makes_them(full):
    recipe, dpo_only, longer = (v.apply(full) for v in (
        Variant("a"), Variant("b", beta=0.5, dpo_learning_rate=1e-4), Variant("c", warmup_steps=18)))
    assert warmup_key(recipe) == warmup_key(dpo_only) == "warmup-12-lr5e-05" != warmup_key(longer)
    assert seqkd_key(recipe) == seqkd_key(dpo_only) == "seqkd-18-lr5e-05" and seqkd_key(longer) == "seqkd-24-lr5e-05"
    assert q0_name(recipe) == "q0" and q0_name(Variant("n", negatives=2).apply(full)) == "q0x2"
    assert len({v.name for v in GRID}) == len(GRID) and GRID[0].apply(full) == full


def test_sweep_report_puts_each_variant_beside_its_seqkd(full):
    rows = {"recipe": {"soda": ["recipe/s0", "recipe/s1"], "seqkd": ["seqkd-18/s0", "seqkd-18/s1"]}}
    matches = {"base": {"a": False, "b": False}, "recipe/s0": {"a": True, "b": False},
               "recipe/s1": {"a": True, "b": True}, "seqkd-18/s0": {"a": False, "b": False},
               "seqkd-18/s1": {"a": True, "b": False}}
    judged = {"results": [{"model": n.replace("/", "_"), "score": s} for n, s in
                          (("base", 10.0), ("recipe/s0", 30.0), ("recipe/s1", 40.0), ("seqkd-18/s0", 20.0),
                           ("seqkd-18/s1", 20.0))]}
    summary = write_sweep_report(full, [GRID[0]], rows, matches, judged, {"SODA train": 1.0})
    result = summary["results"]["recipe"]
    assert result["soda"]["exact_match"]["per_seed"] == [50.0, 100.0] and result["soda"]["exact_match"]["mean"] == 75.0
    assert result["seqkd"]["judge"]["mean"] == 20.0 and summary["results"]["base"]["exact_match"]["mean"] == 0.0
    text = Path(summary["report"]).read_text()
    assert "| recipe | recipe values | 75.0 [" in text and "40 validation prompts" in text
    assert (full.out_dir / "sweep.json").is_file()
