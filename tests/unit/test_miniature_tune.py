"""The validation sweep: its knobs reach the training configs, shared work is keyed by the
settings that make it, and its report reads validation answers only."""

from dataclasses import replace
from pathlib import Path

import pytest

from soda_plugin.miniature.pipeline import dpo_config, sft_config, warmup_checkpoint
from soda_plugin.miniature.settings import mode_settings
from soda_plugin.miniature.tune import (DPO_GRID, SFT_GRID, DpoVariant, SftVariant, pick, prune_checkpoints,
                                        save_every, write_sweep_report)


@pytest.fixture
def full(tmp_path):
    return mode_settings(False, tmp_path / "tune", seeds=(0, 1), ablation=False)


def test_budgets_have_enough_test_prompts_and_seeds(tmp_path):
    from soda_plugin.miniature.settings import budget_settings

    full = mode_settings(False, tmp_path)
    assert full.budget == "full" and len(full.seeds) >= 4 and full.ablation_seeds == (0,)
    assert full.n_test >= 200 and full.n_val >= 200 and full.total_steps == full.warmup_steps + full.dpo_steps
    assert mode_settings(False, tmp_path, ablation_seeds=(1,)).ablation_seeds == (1,)
    with pytest.raises(ValueError, match="not training seeds"):
        mode_settings(False, tmp_path, ablation_seeds=(7,))
    long = budget_settings("long", tmp_path)
    assert long.ablation_seeds == long.seeds and len(long.seeds) >= 6 and long.total_steps > full.total_steps
    assert mode_settings(True, tmp_path).quick and budget_settings("quick", tmp_path).n_test < full.n_test
    with pytest.raises(ValueError, match="unknown budget"):
        budget_settings("huge", tmp_path)


def test_seqkd_is_one_sft_run_from_q0_and_soda_starts_from_its_step_w_save(full, tmp_path):
    settings = SftVariant("v", sft_learning_rate=2e-4, sft_scheduler="cosine").apply(full)
    sft = sft_config(settings, 1, tmp_path / "teacher.jsonl", tmp_path / "sft")
    # From q0, W + D steps, one schedule, a model-only save at step W.
    assert sft["base_model"] == str(full.model_dir) and sft["max_steps"] == full.total_steps and sft["seed"] == 1
    assert sft["learning_rate"] == 2e-4 and sft["lr_scheduler"] == "cosine"
    assert sft["save_strategy"] == "steps" and sft["save_steps"] == full.warmup_steps and sft["save_only_model"]
    recipe_sft = sft_config(full, 1, tmp_path / "teacher.jsonl", tmp_path / "sft")
    assert recipe_sft["lr_scheduler"] == "constant_with_warmup" and recipe_sft["warmup_steps"] >= 1
    assert "warmup_ratio" not in recipe_sft  # a ratio of the run's length would move with D
    qw = warmup_checkpoint(tmp_path / "sft", full.warmup_steps)
    assert qw == tmp_path / "sft" / f"checkpoint-{full.warmup_steps}"
    dpo = dpo_config(DpoVariant("d", beta=0.5, dpo_learning_rate=5e-5, warmup_steps=16).apply(full), 1,
                     tmp_path / "pairs", tmp_path / "soda", qw)
    assert dpo["base_model"] == str(qw) and "warmup" not in dpo["soda"] and dpo["rl"] == "dpo"
    assert dpo["trl"]["beta"] == 0.5 and dpo["learning_rate"] == 5e-5
    assert dpo["max_steps"] == full.total_steps - 16  # the W/D split moves, W + D does not
    recipe = dpo_config(full, 1, tmp_path / "p", tmp_path / "s", qw)
    assert recipe["trl"]["beta"] == 0.1 and recipe["learning_rate"] == 1e-5  # None keeps the recipe's values


