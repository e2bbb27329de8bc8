"""The miniature's report: every figure comes from per-prompt results on one prompt order,
SODA - SeqKD is paired, and nothing missing is silently dropped."""

import json
from pathlib import Path

import numpy as np
import pytest

from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.miniature import summary, tasks
from soda_plugin.miniature.runs import RunId


@pytest.fixture
def test_file(tmp_path):
    drawn = tasks.generate_tasks(12, seed=5)
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps({"content": t.messages(), "family": t.family, "answer": t.answer}) + "\n"
                            for t in drawn))
    return path, drawn


def _answers(drawn, text_of):
    return {prompt_id(t.messages()): {"prompt_id": prompt_id(t.messages()), "response": text_of(t),
                                      "finish_reason": "stop", "response_tokens": 4} for t in drawn}


def _evidence(test_file, right):
    """`right`: model label (`soda/s0`) -> set of task indices it gets right (teacher answer), else a
    q0-style answer."""
    path, drawn = test_file
    answers = {RunId.parse(name): _answers(drawn, lambda t, ok=ok: tasks.teacher_answer(t.question) if drawn.index(t) in ok
                              else f"Let me think about '{t.question}' first.")
               for name, ok in right.items()}
    matches = {name: {pid: tasks.exact_match(row["response"], next(t.answer for t in drawn
                                                                   if prompt_id(t.messages()) == pid))
                      for pid, row in rows.items()} for name, rows in answers.items()}
    judge = {name: {pid: 0.5 * m for pid, m in by_prompt.items()} for name, by_prompt in matches.items()}
    return summary.Evidence(path, matches, answers, judge)


def test_headline_is_paired_per_seed_and_counts_discordant_prompts(test_file):
    every = set(range(12))
    ev = _evidence(test_file, {"base": set(), "qw/s0": {0}, "qw/s1": {0}, "soda/s0": every, "soda/s1": every - {1},
                               "seqkd/s0": {0, 1, 2}, "seqkd/s1": {0, 1, 2}})
    block = summary.headline_block(ev)
    assert block["seeds"] == [0, 1] and block["n_prompts"] == 12
    assert block["exact_match"]["mean"] == pytest.approx(100 * (12 - 3 + 11 - 3) / 24)
    assert block["exact_match"]["low"] > 0 and block["exact_match"]["high"] <= 100
    assert block["discordant"] == {"a_only": 9 + 9, "b_only": 1, "both": 3 + 2, "neither": 0}
    assert [s["seed"] for s in block["per_seed"]] == [0, 1]
    assert block["judge"]["mean"] == pytest.approx(block["exact_match"]["mean"] / 2)  # x 100, as the judge's score
    rows, figures = summary.main_rows(ev, summary.MAIN)
    assert [r[0] for r in rows] == [label for group, label in summary.MAIN.items() if group != "gad"]  # no GAD run here
    assert figures["base"]["exact_match"]["method"] == "Wilson score" and figures["base"]["exact_match"]["high"] > 0
    assert figures["soda"]["exact_match"]["method"].startswith("two-level")
    # Tasks 0-2 are the first prompt of the first three families (they rotate); each family has 2 of 12.
    assert figures["seqkd"]["by_family"] == {"arithmetic": 50.0, "successor": 50.0, "compare": 50.0,
                                             "conversion": 0.0, "pick": 0.0, "plural": 0.0}


def test_a_model_missing_a_prompt_is_an_error_not_a_smaller_table(test_file):
    path, drawn = test_file
    ev_args = _evidence(test_file, {"base": set(), "soda/s0": {0}})
    answers = dict(ev_args.answers)
    answers[RunId("soda", 0)] = dict(list(answers[RunId("soda", 0)].items())[1:])
    with pytest.raises(ValueError, match="answers of `soda/s0` lack 1 test prompts"):
        summary.Evidence(path, ev_args.matches, answers, ev_args.judge_scores)


def test_text_figures_give_the_teacher_its_own_format_and_catch_q0(test_file):
    ev = _evidence(test_file, {"base": set(), "qw/s0": set(range(12)), "soda/s0": set(range(12)),
                               "seqkd/s0": set()})
    figures = summary.text_figures(ev, {pid: 4 for pid in ev.prompt_ids})
    assert figures["teacher"]["format_rate"] == 100.0 and figures["teacher"]["restate_rate"] == 0.0
    assert figures["teacher"]["ramble_rate"] == 0.0 and figures["soda"]["format_rate"] == 100.0
    assert figures["base"]["format_rate"] == 0.0 and figures["base"]["restate_rate"] == 100.0
    moved = summary.movement_figures(ev)
    assert moved["soda"]["changed_vs_qw"] == 0.0 and moved["seqkd"]["changed_vs_qw"] == 100.0
    assert moved["qw"]["changed_vs_base"] == 100.0


