"""What the judge reports about itself, on a hand-built case over the real local server:
per-order scores, order disagreement, lengths, the paired headline, clamped verdicts, the
length-controlled score and GAD's evaluation wrapper (docs/judge.md)."""

import csv
import io
import json
import math

import pytest

from chat_server import ChatServer, no_sleep
from judge_data import write_answers, write_eval_file
from judge_responder import JudgeResponder
from soda_plugin.client import ChatClient, ClientSettings
from soda_plugin.verdict import JudgeCalls, JudgeSettings, load_template
from soda_plugin.judge.answers import PromptFormat
from soda_plugin.judge.figures import PromptVerdicts, length_regression, subset_score
from soda_plugin.judge.lengths import token_counter
from soda_plugin.judge.report import csv_table, json_table, markdown_table
from soda_plugin.judge.run import ScoreConfig, report, results_document, score_models_sync

PROMPTS = ["Name a prime.", "Describe the sea.", "Why is the sky blue?"]
# Regex tokens of the responder's references `reference q=8 for: <prompt>`: 6 + the prompt's.
REFERENCE_TOKENS = [10, 10, 12]


def score(server, tmp_path, models, prompts=PROMPTS, **config):
    settings = JudgeSettings("judge-model", load_template())
    config = ScoreConfig(models, ["vicuna"], tmp_path / "scores", settings,
                         {"vicuna": str(write_eval_file(tmp_path / "vicuna.jsonl", prompts))}, resamples=200,
                         progress=False, **config)
    client = ChatClient(ClientSettings(base_url=server.base_url, model="judge-model", concurrency=4),
                        sleep=no_sleep)
    calls = JudgeCalls(client, settings, tmp_path / "cache", progress=False)
    document = results_document(config, score_models_sync(config, calls), calls)
    return {r["model"]: r for r in document["results"]}, document


@pytest.fixture
def judged(tmp_path):
    """Model `a` answers all three prompts: a tie, a flip (9 when shown first, 4 when second),
    and a `q=0` the judge rates 0 in both orders. Model `b` gives no answer to prompt 2: a
    win-or-tie on prompt 1 (10 first, 8 second) and a 6."""
    a = write_answers(tmp_path / "a", {PROMPTS[0]: "two q=8", PROMPTS[1]: "q=4 qf=9", PROMPTS[2]: "q=0"})
    b = write_answers(tmp_path / "b", {PROMPTS[0]: "q=8 qf=10", PROMPTS[2]: "q=6"})
    with ChatServer(JudgeResponder()) as server:
        results, document = score(server, tmp_path, {"a": a, "b": b})
        requests = server.requests
    return results, document, requests, tmp_path


def test_per_order_scores_disagreement_and_lengths_on_the_own_subset(judged):
    results, document, requests, _ = judged
    assert requests == 3 + 2 * 3 + 2 * 2  # one reference per answered prompt, two orders per answer
    a = results["a"]
    assert a["n_scored"] == 3 and a["excluded"] == {}
    assert a["student_first"] == pytest.approx(100 * (8 / 16 + 9 / 17 + 1 / 9) / 3)  # the 0 counts as 1
    assert a["reference_first"] == pytest.approx(100 * (8 / 16 + 4 / 12 + 1 / 9) / 3)
    assert a["score"] == pytest.approx((a["student_first"] + a["reference_first"]) / 2)
    assert a["order_disagreement"] == pytest.approx(1 / 3) and a["order_flips"] == pytest.approx(1 / 3)
    assert a["model_tokens"] == pytest.approx((4 + 6 + 3) / 3)  # `two q=8`, `q=4 qf=9`, `q=0`
    assert a["reference_tokens"] == pytest.approx(sum(REFERENCE_TOKENS) / 3)
    b = results["b"]
    assert b["order_disagreement"] == pytest.approx(1 / 2) and b["order_flips"] == 0  # a win against a tie
    assert b["student_first"] == pytest.approx(100 * (10 / 18 + 6 / 14) / 2)
    assert b["reference_first"] == pytest.approx(100 * (8 / 16 + 6 / 14) / 2)
    assert document["protocol"]["length_tokenizer"] == r"regex:\w+|[^\w\s]"


