"""The README's main job on the real SmolLM2-135M-Instruct, in quick mode: the whole
miniature pipeline (local HTTP teacher -> soda's stages -> axolotl train -> judge -> report),
run as a user without a clone runs it: `soda demo --quick` from the wheel's venv
(tests/e2e/wheel_venv.py), in a working directory outside the clone.
Asserts the pipeline's invariants, not which method wins."""

import json
import math
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from wheel_venv import clean_env, installed_wheel

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, smollm2_dir):
    out = tmp_path_factory.mktemp("miniature") / "quick"
    work = out.parent / "work"  # the working directory: not the clone, and nothing in it
    work.mkdir()
    # Through the wheel's console script, as `soda demo --quick` (tools/cpu_demo.sh runs the same main
    # from the clone's editable install).
    _, venv = installed_wheel(tmp_path_factory)
    proc = subprocess.run([str(venv / "bin" / "soda"), "demo", "--quick", "--out", str(out), "--model-dir",
                           str(smollm2_dir)], cwd=work, env=clean_env(venv), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=880)
    (out.parent / "demo.log").write_text(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert not list(work.iterdir())  # every output under --out
    return out, proc.stdout, json.loads((out / "summary.json").read_text())


def test_every_stage_produced_what_the_next_needs(quick_run):
    out, _, summary = quick_run
    n_train = summary["settings"]["n_train"]
    teacher = [json.loads(line) for line in (out / "data" / "teacher.jsonl").read_text().splitlines()]
    assert len(teacher) == n_train and all(row["teacher_response"] and not row["flags"] for row in teacher)
    _assert_pair_counts_add_up(out, n_train)
    runs = out / "runs" / "seed0"
    for run in ("sft", "soda", "soda_sibling", "soda_degraded"):
        assert (runs / run / "model.safetensors").is_file(), run
    settings = summary["settings"]
    w, d = settings["warmup_steps"], settings["dpo_steps"]
    assert (runs / "sft" / f"checkpoint-{w}" / "model.safetensors").is_file()
    # Equal optimizer steps: SeqKD is the SFT run's W + D steps, SODA its first W then D of DPO.
    assert _logged_steps(out / "logs" / "train_sft_s0.log") == w + d
    for run in ("soda", "soda_sibling", "soda_degraded"):
        assert _logged_steps(out / "logs" / f"train_{run}_s0.log") == d, run
    # GAD: its warmup (W steps) and GAD stage (D steps) from q0, both models saved per stage.
    gad = runs / "gad"
    for folder in (gad / "warmup", gad):
        assert (folder / "model.safetensors").is_file() and (folder / "discriminator" / "model.safetensors").is_file()
    assert _logged_steps(out / "logs" / "train_gad_s0.log") == w + d
    gad_cfg = yaml.safe_load((out / "configs" / "gad_s0.yml").read_text())
    assert gad_cfg["base_model"] == settings["model_dir"] and gad_cfg["gad"]["warmup"]["max_steps"] == w


def test_no_baseline_run_restarts_its_schedule(quick_run):
    """Every SFT run (SeqKD, whose first W steps are SODA's warmup) starts from the untrained
    student, and its first step runs at or below its schedule's first rate, from the logs."""
    out, _, summary = quick_run
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (out / "configs").glob("*.yml")}
    sft_runs = {name: cfg for name, cfg in configs.items() if not cfg.get("rl")}
    assert set(sft_runs) == {f"sft_s{seed}" for seed in summary["settings"]["seeds"]}
    for name, cfg in sft_runs.items():
        assert cfg["base_model"] == summary["settings"]["model_dir"], name  # never another run's weights
        rates = _logged_rates(out / "logs" / f"train_{name}.log")
        warm, peak = cfg["warmup_steps"], float(cfg["learning_rate"])
        assert len(rates) == cfg["max_steps"] and warm >= 1, name
        assert rates[0] <= peak / warm * (1 + 1e-6), (name, rates)  # the schedule's first rate, not the peak
        assert max(rates) <= peak * (1 + 1e-6), (name, rates)
        # After its warm-up the rate never rises again: nothing restarts inside the run either.
        assert all(later <= earlier * (1 + 1e-6) for earlier, later in zip(rates[warm:], rates[warm + 1:])), rates


