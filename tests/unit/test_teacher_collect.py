"""Teacher collection against a real local chat server: faults, failures, flags, resume,
evaluation overlap and the dry-run estimate."""

import json

import pytest

from chat_server import ChatServer, Reply
from soda_plugin.client import ClientSettings
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.teacher.collect import TeacherRequest, dry_run, run_collection
from soda_plugin.teacher.exclude import EvalExclusion, EvalSetRef
from soda_plugin.format.flags import answer_flags, is_refusal
from soda_plugin.teacher.output import OutputMismatchError, manifest_path
from soda_data import write_jsonl

PROMPTS = [[{"role": "user", "content": f"question {i}"}] for i in range(8)]


def answer(request):
    return Reply(f"answer to {request['messages'][-1]['content']}", "stop", 11, 5)


def settings(server, **overrides):
    # A long timeout unless a test needs timeouts: a slow answer under load must not add a retry.
    values = dict(base_url=server.base_url, model="teacher-m", concurrency=4, timeout_s=30.0,
                  backoff_base_s=0.01, max_attempts=4)
    return ClientSettings(**{**values, **overrides})


def collect(server, out, prompts=PROMPTS, request=None, **kwargs):
    request = request or TeacherRequest("teacher-m", max_tokens=32)
    return run_collection(prompts, out, settings=settings(server, **kwargs.pop("client", {})), request=request,
                          progress=False, **kwargs)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("fault, kind", [
    ("429", "rate_limit"), ("429-retry-after", "rate_limit"), ("500", "server_error"), ("503", "server_error"),
    ("malformed", "malformed"), ("empty_choices", "malformed"), ("drop", "connection"), ("hang", "timeout"),
])
def test_each_fault_kind_is_retried_and_every_row_is_written_exactly_once(tmp_path, fault, kind):
    with ChatServer(answer, hang_s=2.0) as server:
        server.inject(fault, fault, fault)
        summary = collect(server, tmp_path / "teacher.jsonl", client={"timeout_s": 1.0} if fault == "hang" else {})
        answered = dict(server.answered_by_prompt)
    written = rows(tmp_path / "teacher.jsonl")
    assert sorted(r["prompt_id"] for r in written) == sorted(prompt_id(p) for p in PROMPTS)
    assert all(r["teacher_response"] == f"answer to {r['content'][0]['content']}" for r in written)
    assert answered == {p[0]["content"]: 1 for p in PROMPTS}  # nobody was answered twice
    retries = dict(summary.usage.retries)
    if fault == "hang":  # a slow answer under load may time out too: at least the three hangs
        assert set(retries) == {"timeout"} and retries["timeout"] >= 3, retries
    else:
        assert retries == {kind: 3}
    assert not summary.failed and summary.answered == 8
    assert f"retries {retries}" in summary.report()


def test_rows_follow_the_builder_schema_and_leave_out_the_system_prompt(tmp_path):
    seen = []

    def record(request):
        seen.append(request["messages"])
        return answer(request)

    with ChatServer(record) as server:
        collect(server, tmp_path / "t.jsonl", PROMPTS[:1], TeacherRequest("teacher-m", "Be brief.", 0.7, 0.9, 32))
    [row] = rows(tmp_path / "t.jsonl")
    assert row == {"prompt_id": prompt_id(PROMPTS[0]), "content": PROMPTS[0], "teacher_response": "answer to question 0",
                   "finish_reason": "stop", "flags": [], "prompt_tokens": 11, "completion_tokens": 5,
                   "teacher_model": "teacher-m"}
    assert seen == [[{"role": "system", "content": "Be brief."}, *PROMPTS[0]]]
    manifest = json.loads(manifest_path(tmp_path / "t.jsonl").read_text())
    assert manifest["sampling"] == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 32}
    assert manifest["status"] == "complete" and manifest["system_prompt"] == "Be brief."


def test_requests_failing_after_every_retry_are_counted_not_written_and_retried_by_a_rerun(tmp_path):
    out = tmp_path / "teacher.jsonl"
    with ChatServer(answer) as server:
        server.inject(*["500"] * 4, "400")  # with concurrency 1: prompt 0 fails 4 times, prompt 1 is rejected
        first = collect(server, out, client={"concurrency": 1})
        assert first.failed == {"server_error": 1, "bad_request": 1} and first.answered == 6
        assert "2 prompts have no answer: re-run" in first.report()
        assert json.loads(manifest_path(out).read_text())["status"] == "incomplete"
        second = collect(server, out)
        answered = dict(server.answered_by_prompt)
    assert second.plan.done_before == 6 and second.answered == 2 and not second.failed
    assert sorted(r["prompt_id"] for r in rows(out)) == sorted(prompt_id(p) for p in PROMPTS)
    assert answered == {p[0]["content"]: 1 for p in PROMPTS}