def test_the_headline_pairs_every_model_on_the_prompts_all_were_scored_on(judged):
    results, document, _, tmp_path = judged
    a, b = results["a"], results["b"]
    assert b["excluded"] == {"no_student_answer": 1} and b["n_scored"] == 2
    # b's missing answer shrinks a's headline too: both on prompts 1 and 3
    assert a["paired"]["n"] == b["paired"]["n"] == 2
    assert a["paired"]["score"] == pytest.approx(100 * (0.5 + 1 / 9) / 2)
    assert a["paired"]["order_disagreement"] == 0 and a["paired"]["model_tokens"] == pytest.approx((4 + 3) / 2)
    assert a["paired"]["reference_tokens"] == pytest.approx((10 + 12) / 2)
    assert b["paired"] == {**b["paired"], "score": b["score"], "n": b["n_scored"]}  # its own subset is the pair
    rows = [json.loads(line) for line in (tmp_path / "scores" / "prompt_scores.jsonl").read_text().splitlines()]
    assert sorted((r["model"], r["model_tokens"], r["reference_tokens"]) for r in rows) == [
        ("a", 3, 12), ("a", 4, 10), ("a", 6, 10), ("b", 3, 12), ("b", 6, 10)]

    markdown = markdown_table(document)
    assert f"| a | {a['paired']['score']:.1f} [" in markdown and f"(own 3: {a['score']:.1f}) |" in markdown
    assert f"| b | {b['score']:.1f} [{b['ci_low']:.1f}, {b['ci_high']:.1f}] |" in markdown
    assert "those scored for all of them: Vicuna 2 of 3." in markdown
    assert (f"| a | Vicuna | 2 | {a['paired']['student_first']:.1f} | {a['paired']['reference_first']:.1f} | "
            "0.0 % (0.0 %) | 3.5 / 11.0 |") in markdown
    assert "| b | Vicuna | 2 | 49.2 | 46.4 | 50.0 % (0.0 %) | 4.5 / 11.0 |" in markdown
    assert "length-controlled" not in markdown  # not asked for

    table = {r["model"]: r for r in csv.DictReader(io.StringIO(csv_table(document)))}
    assert table["a"]["n_scored"] == "3" and table["a"]["paired_n"] == "2"
    assert table["a"]["paired_score"] == f"{a['paired']['score']:.2f}" and table["a"]["score"] == f"{a['score']:.2f}"
    assert table["b"]["order_disagreement"] == "0.50" and table["a"]["clamped_verdicts"] == "2"
    assert json.loads(json_table(document))["table"]["a"]["vicuna"]["paired"]["n"] == 2
    assert "on 2 paired prompts; own 3 prompts:" in report(document).splitlines()[0]


def test_a_zero_is_clamped_to_the_scale_counted_and_scored_not_dropped(judged):
    results, document, _, tmp_path = judged
    assert results["a"]["clamped_verdicts"] == 2 and results["b"]["clamped_verdicts"] == 0
    assert document["calls"]["verdicts_clamped"] == 2 and document["calls"]["verdicts_unparsable"] == 0
    zero = [json.loads(line) for line in (tmp_path / "scores" / "prompt_scores.jsonl").read_text().splitlines()
            if json.loads(line)["clamped_verdicts"]]
    assert len(zero) == 1 and zero[0]["student_first"] == [1, 8] and zero[0]["reference_first"] == [8, 1]
    assert zero[0]["score"] == pytest.approx(1 / 9)
    cached = [json.loads(line)["value"] for line in (tmp_path / "cache" / "verdicts.jsonl").read_text().splitlines()]
    assert sorted((v["score_1"], v["score_2"]) for v in cached if 0 in (v["score_1"], v["score_2"])) == [
        (0, 8), (8, 0)]  # the cache keeps what the judge wrote
    assert "Clamped verdicts (a score outside 1-10 moved to the nearest end, still scored):\n- a / Vicuna: 2" \
        in markdown_table(document)
    with ChatServer(JudgeResponder()) as server:  # a re-run reads the raw 0s from the cache and clamps them again
        again, _ = score(server, tmp_path, {"a": tmp_path / "a", "b": tmp_path / "b"})
        assert server.requests == 0
    assert again["a"]["clamped_verdicts"] == 2 and again["a"]["score"] == pytest.approx(results["a"]["score"])


def test_a_results_file_from_before_the_paired_figures_still_draws():
    old = {"protocol": {"judge_model": "gpt-4o", "template": "pairwise_v1", "template_sha": "0" * 16,
                        "ci_level": 0.95, "bootstrap_resamples": 1000, "seed": 0},
           "models": ["soda"], "benchmarks": ["lmsys"],
           "results": [{"model": "soda", "benchmark": "lmsys", "score": 49.2, "ci_low": 47.9, "ci_high": 50.4,
                        "n_prompts": 479, "n_scored": 479, "excluded": {}, "truncated_answers": 0}]}
    markdown = markdown_table(old)
    assert "| soda | 49.2 [47.9, 50.4] |" in markdown and "student first" not in markdown and "own" not in markdown
    assert csv_table(old).splitlines()[1].startswith("soda,lmsys,49.20,47.90,50.40,479,479,0,")