def test_soda_and_seqkd_share_the_step_w_model(quick_run, tmp_path):
    """SODA's DPO runs start from the SFT run's step-W save (checksums), and that save is what
    W steps of SFT alone give: a fresh run of the same config stopped at W has the same tensors."""
    out, _, summary = quick_run
    from safetensors.torch import load_file

    w = summary["settings"]["warmup_steps"]
    sft_cfg = yaml.safe_load((out / "configs" / "sft_s0.yml").read_text())
    step_w = Path(sft_cfg["output_dir"]) / f"checkpoint-{w}" / "model.safetensors"
    for run in ("soda_s0", "soda_sibling_s0", "soda_degraded_s0"):
        dpo_cfg = yaml.safe_load((out / "configs" / f"{run}.yml").read_text())
        assert _sha256(Path(dpo_cfg["base_model"]) / "model.safetensors") == _sha256(step_w), run
    seqkd = load_file(str(Path(sft_cfg["output_dir"]) / "model.safetensors"))
    shared = load_file(str(step_w))
    assert any(not (seqkd[k] == shared[k]).all() for k in shared)  # SeqKD went on past step W
    alone = dict(sft_cfg, max_steps=w, output_dir=str(tmp_path / "alone"), save_strategy="no",
                 dataset_prepared_path=str(tmp_path / "prepared"))
    alone.pop("save_steps")
    config = tmp_path / "alone.yml"
    config.write_text(yaml.safe_dump(alone))
    from soda_plugin.miniature.pipeline import axolotl_train_command, offline_env

    # The same thread count as the run (CPU reductions are split by thread), from its log's command line.
    env = {k: v for k, v in offline_env().items() if k != "OMP_NUM_THREADS"}
    threads = re.findall(r"^\$ OMP_NUM_THREADS=(\d+) ", (out / "logs" / "train_sft_s0.log").read_text(), re.M)
    if threads:
        env["OMP_NUM_THREADS"] = threads[-1]
    proc = subprocess.run(axolotl_train_command(config), cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    retrained = load_file(str(tmp_path / "alone" / "model.safetensors"))
    assert retrained.keys() == shared.keys() and all((retrained[k] == shared[k]).all() for k in shared)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _logged_rates(log: Path) -> list[float]:
    """The learning rate of each optimizer step, as the trainer logged it (`logging_steps: 1`)."""
    return [float(m) for m in re.findall(r"\{'loss': [^}]*'learning_rate': '([0-9.e+-]+)'", log.read_text(errors="replace"))]


def _logged_steps(log: Path) -> int:
    """Optimizer steps in an `axolotl train` log: the recipes log every step (`logging_steps: 1`),
    and each step's metrics dict starts with its loss (the DPO runs save no trainer_state.json)."""
    return len(re.findall(r"\{'loss': '[0-9.e+-]+'", log.read_text(errors="replace")))


def _assert_pair_counts_add_up(out: Path, n_train: int) -> None:
    """`build_report.json` against the files: every q0 row is kept or dropped for a reported reason."""
    from soda_plugin.pairs.builder import iter_pairs
    from soda_plugin.pairs.reasons import DropReason, Unit
    from soda_plugin.snapshot.store import iter_rows

    pairs_dir = out / "pairs" / "q0"
    report = json.loads((pairs_dir / "build_report.json").read_text())
    counts = report["counts"]
    assert set(counts["dropped"]) == {r.value for r in DropReason}

    def dropped(unit: Unit) -> int:
        return sum(counts["dropped"][r.value] for r in DropReason if r.unit is unit)

    kept = len(list(iter_pairs(pairs_dir)))
    assert kept == counts["kept"] == sum(counts["kept_by_source"].values()) > 0
    snapshot_rows = len(list(iter_rows(out / "snapshots" / "q0")))
    assert sum(counts["snapshot_rows"].values()) == snapshot_rows == n_train
    assert snapshot_rows == kept + dropped(Unit.SNAPSHOT_ROW) + dropped(Unit.PAIR)
    # Quick mode has one q0 answer per prompt, so each teacher row gives at most one candidate pair.
    assert counts["teacher_rows"] == n_train == dropped(Unit.TEACHER_ROW) + kept + dropped(Unit.PAIR)
    # The local teacher judged every pair that passed the other checks: kept or `teacher_not_better`.
    judge = report["judge_filter"]["counts"]
    assert judge["kept"] == kept and judge["dropped"] == counts["dropped"]["teacher_not_better"]
    assert judge["judged"] == kept + judge["dropped"] and judge["unjudged_failed"] == judge["unjudged_unparsable"] == 0


def test_tables_are_complete_and_scores_in_range(quick_run):
    out, stdout, summary = quick_run
    groups = {"base", "qw", "seqkd", "gad", "soda", "soda-sibling", "soda-degraded"}
    assert set(summary["main"]) == {"base", "qw", "seqkd", "gad", "soda"}
    assert set(summary["text_metrics"]) == groups | {"teacher"}
    assert set(summary["mechanism"]) == groups - {"qw"} and set(summary["movement"]) == groups - {"base"}
    for group, figures in summary["main"].items():
        em, judge = figures["exact_match"], figures["judge"]
        assert 0 <= em["low"] <= em["mean"] <= em["high"] <= 100, group
        assert 0 <= judge["low"] <= judge["mean"] <= judge["high"] <= 100, group
        assert all(0 <= v <= 100 for v in figures["by_family"].values()), group
    for group, figures in summary["text_metrics"].items():
        assert all(0 <= figures[k] <= 100 for k in figures if k.endswith("_rate")), group
    teacher = summary["text_metrics"]["teacher"]
    assert teacher["format_rate"] == 100.0 and teacher["ramble_rate"] == teacher["restate_rate"] == 0.0
    for group, figures in summary["mechanism"].items():
        for key in ("S", "S_head", "I"):
            assert math.isfinite(figures[key]["mean"]) and figures[key]["low"] <= figures[key]["high"], (group, key)
    # The paired SODA - SeqKD interval was computed over the seeds and prompts both answered.
    head = summary["headline"]["exact_match"]
    assert head["resamples"] >= 1000 and head["n_prompts"] == summary["n_test_prompts"] and head["n_seeds"] == 1
    assert -100 <= head["low"] <= head["mean"] <= head["high"] <= 100
    d = summary["headline"]["discordant"]
    assert sum(d.values()) == summary["n_test_prompts"]
    report = (out / "report.md").read_text()
    for heading in ("## Headline: SODA - SeqKD (paired)", "## Base / q_w / SeqKD / GAD / SODA", "## Mechanism",
                    "## Moved from q_w", "## The judge on the same prompts", "## Pairs the judge filter kept",
                    "## Rejection-source ablation", "## Representations", "## Wall time per stage", "## Machine"):
        assert heading in report
    # What it ran on, from this process's own view of the machine; soda came from the wheel, not a checkout.
    machine = summary["machine"]
    assert machine["soda_commit"] is None and "soda (not a git checkout)" in report and machine["cores"] > 0
    assert machine["torch_threads"] >= 1 and machine["packages"]["axolotl"] and machine["cpu"] in report
    assert "(not run)" not in report and "a perturbed copy of q0" in report
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert [m["name"] for m in analysis["models"]] == ["base", "seqkd", "soda"]
    assert all(0 <= c <= 1.0001 for m in analysis["models"] for c in m["cka_by_layer"])
    assert (out / "analysis" / "cka_by_layer.png").read_bytes()[:4] == b"\x89PNG"
    # The cost ratio reads both methods' trainer runtimes from their own logs.
    ratio = summary["ratio_snapshot_soda_over_seqkd"]
    assert ratio is not None and ratio > 0 and f"**{ratio:.2f}**" in report
    assert len(summary["trainer_runtimes"]["sft"]) == len(summary["trainer_runtimes"]["dpo"]) == 1
    # SODA - SeqKD, SODA - GAD, and each method against q_w, each paired over the same seeds and prompts.
    assert [(b["a"], b["b"]) for b in summary["comparisons"]] == [
        ("soda", "seqkd"), ("soda", "gad"), ("soda", "qw"), ("seqkd", "qw"), ("gad", "qw")]
    assert all(len(b["per_seed"]) == 1 and b["exact_match"]["n_prompts"] == summary["n_test_prompts"]
               for b in summary["comparisons"])
    assert "SODA - SeqKD" in stdout and "exact match" in stdout
    # Every method's cost, read from its stages' cost.json files: GAD's = its warmup + its stage.
    costs = summary["method_costs"]
    assert set(costs) == {"seqkd", "soda", "gad"} and all(c["seeds"] == 1 for c in costs.values())
    gad_stages = [json.loads((out / "runs" / "seed0" / "gad" / sub / "cost.json").read_text()) for sub in ("warmup", ".")]
    assert costs["gad"]["wall_seconds"] == pytest.approx(sum(c["wall_seconds"] for c in gad_stages))
    assert costs["gad"]["optimizer_steps"] == sum(c["optimizer_steps"] for c in gad_stages) == \
        costs["soda"]["optimizer_steps"] == costs["seqkd"]["optimizer_steps"]
    assert "peak RSS x SeqKD" in report


def test_every_model_was_measured_on_the_same_prompts(quick_run):
    """Answers, judge scores and log-probs: one prompt set, for every model, from the artifacts."""
    out, _, summary = quick_run
    from soda_plugin.judge.answers import read_answers

    test_ids = set(summary["test_prompt_ids"])
    assert len(test_ids) == summary["n_test_prompts"] == summary["settings"]["n_test"]
    answer_dirs = sorted(p for p in (out / "eval" / "answers").iterdir() if p.is_dir())
    assert {p.name for p in answer_dirs} == {"base", "qw_s0", "seqkd_s0", "gad_s0", "soda_s0", "soda-sibling_s0",
                                             "soda-degraded_s0"}
    for folder in answer_dirs:
        assert set(read_answers(folder, "miniature")) == test_ids, folder.name
    judged = {}
    for line in (out / "eval" / "judge" / "prompt_scores.jsonl").read_text().splitlines():
        row = json.loads(line)
        judged.setdefault(row["model"], set()).add(row["prompt_id"])
    assert set(judged) == {p.name for p in answer_dirs} and all(ids == test_ids for ids in judged.values())
    mechanism = json.loads((out / "eval" / "mechanism.json").read_text())
    id_sets = {name: {r["prompt_id"] for r in rows} for name, rows in mechanism["models"].items()}
    assert len({frozenset(ids) for ids in id_sets.values()}) == 1
    scored = next(iter(id_sets.values()))
    assert {pid.split(":", 1)[1] for pid in scored} <= test_ids
    assert len(scored) == 2 * summary["settings"]["mechanism_prompts"]


def test_judge_ran_for_real_through_the_http_teacher(quick_run):
    out, _, summary = quick_run
    results = json.loads((out / "eval" / "judge" / "results.json").read_text())
    assert results["protocol"]["judge_model"] == "program-teacher"
    assert {r["n_prompts"] for r in results["results"]} == {summary["n_test_prompts"]}
    assert len(results["results"]) == 7


def test_smollm2_template_round_trips_in_both_views(smollm2_dir):
    from transformers import AutoTokenizer

    from soda_plugin.constants import IGNORE_INDEX
    from soda_plugin.format.rows import SodaRow
    from soda_plugin.train.views import dpo_example, sft_example

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    messages = ({"role": "user", "content": "What is 2 plus 3?"},)
    example = sft_example(tok, SodaRow(messages=messages, teacher="2 + 3 = 5."))
    full = tok.apply_chat_template([*messages, {"role": "assistant", "content": "2 + 3 = 5."}], tokenize=False)
    assert tok.decode(example["input_ids"]) == full
    trained = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert tok.decode(trained) == "2 + 3 = 5.<|im_end|>"
    triple = dpo_example(tok, SodaRow(messages=messages, teacher="2 + 3 = 5.", student="It is 6."))
    prompt_ids = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert tok(triple["prompt"])["input_ids"] == prompt_ids
    assert triple["chosen"] == "2 + 3 = 5.<|im_end|>" and triple["rejected"] == "It is 6.<|im_end|>"
    # TRL appends `eos_token` to answers that do not end with it: it must be the turn end.
    assert tok.eos_token == "<|im_end|>" and triple["chosen"].endswith(tok.eos_token)
