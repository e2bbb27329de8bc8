"""Batch mode pieces: request files within the limits, result lines -> results or failure
kinds, the journal's torn last line, and (against the real local servers) the same rows as
the online mode, API retries, and a request too large for any file."""

import json

import pytest

from batch_server import BatchServer
from chat_server import ChatServer, Reply
from soda_plugin.client import ClientSettings
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.teacher.batch import BatchOptions, run_batch_collection
from soda_plugin.client.batch_files import request_line, split_requests
from soda_plugin.client.batch_journal import BatchJournal
from soda_plugin.client.batch_results import parse_item
from soda_plugin.teacher.collect import TeacherRequest, run_collection

PROMPTS = [[{"role": "user", "content": f"Question {i}?"}] for i in range(12)]
FAST = BatchOptions(poll_s=0.02, max_wait_s=60)


def answer(request):
    return Reply(f"A: {request['messages'][-1]['content']}", "stop", 5, 7)


def settings(server, **values):
    return ClientSettings(base_url=server.base_url, model="teacher-m", max_attempts=3, backoff_base_s=0.01, **values)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_split_requests_keeps_both_limits_and_reports_lines_too_large():
    lines = [(str(i), b"x" * size) for i, size in enumerate([3, 3, 3, 3, 7, 20, 1])]
    too_large = []
    files = list(split_requests(lines, max_requests=3, max_bytes=10, too_large=too_large))
    assert [[pid for pid, _ in f] for f in files] == [["0", "1", "2"], ["3", "4"], ["6"]]
    assert all(len(f) <= 3 and sum(len(line) for _, line in f) <= 10 for f in files)
    assert too_large == [("5", 20)]
    with pytest.raises(ValueError, match="`--batch-max-requests` \\(0\\)"):
        list(split_requests(lines, max_requests=0, max_bytes=10, too_large=[]))


def test_request_line_is_one_chat_completions_request_per_prompt():
    line = request_line("abc", {"model": "m", "messages": [{"role": "user", "content": "hé"}], "max_tokens": 5})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"custom_id": "abc", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "m", "messages": [{"role": "user", "content": "hé"}], "max_tokens": 5}}


def _line(custom_id="p1", status=200, body=None, error=None):
    body = body if body is not None else {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                                          "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    return json.dumps({"custom_id": custom_id, "response": None if error else {"status_code": status, "body": body},
                       "error": error}).encode()


@pytest.mark.parametrize("line, pid, kind", [
    (_line(), "p1", None),
    (_line(status=500), "p1", "server_error"),
    (_line(status=429), "p1", "rate_limit"),
    (_line(status=400), "p1", "bad_request"),
    (_line(error={"code": "batch_expired", "message": "expired"}), "p1", "expired"),
    (_line(body={"choices": []}), "p1", "malformed"),
    (_line(body={"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": -1}}), "p1", "malformed"),
    (b'{"custom_id": "p1", "response": {"sta', "p1", "malformed"),  # cut, but names its prompt
    (b'{"id": "x", "resp', None, "malformed"),
    (_line(custom_id="other"), None, "malformed"),  # not a prompt of this batch
])
def test_parse_item_gives_the_result_or_the_failure_kind(line, pid, kind):
    item = parse_item(line, {"p1", "p2"})
    assert (item.prompt_id, item.kind) == (pid, kind)
    if kind is None:
        assert (item.result.text, item.result.prompt_tokens, item.result.completion_tokens) == ("hi", 3, 2)
    else:
        assert item.result is None


def test_journal_cuts_a_torn_last_line_and_tracks_what_is_in_flight(tmp_path):
    path = tmp_path / "t.batches.jsonl"
    journal = BatchJournal(path)
    journal.record({"event": "file", "file_id": "f1", "prompt_ids": ["a", "b"]})
    journal.record({"event": "batch", "batch_id": "b1", "file_id": "f1"})
    journal.record({"event": "file", "file_id": "f2", "prompt_ids": ["c"]})
    journal.close()
    with path.open("ab") as handle:
        handle.write(b'{"event": "batch", "batch_id": "b2", "fi')  # a kill mid-write
    again = BatchJournal(path)
    assert again.state.torn_tail_bytes > 0 and again.state.unbatched_files() == ["f2"]
    assert again.state.open_batches() == ["b1"] and again.state.in_flight() == {"a", "b", "c"}
    again.record({"event": "closed", "batch_id": "b1", "status": "completed"})
    again.close()
    assert all(json.loads(line) for line in path.read_bytes().splitlines())  # the torn bytes are gone
    assert BatchJournal(path).state.in_flight() == {"c"}


def test_batch_mode_writes_the_rows_the_online_mode_writes(tmp_path):
    request = TeacherRequest("teacher-m", system_prompt="Be brief.", temperature=0.3, max_tokens=32)
    bodies = {"online": [], "batch": []}

    def recording(mode):
        return lambda body: (bodies[mode].append(body), answer(body))[1]

    with ChatServer(recording("online")) as server:
        run_collection(PROMPTS, tmp_path / "online.jsonl", settings=settings(server), request=request, progress=False)
    with BatchServer(recording("batch")) as server:
        summary = run_batch_collection(PROMPTS, tmp_path / "batch.jsonl", settings=settings(server), request=request,
                                       options=FAST, progress=False)
    assert summary.answered == len(PROMPTS) and not summary.failed
    key = lambda body: body["messages"][-1]["content"]  # noqa: E731
    assert sorted(bodies["batch"], key=key) == sorted(bodies["online"], key=key)
    by_id = lambda path: {row["prompt_id"]: row for row in rows(path)}  # noqa: E731
    assert by_id(tmp_path / "batch.jsonl") == by_id(tmp_path / "online.jsonl")