def test_the_length_controlled_score_is_the_intercept_at_equal_length(tmp_path):
    # References `reference q=6 for: Prompt x.` have 9 tokens. One answer of 4 tokens scored
    # 4 (x = ln(5/10)), two of 19 tokens scored 9 (x = ln(20/10)): all the judge's
    # preference follows length, and the fit through both groups crosses x = 0 at 50.
    prompts = ["Prompt a.", "Prompt b.", "Prompt c."]
    long = "q=9 " + " ".join(["w"] * 16)
    answers = write_answers(tmp_path / "m", {prompts[0]: "q=4 x", prompts[1]: long, prompts[2]: long})
    with ChatServer(JudgeResponder(reference_quality=6)) as server:
        results, document = score(server, tmp_path, {"m": answers}, prompts, length_controlled=True)
    m = results["m"]
    assert (m["model_tokens"], m["reference_tokens"]) == (pytest.approx(14.0), 9.0)
    assert m["score"] == pytest.approx((40 + 60 + 60) / 3)
    assert m["length_controlled"] == pytest.approx(50.0) and m["paired"]["length_controlled"] == pytest.approx(50.0)
    assert m["length_slope"] == pytest.approx(20 / (2 * math.log(2))) and m["length_extrapolated"] is False
    assert document["protocol"]["length_controlled"] is True
    assert "| m | Vicuna | 3 | 53.3 | 53.3 | 0.0 % (0.0 %) | 14.0 / 9.0 | 50.0 |" in markdown_table(document)


def test_an_intercept_beyond_every_answers_length_is_marked_extrapolated():
    longer = [PromptVerdicts(str(i), (s, 8), (s, 8), tokens, 9) for i, (s, tokens) in enumerate([(6, 19), (9, 39)])]
    figures = subset_score(longer, resamples=10, seed=0, length_controlled=True)
    assert figures.length_extrapolated is True and figures.length_controlled < 100 * 6 / 14  # below every score
    assert subset_score(longer, resamples=10, seed=0).length_controlled is None  # only when asked for


def test_length_regression_without_spread_in_length():
    assert length_regression([0.0, 0.0], [40.0, 60.0]) == (50.0, None)  # every answer at equal length
    assert length_regression([0.5, 0.5], [40.0, 60.0]) == (None, None)  # no answer at equal length
    assert length_regression([], []) == (None, None)
    assert length_regression([-1.0, 1.0, 3.0], [10.0, 20.0, 30.0]) == (pytest.approx(15.0), pytest.approx(5.0))


def test_lengths_count_with_a_tokenizer_when_given_one(tmp_path, llama_tokenizer):
    llama_tokenizer.save_pretrained(tmp_path / "tok")
    counter = token_counter(str(tmp_path / "tok"))
    text = "Rayleigh scattering makes the sky blue."
    assert counter.name == f"hf:{tmp_path / 'tok'}"
    assert counter(text) == len(llama_tokenizer(text, add_special_tokens=False)["input_ids"]) > 0
    with pytest.raises(ValueError, match="`--length-tokenizer`: cannot load tokenizer"):
        token_counter(str(tmp_path / "missing"))


def test_gad_wrapped_answers_are_found_and_judged_on_the_bare_instruction(tmp_path):
    wrapped = write_answers(tmp_path / "gad", {p: "q=6" for p in PROMPTS}, prompt_format=PromptFormat.GAD)
    plain = write_answers(tmp_path / "plain", {p: "q=6" for p in PROMPTS})
    responder = JudgeResponder()
    with ChatServer(responder) as server:
        results, _ = score(server, tmp_path, {"gad": wrapped, "plain": plain})
        assert server.requests == 3 + 2 * 3  # the same answers to the same questions: judged once
    assert results["gad"]["prompt_format"] == "gad" and results["plain"]["prompt_format"] == "chat"
    assert results["gad"]["n_scored"] == 3 and results["gad"]["score"] == pytest.approx(100 * 6 / 14)
    assert responder.questions == set(PROMPTS) and sorted(responder.reference_prompts) == sorted(PROMPTS)
