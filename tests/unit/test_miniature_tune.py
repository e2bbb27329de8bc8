"""The validation sweep: its knobs reach the training configs, shared work is keyed by the
settings that make it, and its report reads validation answers only."""

from dataclasses import replace
from pathlib import Path

import pytest

from soda_plugin.miniature.pipeline import q0_name, seqkd_config, soda_config
from soda_plugin.miniature.settings import mode_settings
from soda_plugin.miniature.tune import GRID, Variant, seqkd_key, warmup_key, write_sweep_report


@pytest.fixture
def full(tmp_path):
    return mode_settings(False, tmp_path / "tune", seeds=(0, 1), ablation=False)


def test_budgets_have_enough_test_prompts_and_ablate_where_they_say(tmp_path):
    from soda_plugin.miniature.settings import budget_settings

    full = mode_settings(False, tmp_path)
    assert full.budget == "full" and full.seeds == (0, 1) and full.ablation_seeds == (0,)
    assert full.n_test >= 200 and full.n_val >= 200 and full.total_steps == full.warmup_steps + full.dpo_steps
    assert mode_settings(False, tmp_path, ablation_seeds=(1,)).ablation_seeds == (1,)
    with pytest.raises(ValueError, match="not training seeds"):
        mode_settings(False, tmp_path, ablation_seeds=(7,))
    long = budget_settings("long", tmp_path)
    assert long.ablation_seeds == long.seeds and len(long.seeds) > len(full.seeds) and long.total_steps > full.total_steps
    assert mode_settings(True, tmp_path).quick and budget_settings("quick", tmp_path).n_test < full.n_test
    with pytest.raises(ValueError, match="unknown budget"):
        budget_settings("huge", tmp_path)


def test_variant_knobs_reach_the_soda_and_seqkd_configs(full, tmp_path):
    variant = Variant("v", warmup_steps=6, dpo_steps=12, beta=0.5, dpo_learning_rate=5e-5, warmup_learning_rate=1e-4)
    settings = variant.apply(full)
    soda = soda_config(settings, 1, tmp_path / "pairs", tmp_path / "pairs", tmp_path / "soda", tmp_path / "warmup")
    assert soda["trl"]["beta"] == 0.5 and soda["learning_rate"] == 5e-5 and soda["max_steps"] == 12
    assert soda["soda"]["warmup"]["learning_rate"] == 1e-4 and soda["soda"]["warmup"]["max_steps"] == 6
    seqkd = seqkd_config(settings, 1, tmp_path / "teacher.jsonl", tmp_path / "seqkd", tmp_path / "warmup")
    # SeqKD continues SODA's warmup for SODA's D DPO steps: the same W + D steps in all.
    assert seqkd["base_model"] == str(tmp_path / "warmup") == soda["soda"]["warmup"]["output_dir"]
    assert seqkd["learning_rate"] == 1e-4 and seqkd["max_steps"] == soda["max_steps"] == 12 and seqkd["seed"] == 1
    recipe = soda_config(full, 1, tmp_path / "p", tmp_path / "p", tmp_path / "s", tmp_path / "w")
    assert recipe["trl"]["beta"] == 0.1 and recipe["learning_rate"] == 1e-5  # None keeps the recipe's values


def test_shared_runs_are_keyed_by_what_makes_them(full):
    recipe, dpo_only, longer = (v.apply(full) for v in (
        Variant("a"), Variant("b", beta=0.5, dpo_learning_rate=1e-4), Variant("c", warmup_steps=18)))
    assert warmup_key(recipe) == warmup_key(dpo_only) == "warmup-16-lr0.0001" != warmup_key(longer)
    assert seqkd_key(recipe) == seqkd_key(dpo_only) == "seqkd-warmup-16-lr0.0001-plus8"
    assert seqkd_key(longer) == "seqkd-warmup-18-lr0.0001-plus8"
    for variant in GRID:  # every sweep point compares SODA with a SeqKD of the same total steps
        s = variant.apply(full)
        assert seqkd_key(s).startswith(f"seqkd-{warmup_key(s)}-plus{s.dpo_steps}")
    assert q0_name(recipe) == "q0" and q0_name(Variant("n", negatives=2).apply(full)) == "q0x2"
    assert len({v.name for v in GRID}) == len(GRID) and GRID[0].apply(full) == full