def test_logp_figures_are_relative_to_the_same_seeds_warmup(test_file):
    ev = _evidence(test_file, {"base": set(), "qw/s0": set(), "qw/s1": set(), "soda/s0": set(), "soda/s1": set(),
                               "seqkd/s0": set(), "seqkd/s1": set()})
    ids = ev.prompt_ids[:4]

    def rows(offset):
        return [{"prompt_id": f"{kind}:{pid}", "logp": -10.0 + offset, "n_tokens": 5, "logp_head": -4.0 + offset,
                 "n_head": 2} for pid in ids for kind in ("q0", "teacher")]

    mechanism = {"head": 16, "models": {"base": rows(0.0), "qw/s0": rows(-5.0), "qw/s1": rows(-10.0),
                                        "soda/s0": rows(-15.0), "soda/s1": rows(-20.0), "seqkd/s0": rows(-5.0),
                                        "seqkd/s1": rows(-10.0)}}
    figures = summary.logp_figures(ev, mechanism)
    assert "qw" not in figures
    assert figures["soda"]["S"]["mean"] == pytest.approx(-2.0) and figures["soda"]["S_head"]["mean"] == pytest.approx(-5.0)
    assert figures["seqkd"]["S"]["mean"] == 0.0 and figures["seqkd"]["S"]["low"] == 0.0
    assert figures["base"]["S"]["mean"] == pytest.approx((1.0 + 2.0) / 2)  # against both seeds' q_w
    table = summary.logp_table(figures, summary.LABELS)
    assert "| SODA (q_w + D DPO steps) | -2.000 [" in table


def test_stage_ratio_reads_trainer_runtimes():
    from soda_plugin.miniature.settings import mode_settings

    full = mode_settings(False, Path("/tmp/unused"))
    warmup_share = full.warmup_steps / full.total_steps  # the warmup is the SFT run's first W steps
    assert summary.stage_ratio({"q0 snapshot": 10.0}, {"sft": [30.0, 30.0], "dpo": [20.0, 20.0]},
                               full) == pytest.approx((10.0 + 30.0 * warmup_share + 20.0) / 30.0)
    assert summary.stage_ratio({}, {"sft": [1.0], "dpo": []}, full) is None
    assert np.isfinite(summary.stage_ratio({}, {"sft": [1.0], "dpo": [1.0]}, full))


def test_method_costs_are_read_from_every_stages_cost_file(tmp_path):
    import json as _json

    from soda_plugin.miniature.settings import mode_settings
    from soda_plugin.miniature.summary import cost_table, method_costs

    settings = mode_settings(False, tmp_path / "run", seeds=(0, 1), gad_seeds=(0,))
    w, total = settings.warmup_steps, settings.total_steps

    def write(folder, wall, steps, rss):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cost.json").write_text(_json.dumps({
            "schema": 1, "stage": folder.name, "finished": True, "started_at": "2026-12-06T00:00:00",
            "wall_seconds": wall, "optimizer_steps": steps, "gpu_hours": 0.0,
            "per_rank": [{"rank": 0, "peak_allocated_bytes": None, "peak_device_used_bytes": None,
                          "peak_rss_bytes": rss}]}))

    out = settings.out_dir
    write(out / "snapshots" / "q0", 30.0, None, 1 << 30)
    for seed in (0, 1):
        run = out / "runs" / f"seed{seed}"
        write(run / "sft", 240.0, total, 2 << 30)
        write(run / "soda", 100.0, settings.dpo_steps, 3 << 30)
        write(run / "sft" / f"checkpoint-{w}" / "reference_logps", 10.0, None, 1 << 30)
    write(out / "runs" / "seed0" / "gad" / "warmup", 800.0, w, 5 << 30)
    write(out / "runs" / "seed0" / "gad", 900.0, settings.dpo_steps, 6 << 30)
    costs = method_costs(settings)
    assert costs["seqkd"] == {"seeds": 2, "wall_seconds": 240.0, "optimizer_steps": total, "peak_rss_bytes": 2 << 30}
    assert costs["soda"]["wall_seconds"] == pytest.approx(240.0 * w / total + 100.0 + 10.0 + 30.0)
    assert costs["soda"]["optimizer_steps"] == total and costs["soda"]["peak_rss_bytes"] == 3 << 30
    assert costs["gad"] == {"seeds": 1, "wall_seconds": 1700.0, "optimizer_steps": total, "peak_rss_bytes": 6 << 30}
    table = cost_table(costs)
    assert f"{1700.0 / 240.0:.2f}x" in table and "3.00x" in table  # GAD's time and peak RSS over SeqKD's
