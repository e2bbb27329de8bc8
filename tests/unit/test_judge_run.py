"""Scoring students end to end in process, against a real local server playing the judge."""

import json

import pytest

from chat_server import ChatServer, no_sleep
from judge_data import write_answers, write_eval_file
from judge_responder import JudgeResponder
from soda_plugin.client import ChatClient, ClientSettings
from soda_plugin.verdict import JudgeCalls, JudgeSettings, load_template
from soda_plugin.judge.run import ScoreConfig, results_document, score_models_sync

PROMPTS = ["Name a prime.", "Describe the sea.", "Why is the sky blue?"]


def score(server, tmp_path, models, *, parse_attempts=3, concurrency=4, timeout_s=30.0, max_attempts=6, **config):
    settings = JudgeSettings("judge-model", load_template(), parse_attempts=parse_attempts)
    config = ScoreConfig(models, ["vicuna"], tmp_path / "scores", settings,
                         {"vicuna": str(write_eval_file(tmp_path / "vicuna.jsonl", PROMPTS))}, resamples=200,
                         progress=False, **config)
    client = ChatClient(ClientSettings(base_url=server.base_url, model="judge-model", concurrency=concurrency,
                                       timeout_s=timeout_s, max_attempts=max_attempts), sleep=no_sleep)
    calls = JudgeCalls(client, settings, tmp_path / "cache", progress=False)

    results = score_models_sync(config, calls)
    document = results_document(config, results, calls)
    return {(r["model"], r["benchmark"]): r for r in document["results"]}, document


@pytest.fixture
def base_answers(tmp_path):
    return write_answers(tmp_path / "base", {PROMPTS[0]: "2 q=8", PROMPTS[1]: "blue q=4", PROMPTS[2]: "Rayleigh q=10"})


def test_scores_match_the_hand_computation(tmp_path, base_answers):
    with ChatServer(JudgeResponder()) as server:
        results, document = score(server, tmp_path, {"base": base_answers})
        assert server.requests == 3 + 6  # one reference per prompt, two orders per prompt
    # reference q=8: (8/16 + 8/16)/2, (4/12 + 4/12)/2, (10/18 + 10/18)/2
    expected = 100 * (0.5 + 1 / 3 + 10 / 18) / 3
    result = results[("base", "vicuna")]
    assert result["score"] == pytest.approx(expected) and result["n_scored"] == 3 and result["excluded"] == {}
    assert result["ci_low"] <= expected <= result["ci_high"]
    rows = [json.loads(line) for line in (tmp_path / "scores" / "prompt_scores.jsonl").read_text().splitlines()]
    assert sorted(r["score"] for r in rows) == pytest.approx(sorted([0.5, 1 / 3, 10 / 18]))
    assert {tuple(r["student_first"]) for r in rows} == {(8, 8), (4, 8), (10, 8)}
    assert {tuple(r["reference_first"]) for r in rows} == {(8, 8), (8, 4), (8, 10)}
    assert document["protocol"]["template"] == "pairwise_v1" and document["protocol"]["seed"] == 0


def test_a_rerun_pays_nothing_and_scores_the_same(tmp_path, base_answers):
    with ChatServer(JudgeResponder()) as server:
        first, _ = score(server, tmp_path, {"base": base_answers})
        paid = server.requests
        second, document = score(server, tmp_path, {"base": base_answers})
        assert server.requests == paid
    assert second == first
    assert document["calls"]["verdicts_cached"] == 6 and document["calls"]["references_cached"] == 3


def test_a_new_student_pays_only_for_its_new_answers_and_reuses_the_references(tmp_path, base_answers):
    soda = write_answers(tmp_path / "soda", {PROMPTS[0]: "2 q=8", PROMPTS[1]: "blue q=4", PROMPTS[2]: "scattering q=9"})
    responder = JudgeResponder()
    with ChatServer(responder) as server:
        score(server, tmp_path, {"base": base_answers})
        paid = server.requests
        results, document = score(server, tmp_path, {"base": base_answers, "soda": soda})
        assert server.requests == paid + 2  # one new answer, two orders; no new reference
    assert responder.reference_requests == 3
    assert document["calls"]["references_new"] == 0 and document["calls"]["verdicts_new"] == 2
    assert results[("soda", "vicuna")]["score"] == pytest.approx(100 * (0.5 + 1 / 3 + 9 / 17) / 3)


