"""The README's main job on the real SmolLM2-135M-Instruct, in quick mode: the whole
miniature pipeline (local HTTP teacher -> tools -> axolotl train -> judge -> report).
Asserts the pipeline's invariants, not which method wins."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, smollm2_dir):
    out = tmp_path_factory.mktemp("miniature") / "quick"
    # Through the installed console script, as `soda demo --quick` (tools/cpu_demo.sh runs the same main).
    soda = Path(sys.executable).with_name("soda")
    assert soda.is_file(), f"{soda}: the venv has no `soda` console script; reinstall with tools/env.sh"
    proc = subprocess.run([str(soda), "demo", "--quick", "--out", str(out), "--model-dir", str(smollm2_dir)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=880)
    (out.parent / "demo.log").write_text(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return out, proc.stdout, json.loads((out / "summary.json").read_text())


def test_every_stage_produced_what_the_next_needs(quick_run):
    out, _, summary = quick_run
    n_train = summary["settings"]["n_train"]
    teacher = [json.loads(line) for line in (out / "data" / "teacher.jsonl").read_text().splitlines()]
    assert len(teacher) == n_train and all(row["teacher_response"] and not row["flags"] for row in teacher)
    _assert_pair_counts_add_up(out, n_train)
    runs = out / "runs" / "seed0"
    for run in ("warmup", "soda", "seqkd", "soda_sibling", "soda_degraded"):
        assert (runs / run / "model.safetensors").is_file(), run
    marker = json.loads((runs / "warmup" / "soda_stage.json").read_text())
    assert marker["stage"] == "warmup"
    # SeqKD is a branch of SODA's warmup: it starts from q_w and trains as many steps as SODA's DPO.
    seqkd_cfg = yaml.safe_load((out / "configs" / "seqkd_s0.yml").read_text())
    assert seqkd_cfg["base_model"] == str(runs / "warmup")
    settings = summary["settings"]
    # Equal optimizer steps: the chain's log holds the warmup's and the DPO stage's, SeqKD's its own.
    assert _logged_steps(out / "logs" / "train_soda_s0.log") == settings["warmup_steps"] + settings["dpo_steps"]
    assert _logged_steps(out / "logs" / "train_seqkd_s0.log") == settings["dpo_steps"]


def _logged_steps(log: Path) -> int:
    """Optimizer steps in an `axolotl train` log: the recipes log every step (`logging_steps: 1`),
    and each step's metrics dict starts with its loss. No checkpoint is saved (`save_strategy: no`),
    so no trainer_state.json is left to read."""
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
    groups = {"base", "qw", "seqkd", "soda", "soda-sibling", "soda-degraded"}
    assert set(summary["main"]) == {"base", "qw", "seqkd", "soda"}
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
    for heading in ("## Headline: SODA - SeqKD (paired)", "## Base / q_w / SeqKD / SODA", "## Mechanism",
                    "## Moved from q_w", "## The judge on the same prompts", "## Pairs the judge filter kept",
                    "## Rejection-source ablation", "## Representations", "## Wall time per stage", "## Machine"):
        assert heading in report
    # What it ran on, from this process's own view of the machine and the checkout.
    machine = summary["machine"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert machine["soda_commit"].split("+")[0] == head and machine["cores"] > 0
    assert machine["torch_threads"] >= 1 and machine["packages"]["axolotl"] and machine["cpu"] in report
    assert "(not run)" not in report and "a perturbed copy of q0" in report
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert [m["name"] for m in analysis["models"]] == ["base", "seqkd", "soda"]
    assert all(0 <= c <= 1.0001 for m in analysis["models"] for c in m["cka_by_layer"])
    assert (out / "analysis" / "cka_by_layer.png").read_bytes()[:4] == b"\x89PNG"
    # Quick mode's one SeqKD run shares the cores with the ablation, so no cost ratio is claimed.
    assert summary["ratio_snapshot_soda_over_seqkd"] is None and "not measured" in report
    assert "SODA - SeqKD" in stdout and "exact match" in stdout


def test_every_model_was_measured_on_the_same_prompts(quick_run):
    """Answers, judge scores and log-probs: one prompt set, for every model, from the artifacts."""
    out, _, summary = quick_run
    from soda_plugin.judge.answers import read_answers

    test_ids = set(summary["test_prompt_ids"])
    assert len(test_ids) == summary["n_test_prompts"] == summary["settings"]["n_test"]
    answer_dirs = sorted(p for p in (out / "eval" / "answers").iterdir() if p.is_dir())
    assert {p.name for p in answer_dirs} == {"base", "qw_s0", "seqkd_s0", "soda_s0", "soda-sibling_s0",
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
    assert len(results["results"]) == 6


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