def test_api_errors_are_retried_and_counted(tmp_path):
    with BatchServer(answer) as server:
        server.inject("500", "429")  # the first upload fails twice
        summary = run_batch_collection(PROMPTS, tmp_path / "t.jsonl", settings=settings(server),
                                       request=TeacherRequest("teacher-m"), options=FAST, progress=False)
        assert server.uploads == 1 and not server.api_faults
    assert summary.batch.api_retries == {"server_error": 1, "rate_limit": 1}
    assert len(rows(tmp_path / "t.jsonl")) == len(PROMPTS)


def test_a_request_too_large_for_any_file_is_counted_not_sent(tmp_path):
    prompts = [*PROMPTS[:3], [{"role": "user", "content": "long " * 100}]]
    with BatchServer(answer) as server:
        summary = run_batch_collection(prompts, tmp_path / "t.jsonl", settings=settings(server),
                                       request=TeacherRequest("teacher-m"),
                                       options=BatchOptions(poll_s=0.02, max_bytes=300), progress=False)
        assert sum(server.submitted.values()) == 3 and "long " * 100 not in server.submitted
    assert summary.failed == {"too_large": 1} and summary.answered == 3
    assert {row["prompt_id"] for row in rows(tmp_path / "t.jsonl")} == {prompt_id(p) for p in PROMPTS[:3]}


def test_a_journaled_batch_the_server_does_not_know_is_a_clear_error(tmp_path):
    out = tmp_path / "t.jsonl"
    journal = BatchJournal(tmp_path / "t.batches.jsonl")
    journal.record({"event": "file", "file_id": "file-x", "prompt_ids": [prompt_id(PROMPTS[0])]})
    journal.record({"event": "batch", "batch_id": "batch-elsewhere", "file_id": "file-x"})
    journal.close()
    with BatchServer(answer) as server, pytest.raises(ValueError, match="batch `batch-elsewhere` from the journal"):
        run_batch_collection(PROMPTS, out, settings=settings(server), request=TeacherRequest("teacher-m"),
                             options=FAST, progress=False)
    assert not rows(out)


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"max_requests": 0}, {"max_bytes": 0}, {"poll_s": 0},
                                 {"max_wait_s": -1}, {"discount": -0.5}])
def test_batch_options_out_of_range_are_refused_before_anything_is_written(tmp_path, bad):
    options = BatchOptions(**{**vars(FAST), **bad})
    with pytest.raises(ValueError, match="batch options out of range"):
        run_batch_collection(PROMPTS, tmp_path / "t.jsonl", settings=ClientSettings("http://127.0.0.1:9/v1", "m"),
                             request=TeacherRequest("m"), options=options, progress=False)
    assert not list(tmp_path.iterdir())


def test_answers_for_prompts_no_longer_in_the_input_are_counted_not_written(tmp_path):
    from soda_plugin.teacher.batch import BatchWaitError

    out = tmp_path / "t.jsonl"
    with BatchServer(answer, hold="batch") as server:
        with pytest.raises(BatchWaitError, match="still unfinished") as waited:
            run_batch_collection(PROMPTS, out, settings=settings(server), request=TeacherRequest("teacher-m"),
                                 options=BatchOptions(poll_s=0.02, max_wait_s=0.2), progress=False)
        assert len(waited.value.batch_ids) == 1
        server.release()
        summary = run_batch_collection(PROMPTS[:8], out, settings=settings(server), request=TeacherRequest("teacher-m"),
                                       options=FAST, progress=False)
        assert server.batches_created == 1
    assert summary.batch.answers_not_written == 4 and "4 answers not written" in summary.report()
    assert {row["prompt_id"] for row in rows(out)} == {prompt_id(p) for p in PROMPTS[:8]}


def test_a_failed_batch_is_resubmitted_and_the_rounds_are_bounded(tmp_path):
    with BatchServer(answer, fail_batches=1) as server:
        summary = run_batch_collection(PROMPTS, tmp_path / "a.jsonl", settings=settings(server),
                                       request=TeacherRequest("teacher-m"), options=FAST, progress=False)
        assert server.batches_created == 2 and set(server.submitted.values()) == {2}
    assert summary.answered == len(PROMPTS) and summary.usage.retries == {"batch_failed": len(PROMPTS)}
    # Every batch fails: each prompt is sent in `rounds` batches, then counted as failed.
    with BatchServer(answer, fail_batches=99) as server:
        summary = run_batch_collection(PROMPTS, tmp_path / "b.jsonl", settings=settings(server),
                                       request=TeacherRequest("teacher-m"),
                                       options=BatchOptions(poll_s=0.02, rounds=2), progress=False)
        assert server.batches_created == 2 and set(server.submitted.values()) == {2}
    assert summary.failed == {"batch_failed": len(PROMPTS)} and summary.answered == 0
    assert f"{len(PROMPTS)} prompts have no answer" in summary.report()
    assert "invalid_request: injected validation failure" in summary.failed_examples[0]