def test_the_grids_give_both_methods_the_same_number_of_runs(full, tmp_path):
    assert len(SFT_GRID) == len(DPO_GRID) >= 3
    assert SFT_GRID[0].apply(full) == full and DPO_GRID[0].apply(full) == full
    assert all(v.apply(full).total_steps == full.total_steps for v in DPO_GRID)
    every = save_every(full, DPO_GRID)
    assert all(v.apply(full).warmup_steps % every == 0 for v in DPO_GRID)
    assert full.q0_name == "q0"
    sft = tmp_path / "sft"
    for step in (4, 8, 12, 16, 20):
        (sft / f"checkpoint-{step}").mkdir(parents=True)
    prune_checkpoints(sft, {12, 16})
    assert sorted(p.name for p in sft.iterdir()) == ["checkpoint-12", "checkpoint-16"]
    with pytest.raises(ValueError, match="tuning parity"):
        from soda_plugin.miniature.tune import run_sweep

        run_sweep(full, SFT_GRID, DPO_GRID[:1])


def test_pick_takes_the_best_and_breaks_ties_towards_the_first():
    matches = {"a": {"x": True, "y": False}, "b": {"x": True, "y": True}, "c": {"x": True, "y": True}}
    assert pick(["a", "b", "c"], matches) == "b" and pick(["a"], matches) == "a"


def test_sweep_report_puts_both_methods_in_one_table(full):
    sft, dpo = [SFT_GRID[0], SFT_GRID[1]], [DPO_GRID[0], DPO_GRID[1]]
    matches = {"base": {"a": False, "b": False}, "seqkd.recipe": {"a": True, "b": False},
               f"seqkd.{SFT_GRID[1].name}": {"a": False, "b": False}, "soda.recipe": {"a": True, "b": True},
               "soda.dpo-lr-2e-5": {"a": False, "b": True}, "qw.12": {"a": True, "b": False}}
    judged = {"results": [{"model": n, "score": 10.0 * i} for i, n in enumerate(matches)]}
    summary = write_sweep_report(full, sft, dpo, "recipe", "recipe", matches, judged, {"SFT runs": 1.0})
    results = summary["results"]
    assert results["seqkd.recipe"]["exact_match"]["mean"] == 50.0 and results["seqkd.recipe"]["chosen"]
    assert results["soda.recipe"]["exact_match"]["mean"] == 100.0 and not results["soda.dpo-lr-2e-5"]["chosen"]
    assert summary["picked_soda_minus_seqkd"]["mean"] == 50.0 and summary["chosen"] == {"seqkd": "recipe", "soda": "recipe"}
    text = Path(summary["report"]).read_text()
    assert "| SeqKD | recipe | recipe values | 50.0 [" in text and "| SODA | dpo-lr-2e-5 |" in text
    assert "2 validation runs for SeqKD's knobs, 2 for SODA's" in text and "| q_w | step 12 |" in text
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
    monkeypatch.setattr(tune, "train_concurrently", record(
        "train", lambda runs, s: {n: Path(cfg["output_dir"]) for n, cfg in runs.items()}))
    monkeypatch.setattr(tune, "answer_prompts", record(
        "answer", lambda models, prompts, s: {n: s.out_dir / "eval" / "answers" / n.replace("/", "_") for n in models}))
    monkeypatch.setattr(tune, "judge_models", record("judge", {}))
    monkeypatch.setattr(tune, "exact_match_by_prompt", record("match", {}))
    monkeypatch.setattr(tune, "write_sweep_report", lambda *args: {"table": "", "report": None})

    tune.run_sweep(replace(full, seeds=(0,)), SFT_GRID[:2], DPO_GRID[:2])
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