def test_sweep_report_puts_each_variant_beside_its_seqkd(full):
    rows = {"recipe": {"soda": ["recipe/s0", "recipe/s1"], "seqkd": ["seqkd-a/s0", "seqkd-a/s1"]}}
    matches = {"base": {"a": False, "b": False}, "recipe/s0": {"a": True, "b": False},
               "recipe/s1": {"a": True, "b": True}, "seqkd-a/s0": {"a": False, "b": False},
               "seqkd-a/s1": {"a": True, "b": False}}
    judged = {"results": [{"model": n.replace("/", "_"), "score": s} for n, s in
                          (("base", 10.0), ("recipe/s0", 30.0), ("recipe/s1", 40.0), ("seqkd-a/s0", 20.0),
                           ("seqkd-a/s1", 20.0))]}
    summary = write_sweep_report(full, [GRID[0]], rows, matches, judged, {"SODA train": 1.0})
    result = summary["results"]["recipe"]
    assert result["soda"]["exact_match"]["mean"] == 75.0 and result["seqkd"]["exact_match"]["mean"] == 25.0
    assert result["soda_minus_seqkd"]["mean"] == 50.0
    assert result["seqkd"]["judge_per_seed"] == [20.0, 20.0] and summary["results"]["base"]["exact_match"]["mean"] == 0.0
    text = Path(summary["report"]).read_text()
    assert "| recipe | recipe values | 75.0 [" in text and "2 validation prompts" in text and "| +50.0 [" in text
    assert (full.out_dir / "sweep.json").is_file()


def test_the_sweep_answers_and_judges_validation_prompts_only(full, monkeypatch):
    """run_sweep with its stages replaced by recorders: the real task files are written, and
    the test file reaches no stage but the teacher's exclusion list."""
    from contextlib import contextmanager

    import soda_plugin.miniature.teacher_server as teacher_server
    import soda_plugin.miniature.tune as tune
    import soda_plugin.smollm2 as smollm2

    calls = []

    def record(name, result):
        def stage(*args, **kwargs):
            calls.append((name, [a for a in (*args, *kwargs.values()) if isinstance(a, Path)], repr((args, kwargs))))
            return result(*args) if callable(result) else result
        return stage

    @contextmanager
    def teacher(log):
        yield "http://127.0.0.1:1/v1"

    monkeypatch.setattr(smollm2, "convert_smollm2", lambda path: path)
    monkeypatch.setattr(teacher_server, "running_teacher", teacher)
    monkeypatch.setattr(tune, "collect_teacher", record("teacher", lambda url, prompts, out, *rest: out))
    monkeypatch.setattr(tune, "snapshot", record("snapshot", lambda model, prompts, out, *rest: out))
    monkeypatch.setattr(tune, "build_pairs", record("pairs", lambda teacher_file, snap, out, *rest: out))
    monkeypatch.setattr(tune, "train_once", record("train", lambda name, cfg, s: Path(cfg["output_dir"])))
    monkeypatch.setattr(tune, "answer_prompts", record(
        "answer", lambda models, prompts, s: {n: s.out_dir / "eval" / "answers" / n.replace("/", "_") for n in models}))
    monkeypatch.setattr(tune, "judge_models", record("judge", {}))
    monkeypatch.setattr(tune, "exact_match_by_prompt", record("match", {}))
    monkeypatch.setattr(tune, "_exact_match", lambda answers, prompts: 0.0)
    monkeypatch.setattr(tune, "write_sweep_report", lambda *args: {"table": "", "report": None})

    tune.run_sweep(replace(full, seeds=(0,)), [GRID[0], GRID[1]])
    data = full.out_dir / "data"
    test_file, val_file = data / "test.jsonl", data / "val.jsonl"
    assert test_file.is_file() and val_file.is_file()
    stages = {name for name, _, _ in calls}
    assert {"teacher", "snapshot", "pairs", "train", "answer", "judge", "match"} <= stages
    for name, paths, text in calls:
        if name == "teacher":
            assert paths[-2:] == [test_file, paths[-1]]  # only as the prompts the teacher must never see
        else:  # configs included: no stage reads the test prompts
            assert str(test_file) not in text, f"{name} got the test prompts: {paths}"
        if name in ("answer", "judge", "match"):
            assert val_file in paths
