"""The pair builder's judge filter (`--judge-filter`): does the teacher beat q0? Verdicts come
from a real local server (`chat_server.ChatServer` + `judge_responder.JudgeResponder`);
what is kept, dropped and marked is read back from the pair files and the card, and what
was paid from the server's own request count."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat_server import ChatServer, wait_for
from judge_responder import JudgeResponder
from soda_plugin.client import ClientSettings
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.verdict import JudgeSettings, load_template
from soda_plugin.pairs import DropReason, JudgeFilterConfig, UnjudgedPairsError, build_pairs, iter_pairs
from soda_plugin.pairs.judge_filter import decide, teacher_score
from soda_data import pair_inputs, write_jsonl

# (teacher answer, q0 answer) -> what the filter must decide. `q=N` is the judge's score
# of an answer; `q=A/B` is A as Assistant 1 and B as Assistant 2 (a position-biased judge).
CASES = [
    ("Teacher: 0. q=9", "Student: 1. q=2", "unjudged_failed"),  # the first request meets an injected 400
    ("Teacher: 2. q=9", "Student: 3. q=3", "teacher_won"),
    ("Teacher: 4. q=3", "Student: 5. q=8", "teacher_not_better"),
    # The orders disagree, each favouring Assistant 1 by 8 to 6: a tie on average, not a win.
    ("Teacher: 6. q=8/6", "Student: 7. q=8/6", "teacher_not_better"),
    # The orders disagree but the teacher wins on average: (9/12 + 5/11) / 2 = 0.602.
    ("Teacher: 8. q=9/5", "Student: 9. q=6/3", "teacher_won"),
    ("Teacher: 10. q=9 BAD3", "Student: 11. q=4", "unjudged_unparsable"),  # 3 bad verdicts per order
]
RUN_1_REQUESTS = 12 + 2 * 2  # 6 pairs x 2 orders, plus 2 more attempts for each order of the BAD3 pair


def write_inputs(tmp_path, cases=CASES):
    return pair_inputs(cases, tmp_path)


def config(server, **kwargs):
    return JudgeFilterConfig(client=ClientSettings(base_url=server.base_url, model="judge", concurrency=1),
                             judge=JudgeSettings("judge", load_template()), **kwargs)


def marks(out):
    return {p["teacher_response"]: p["judge_verdict"] for p in iter_pairs(out)}


def test_rule_is_the_mean_of_both_orders_and_a_tie_is_no_win():
    assert teacher_score(teacher_first=(9, 3), q0_first=(3, 9)) == 0.75
    assert decide((8, 6), (8, 6), margin=0.0).value == "teacher_not_better"
    assert decide((9, 5), (6, 5), margin=0.0).value == "teacher_won"
    assert decide((9, 5), (6, 5), margin=0.15).value == "teacher_not_better"  # 0.602 < 0.65
    with pytest.raises(ValueError, match="judge_filter_margin"):
        JudgeFilterConfig(client=ClientSettings(base_url="http://127.0.0.1:9/v1", model="judge"),
                          judge=JudgeSettings("judge", load_template()), margin=0.5)


def test_drop_mode_keeps_and_drops_the_right_pairs_and_a_rerun_pays_only_for_what_is_missing(tmp_path):
    teacher, snapshot = write_inputs(tmp_path)
    out = tmp_path / "out"
    with ChatServer(JudgeResponder()) as server:
        server.inject("400")  # concurrency 1: the first pair's teacher-first verdict is rejected
        cfg = config(server)
        report = build_pairs([teacher], [snapshot], out, judge_filter=cfg)
        assert server.requests == RUN_1_REQUESTS
        expected = {t: mark for t, _, mark in CASES if mark != "teacher_not_better"}
        assert marks(out) == expected
        assert report.kept == 4 and report.dropped[DropReason.TEACHER_NOT_BETTER.value] == 2
        scores = {p["teacher_response"]: p["judge_teacher_score"] for p in iter_pairs(out)}
        assert scores["Teacher: 2. q=9"] == 0.75 and scores["Teacher: 8. q=9/5"] == pytest.approx(0.6022727)
        assert scores["Teacher: 0. q=9"] is None and scores["Teacher: 10. q=9 BAD3"] is None
        counts = report.judge_filter["counts"]
        assert counts == {"judged": 6, "teacher_won": 2, "teacher_not_better": 2, "unjudged_unparsable": 1,
                          "unjudged_failed": 1, "dropped": 2, "kept": 4}
        assert report.judge_filter["calls"]["verdicts_failed"] == {"bad_request": 1}

        card = (out / "README.md").read_text()
        for text in ("## Teacher-vs-q0 judge filter", "| teacher_won | 2 |", "| teacher_not_better | 2 |",
                     "| unjudged_unparsable | 1 |", "| unjudged_failed | 1 |",
                     "| teacher_not_better | 2 | candidate pairs |",
                     "| kept / dropped | 4 / 2 |", "`Teacher: 6. q=8/6`", "verdict teacher first `8 6`, q0 first `8 6`",
                     "teacher score 0.500", "`judge_filter`=drop"):
            assert text in card, text
        on_disk = json.loads((out / "build_report.json").read_text())
        assert on_disk["counts"]["dropped"]["teacher_not_better"] == 2
        assert on_disk["judge_filter"]["counts"] == counts

        # The failed request and the two unparsable orders were not cached: only they are asked again.
        build_pairs([teacher], [snapshot], out, judge_filter=cfg, overwrite=True)
        assert server.requests == RUN_1_REQUESTS + 3
        assert marks(out) == {**expected, "Teacher: 0. q=9": "teacher_won", "Teacher: 10. q=9 BAD3": "teacher_won"}
        again = build_pairs([teacher], [snapshot], out, judge_filter=cfg, overwrite=True)
        assert server.requests == RUN_1_REQUESTS + 3, "every verdict is cached: a re-run pays for nothing"
        assert again.judge_filter["calls"]["verdicts_cached"] == 12 and again.judge_filter["usage"]["requests"] == 0
    assert "Verdicts: 0 new, 12 cached" in (out / "README.md").read_text()


def test_flag_mode_keeps_every_pair_marked_and_the_key_stays_out_of_every_file(tmp_path, monkeypatch):
    key = "sk-fake-judge-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    teacher, snapshot = write_inputs(tmp_path, CASES[1:])
    with ChatServer(JudgeResponder()) as server:
        report = build_pairs([teacher], [snapshot], tmp_path / "out", judge_filter=config(server, action="flag"))
    assert server.authorizations == {f"Bearer {key}"}
    assert marks(tmp_path / "out") == {t: mark for t, _, mark in CASES[1:]}
    assert report.kept == 5 and report.dropped[DropReason.TEACHER_NOT_BETTER.value] == 0
    assert report.judge_filter["counts"]["teacher_not_better"] == 2
    assert "kept, flagged" in (tmp_path / "out" / "README.md").read_text()
    for path in (tmp_path / "out").rglob("*"):  # pairs, card, report and the verdict cache
        assert not path.is_file() or key.encode() not in path.read_bytes(), path


def test_unjudged_fail_writes_nothing_and_names_the_counts(tmp_path):
    teacher, snapshot = write_inputs(tmp_path, CASES[1:])
    out = tmp_path / "out"
    with ChatServer(JudgeResponder()) as server:
        with pytest.raises(UnjudgedPairsError, match=r"1 of 5 judged pairs .*\(1 unparsable after 3 requests"):
            build_pairs([teacher], [snapshot], out, judge_filter=config(server, unjudged="fail"))
        assert not (out / "data").exists() or not any((out / "data").iterdir())
        # Its parsed verdicts were cached; the re-run asks only the BAD3 pair's two orders once more.
        before = server.requests
        report = build_pairs([teacher], [snapshot], out, judge_filter=config(server, unjudged="fail"))
        assert server.requests - before == 2 and report.kept == 3


def test_cli_takes_the_filter_and_refuses_judge_options_without_it(tmp_path, capsys):
    from soda_plugin.cli.main import main

    teacher, snapshot = write_inputs(tmp_path, CASES[1:4])
    args = ["pairs", "--teacher", str(teacher), "--snapshot", str(snapshot), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="without --judge-filter"):
        main(args + ["--judge-model", "judge"])
    with pytest.raises(SystemExit, match="needs --judge-base-url"):
        main(args + ["--judge-filter", "--judge-model", "judge"])
    with ChatServer(JudgeResponder()) as server:
        assert main(args + ["--judge-filter", "--judge-base-url", server.base_url, "--judge-model", "judge",
                            "--judge-filter-margin", "0.15", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "teacher_not_better" in printed and "judge verdicts: 6 new, 0 cached" in printed
    assert marks(tmp_path / "out") == {"Teacher: 2. q=9": "teacher_won"}


def test_a_killed_build_loses_no_paid_verdict(tmp_path):
    """Killed while a verdict is in flight, the rerun asks only for the verdicts never answered."""
    root = Path(__file__).resolve().parents[2]
    teacher, snapshot = write_inputs(tmp_path, CASES[1:5])  # 4 pairs, 8 verdicts, all parsable
    answered = 3
    with ChatServer(JudgeResponder(), hold_after=answered) as server:
        command = [sys.executable, str(root / "tools" / "build_pairs.py"), "--teacher", str(teacher),
                   "--snapshot", str(snapshot), "--out", str(tmp_path / "out"), "--judge-filter",
                   "--judge-base-url", server.base_url, "--judge-model", "judge", "--judge-concurrency", "1",
                   "--no-progress"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: server.held == 1, timeout_s=60), "the build never reached its 4th verdict"
        finally:
            proc.kill()
            proc.wait(30)
        server.release()
        report = build_pairs([teacher], [snapshot], tmp_path / "out", judge_filter=config(server), overwrite=True)
        assert server.requests == answered + 1 + (8 - answered)  # the held one was never answered to the build
    assert report.judge_filter["calls"]["verdicts_cached"] == answered and report.kept == 2


def test_the_miniature_teacher_judges_teacher_against_q0(tmp_path):
    """The miniature's build step, through the real tool, with its local teacher as judge:
    a wrong q0 answer loses, a correct and as concise one ties and is dropped."""
    import threading

    from soda_plugin.miniature import judge_responder, tasks
    from soda_plugin.miniature.pipeline import build_pairs as miniature_pairs, pair_filter_counts
    from soda_plugin.miniature.teacher_server import make_server

    drawn = tasks.generate_tasks(4, seed=0)
    teacher = write_jsonl([{"content": t.messages(), "teacher_response": tasks.teacher_answer(t.question)}
                           for t in drawn], tmp_path / "teacher.jsonl")
    # q0 right and as concise (not the very same text, which the builder drops before judging).
    q0 = [f"Answer: {t.answer}." if i == 0 else f"I am not sure.\nAnswer: {t.answer}x" for i, t in enumerate(drawn)]
    snapshot = write_jsonl([{"prompt_id": prompt_id(t.messages()), "sample_index": 0, "prompt": t.messages(),
                             "response": r, "finish_reason": "stop", "source": "q0:smol"} for t, r in zip(drawn, q0)],
                           tmp_path / "q0.jsonl")
    server = make_server(judge=judge_responder.judge_verdict)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = miniature_pairs(teacher, str(snapshot), tmp_path / "pairs", tmp_path / "pairs.log",
                              judge_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    finally:
        server.shutdown()
        server.server_close()
    counts = pair_filter_counts({"q0": out})["q0"]
    assert (counts["judged"], counts["kept"], counts["teacher_not_better"]) == (4, 3, 1)
    assert {p["student_response"] for p in iter_pairs(out)} == set(q0[1:])
