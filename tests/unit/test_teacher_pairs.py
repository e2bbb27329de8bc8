"""Collected teacher answers go straight into the pair builder, which drops flagged rows
and counts them per reason."""

from chat_server import ChatServer, Reply
from soda_plugin.client import ClientSettings
from soda_plugin.pairs import DropReason, build_pairs, iter_pairs
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.teacher.collect import TeacherRequest, run_collection
from soda_data import write_jsonl

PROMPTS = [[{"role": "user", "content": f"task {i}"}] for i in range(6)]
REPLIES = {"task 0": Reply("I'm sorry, but I can't help with that."), "task 1": Reply(" "),
           "task 2": Reply("Half an ans", "length"), "task 3": Reply("[filtered]", "content_filter")}


def snapshot_row(messages):
    return {"prompt_id": prompt_id(messages), "sample_index": 0, "prompt": messages, "response": "a student guess",
            "finish_reason": "stop", "prompt_tokens": 3, "response_tokens": 3, "source": "q0:tiny"}


def test_builder_drops_flagged_teacher_rows_per_reason(tmp_path):
    with ChatServer(lambda r: REPLIES.get(r["messages"][-1]["content"]) or Reply("a good answer")) as server:
        run_collection(PROMPTS, tmp_path / "teacher.jsonl", request=TeacherRequest("t"), progress=False,
                       settings=ClientSettings(base_url=server.base_url, model="t", concurrency=2))
    snapshot = write_jsonl([snapshot_row(p) for p in PROMPTS], tmp_path / "q0.jsonl")
    report = build_pairs([tmp_path / "teacher.jsonl"], [snapshot], tmp_path / "pairs")
    dropped = {k: v for k, v in report.dropped.items() if v}
    assert dropped == {DropReason.REFUSED_TEACHER_ANSWER.value: 1, DropReason.EMPTY_TEACHER_ANSWER.value: 1,
                       DropReason.TRUNCATED_TEACHER_ANSWER.value: 1, DropReason.FLAGGED_TEACHER_ANSWER.value: 1,
                       DropReason.NO_TEACHER_ROW.value: 4}
    assert sorted(p["content"][0]["content"] for p in iter_pairs(tmp_path / "pairs")) == ["task 4", "task 5"]


def test_a_truncated_flag_follows_the_truncation_policy_and_bad_flags_are_malformed(tmp_path):
    rows = [{"content": PROMPTS[0], "teacher_response": "cut", "flags": ["truncated"]},
            {"content": PROMPTS[1], "teacher_response": "ok", "flags": "refusal"},
            {"content": PROMPTS[2], "teacher_response": "ok", "flags": None}]
    teacher = write_jsonl(rows, tmp_path / "teacher.jsonl")
    snapshot = write_jsonl([snapshot_row(p) for p in PROMPTS[:3]], tmp_path / "q0.jsonl")
    report = build_pairs([teacher], [snapshot], tmp_path / "drop")
    assert report.kept == 1 and report.dropped[DropReason.TRUNCATED_TEACHER_ANSWER.value] == 1
    assert report.dropped[DropReason.MALFORMED_TEACHER_ROW.value] == 1
    kept = build_pairs([teacher], [snapshot], tmp_path / "keep", truncated="keep")
    assert kept.kept == 2 and kept.dropped[DropReason.TRUNCATED_TEACHER_ANSWER.value] == 0