def test_refusal_empty_truncated_and_filtered_answers_are_written_flagged(tmp_path):
    replies = {"question 0": Reply("I'm sorry, but I can't help with that."), "question 1": Reply("   "),
               "question 2": Reply("Once upon a", "length"), "question 3": Reply("[removed]", "content_filter")}

    with ChatServer(lambda r: replies.get(r["messages"][-1]["content"]) or answer(r)) as server:
        summary = collect(server, tmp_path / "t.jsonl", PROMPTS[:5])
    flags = {r["content"][0]["content"]: r["flags"] for r in rows(tmp_path / "t.jsonl")}
    assert flags == {"question 0": ["refusal"], "question 1": ["empty"], "question 2": ["truncated"],
                     "question 3": ["content_filter"], "question 4": []}
    assert summary.flagged == {"refusal": 1, "empty": 1, "truncated": 1, "content_filter": 1}


@pytest.mark.parametrize("text, refused", [
    ("I’m sorry, but I can’t assist with that request.", True), ("I cannot help with creating malware.", True),
    ("As an AI language model, I cannot browse the web.", True), ("I'm sorry to hear that! Try this:", False),
    ("I can't help but admire the question.", False), ("Sure. I cannot stress enough: rest.", False),
])
def test_refusal_heuristic(text, refused):
    assert is_refusal(text) is refused
    assert ("refusal" in answer_flags(text, "stop")) is refused


def test_a_torn_last_line_is_cut_off_and_its_prompt_asked_again(tmp_path):
    out = tmp_path / "teacher.jsonl"
    with ChatServer(answer) as server:
        collect(server, out, PROMPTS[:3])
        out.write_bytes(out.read_bytes() + b'{"prompt_id": "abc", "content": [{"ro')  # killed mid-write
        summary = collect(server, out)
    written = rows(out)  # parses every line: the torn bytes are gone
    assert len(written) == 8 and len({r["prompt_id"] for r in written}) == 8
    assert summary.torn_tail_repaired and summary.plan.done_before == 3 and server.requests == 8


def test_a_bad_line_in_the_middle_is_an_error_not_a_silent_repair(tmp_path):
    out = tmp_path / "teacher.jsonl"
    out.write_text('{"prompt_id": "a"}\nnot json\n{"prompt_id": "b"}\n')
    with ChatServer(answer) as server, pytest.raises(ValueError, match=r"teacher.jsonl:2: not a JSON line"):
        collect(server, out)


def test_resuming_with_another_model_or_sampling_is_refused(tmp_path):
    out = tmp_path / "teacher.jsonl"
    with ChatServer(answer) as server:
        collect(server, out, PROMPTS[:2])
        with pytest.raises(OutputMismatchError, match=r"`sampling`.*max_tokens.*new `--out`"):
            collect(server, out, request=TeacherRequest("teacher-m", max_tokens=64))


def test_evaluation_prompts_are_dropped_on_exact_and_normalized_match(tmp_path):
    vicuna = write_jsonl([{"text": "question 1"}, {"text": "  QUESTION   2 "}, {"text": "unrelated"}],
                         tmp_path / "vicuna.jsonl")
    dolly = write_jsonl([{"instruction": "Question 3"}], tmp_path / "dolly.jsonl")
    exclusion = EvalExclusion.load([EvalSetRef.parse(f"vicuna={vicuna}"), EvalSetRef.parse(f"dolly={dolly}")])
    with ChatServer(answer) as server:
        summary = collect(server, tmp_path / "t.jsonl", exclusion=exclusion)
        asked = set(server.answered_by_prompt)
    assert asked == {f"question {i}" for i in (0, 4, 5, 6, 7)} and summary.plan.excluded == 3
    assert exclusion.excluded == {("vicuna", "exact"): 1, ("vicuna", "normalized"): 1, ("dolly", "normalized"): 1}
    assert "vicuna (3 prompts): 1 exact + 1 normalized" in summary.report()


def test_exclude_eval_spec_is_checked_early():
    with pytest.raises(ValueError, match="unknown evaluation set `mmlu`"):
        EvalSetRef.parse("mmlu")
    assert EvalSetRef.parse("mine=x.jsonl") == EvalSetRef("mine", "x.jsonl")  # a set of your own, from its file
    with pytest.raises(ValueError, match="empty path"):
        EvalSetRef.parse("dolly=")


def test_dry_run_estimates_from_characters_or_observed_answers_and_sends_nothing(tmp_path):
    prompts = [[{"role": "user", "content": "x" * 40}]] * 3 + [[{"role": "user", "content": "y" * 8}]]
    request = TeacherRequest("teacher-m", max_tokens=100)
    plan, estimate = dry_run(prompts, tmp_path / "none.jsonl", request=request, price_in=2.0, price_out=10.0)
    # 2 unique prompts: (10 + 4 + 3) + (2 + 4 + 3) prompt tokens; max_tokens each for the answers.
    assert (plan.duplicates, estimate.prompts, estimate.prompt_tokens, estimate.completion_tokens) == (2, 2, 26, 200)
    assert estimate.cost == pytest.approx((26 * 2.0 + 200 * 10.0) / 1e6) and "upper bound" in estimate.report()
    assert not (tmp_path / "none.jsonl").exists()

    out = write_jsonl([{"prompt_id": prompt_id(prompts[0]), "completion_tokens": 30}], tmp_path / "t.jsonl")
    plan, estimate = dry_run(prompts, out, request=request)
    assert plan.done_before == 1 and estimate.completion_tokens == 30 and "already collected" in estimate.report()
