"""The README's main job on the real SmolLM2-135M-Instruct, in quick mode: the whole
miniature pipeline (local HTTP teacher -> tools -> axolotl train -> judge -> report).
Asserts the pipeline's invariants, not which method wins."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    for run in ("soda", "seqkd", "soda_sibling", "soda_degraded"):
        assert (out / "runs" / "seed0" / run / "model.safetensors").is_file(), run
    marker = json.loads((out / "runs" / "seed0" / "warmup" / "soda_stage.json").read_text())
    assert marker["stage"] == "warmup"


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
    assert summary["same_test_prompts_for_all_models"] is True
    assert set(summary["metrics"]) == {"base", "seqkd", "soda", "soda-sibling", "soda-degraded"}
    for group, metrics in summary["metrics"].items():
        assert set(metrics["exact_match"]) == set(metrics["judge"]) == ({"-"} if group == "base" else {"s0"}), group
        assert all(0 <= v <= 100 for values in metrics.values() for v in values.values()), group
    # The untrained student is clearly worse than the teacher: the task is worth distilling.
    assert summary["metrics"]["base"]["exact_match"]["-"] < 50
    report = (out / "report.md").read_text()
    for heading in ("## Base / SeqKD / SODA", "## Pairs the judge filter kept", "## Rejection-source ablation",
                    "## Representations", "## Wall time per stage"):
        assert heading in report
    assert "(not run)" not in report
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert [m["name"] for m in analysis["models"]] == ["base", "seqkd", "soda"]
    assert all(0 <= c <= 1.0001 for m in analysis["models"] for c in m["cka_by_layer"])
    assert (out / "analysis" / "cka_by_layer.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["ratio_snapshot_soda_over_seqkd"] > 0
    assert "exact match" in stdout and "(q0 snapshot + SODA warmup + DPO) / SeqKD" in stdout


def test_judge_ran_for_real_through_the_http_teacher(quick_run):
    out, _, summary = quick_run
    results = json.loads((out / "eval" / "judge" / "results.json").read_text())
    assert results["protocol"]["judge_model"] == "program-teacher"
    n_models = len(summary["metrics"])
    assert {r["n_prompts"] for r in results["results"]} == {summary["n_test_prompts"]}
    assert len(results["results"]) == n_models


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