def test_gad_runs_from_q0_with_the_sft_runs_warmup_values_and_as_many_prompts_per_step(full, tmp_path):
    from soda_plugin.miniature.pipeline import gad_config

    settings = SftVariant("v", sft_learning_rate=2e-4, sft_scheduler="cosine").apply(full)
    gad = gad_config(settings, 1, tmp_path / "teacher.jsonl", tmp_path / "gad")
    sft = sft_config(settings, 1, tmp_path / "teacher.jsonl", tmp_path / "sft")
    dpo = dpo_config(settings, 1, tmp_path / "pairs", tmp_path / "soda", tmp_path / "qw")
    warmup, n = gad["gad"]["warmup"], gad["trl"]["num_generations"]
    assert gad["base_model"] == str(full.model_dir) and gad["seed"] == 1 and gad["rl"] == "grpo"
    assert gad["datasets"] == sft["datasets"]  # the teacher file, as SeqKD
    # W warmup steps at the SFT run's rate and schedule, then D GAD steps: the same step budget.
    assert warmup["max_steps"] == full.warmup_steps and gad["max_steps"] == full.dpo_steps
    assert warmup["learning_rate"] == 2e-4 and warmup["lr_scheduler"] == "cosine"
    # Prompts per step: the SFT run's rows in the warmup, the DPO stage's pairs in the GAD stage.
    assert warmup["gradient_accumulation_steps"] * gad["micro_batch_size"] == sft["micro_batch_size"] * n
    assert gad["gradient_accumulation_steps"] * gad["micro_batch_size"] == dpo["micro_batch_size"] * n
    tuned = gad_config(replace(full, gad_learning_rate=3e-5, discriminator_learning_rate=1e-4), 0,
                       tmp_path / "t.jsonl", tmp_path / "g", warmup_dir=tmp_path / "shared")
    assert tuned["learning_rate"] == 3e-5 and tuned["gad"]["discriminator"]["learning_rate"] == 1e-4
    assert tuned["gad"]["warmup"]["output_dir"] == str(tmp_path / "shared")


def test_the_gad_grid_has_as_many_runs_and_variants_sharing_a_warmup_never_train_it_together(full):
    from soda_plugin.miniature.tune import GAD_GRID, gad_batches

    assert len(GAD_GRID) == len(SFT_GRID) == len(DPO_GRID) and GAD_GRID[0].apply(full) == full
    batches = gad_batches(GAD_GRID, 2)
    assert sorted(v.name for b in batches for v in b) == sorted(v.name for v in GAD_GRID)
    first_of_each = {}
    for index, batch in enumerate(batches):
        keys = [v.warmup_key() for v in batch]
        for key in keys:
            first_of_each.setdefault(key, index)
        # No two variants that would train the same warmup start at once, unless it is finished.
        assert all(keys.count(k) == 1 or first_of_each[k] < index for k in keys), batches


def test_full_mode_runs_gad_on_fewer_seeds_and_refuses_unknown_ones(tmp_path):
    full = mode_settings(False, tmp_path)
    assert set(full.gad_run_seeds) < set(full.seeds) and len(full.gad_run_seeds) >= 2
    assert mode_settings(True, tmp_path).gad_run_seeds == mode_settings(True, tmp_path).seeds
    with pytest.raises(ValueError, match="GAD seeds"):
        mode_settings(False, tmp_path, gad_seeds=(9,))


@pytest.mark.parametrize("script, module", [("tune_miniature.py", "soda_plugin.miniature.tune"),
                                            ("convert_smollm2.py", "soda_plugin.smollm2")])
def test_tools_script_is_a_two_line_shim_over_the_package(script, module):
    """The sweep and the SmolLM2 conversion live in the package (`python -m <module>` from a wheel);
    the clone's tools/ script only re-exports their parser and main."""
    import importlib
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "tools" / script
    spec = importlib.util.spec_from_file_location(f"shim_{path.stem}", path)
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    package = importlib.import_module(module)
    assert shim.make_parser is package.make_parser and shim.main is package.main and shim.__doc__ == package.__doc__
    assert len(path.read_text().splitlines()) == 2
    assert f"python -m {module}" in package.__doc__


def test_tune_parser_defaults_are_relative_to_the_working_directory():
    from soda_plugin.miniature.tune import make_parser

    args = make_parser().parse_args([])
    assert (args.out, args.model_dir, args.seed, args.gad) == (Path("outputs/miniature-tune"), None, 0, False)