def test_an_unparsable_verdict_is_asked_again_and_never_cached(tmp_path):
    answers = write_answers(tmp_path / "m", {PROMPTS[0]: "BAD1 q=6", PROMPTS[1]: "q=8", PROMPTS[2]: "q=8"})
    with ChatServer(JudgeResponder()) as server:
        results, document = score(server, tmp_path, {"m": answers})
        assert server.requests == 3 + 6 + 2  # the two verdicts of the BAD1 answer were asked twice
    assert document["calls"]["unparsable_retried"] == 2 and document["calls"]["verdicts_unparsable"] == 0
    assert results[("m", "vicuna")]["n_scored"] == 3
    assert results[("m", "vicuna")]["score"] == pytest.approx(100 * (6 / 14 + 0.5 + 0.5) / 3)
    cached = [json.loads(line)["value"] for line in (tmp_path / "cache" / "verdicts.jsonl").read_text().splitlines()]
    assert len(cached) == 6 and all(1 <= v["score_1"] <= 10 and 1 <= v["score_2"] <= 10 for v in cached)
    assert len((tmp_path / "cache" / "unparsable.jsonl").read_text().splitlines()) == 2


def test_a_verdict_unparsable_every_time_is_counted_and_its_prompt_excluded(tmp_path):
    answers = write_answers(tmp_path / "m", {PROMPTS[0]: "ALWAYSBAD", PROMPTS[1]: "q=8", PROMPTS[2]: "q=4"})
    responder = JudgeResponder()
    with ChatServer(responder) as server:
        results, document = score(server, tmp_path, {"m": answers}, parse_attempts=2)
        assert server.requests == 3 + 6 + 2  # 2 attempts for each order of the bad prompt
        paid = server.requests
        score(server, tmp_path, {"m": answers}, parse_attempts=2)
        assert server.requests == paid + 4  # nothing bad was cached: asked again, nothing else
    result = results[("m", "vicuna")]
    assert result["excluded"] == {"unparsable_verdict": 1} and result["n_scored"] == 2
    assert result["score"] == pytest.approx(100 * (0.5 + 1 / 3) / 2)  # never scored as 0 or 10
    assert document["calls"]["verdicts_unparsable"] == 2 and document["calls"]["unparsable_retried"] == 2


def test_missing_answers_are_excluded_and_counted(tmp_path):
    partial = write_answers(tmp_path / "partial", {PROMPTS[0]: "q=8"})
    with ChatServer(JudgeResponder()) as server:
        results, _ = score(server, tmp_path, {"partial": partial})
    assert results[("partial", "vicuna")]["excluded"] == {"no_student_answer": 2}
    assert results[("partial", "vicuna")]["n_scored"] == 1 and results[("partial", "vicuna")]["n_prompts"] == 3


FAULTS = ("429", "429-retry-after", "500", "503", "hang", "drop", "malformed", "empty_choices")


def test_every_fault_kind_still_gives_complete_output_with_retries_reported(tmp_path, base_answers):
    with ChatServer(JudgeResponder()) as server:
        clean, _ = score(server, tmp_path / "clean", {"base": base_answers})
    with ChatServer(JudgeResponder(), hang_s=3.0) as server:
        server.inject(*FAULTS)  # each kind once, on the first requests
        # Enough attempts for one request to meet every fault, and a slow answer: which request
        # gets which fault depends on timing (a lane stuck on "hang" leaves the others to the rest).
        faulty, document = score(server, tmp_path / "faulty", {"base": base_answers}, concurrency=2, timeout_s=1.0,
                                 max_attempts=len(FAULTS) + 2)
        assert sum(server.faulted.values()) == len(FAULTS)
    assert faulty == clean
    retries = document["usage"]["retries"]
    # One retry per injected fault (429, 5xx and malformed come in two variants each); a slow answer may add timeouts.
    assert {kind: n for kind, n in retries.items() if kind != "timeout"} == {
        "rate_limit": 2, "server_error": 2, "connection": 1, "malformed": 2}
    assert retries["timeout"] >= 1
    assert document["usage"]["failures"] == 0


def test_a_rejected_request_is_counted_then_filled_by_the_next_run(tmp_path, base_answers):
    with ChatServer(JudgeResponder()) as server:
        server.inject("400")  # the first request is a reference
        results, document = score(server, tmp_path, {"base": base_answers}, concurrency=1)
        assert results[("base", "vicuna")]["excluded"] == {"no_reference": 1}
        assert document["calls"]["references_missing"] == {"request_failed:bad_request": 1}
        again, _ = score(server, tmp_path, {"base": base_answers})
    assert again[("base", "vicuna")]["n_scored"] == 3 and again[("base", "vicuna")]["excluded"] == {}
