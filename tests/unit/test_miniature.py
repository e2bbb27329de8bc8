"""The miniature's tasks and its local teacher, reached over real HTTP with the `openai` client."""

import re
import threading
from collections import Counter

import pytest
from openai import OpenAI

from soda_plugin.verdict.template import load_template, parse_verdict
from soda_plugin.miniature import judge_responder, tasks
from soda_plugin.miniature.teacher_server import UNKNOWN_REPLY, make_server, running_teacher


def test_every_family_generates_questions_its_solver_reads_back():
    drawn = tasks.generate_tasks(60, seed=3)
    assert {t.family for t in drawn} == {f.name for f in tasks.FAMILIES}
    for task in drawn:
        assert tasks.solve(task.question) == (task.family, task.answer)
        assert tasks.exact_match(tasks.teacher_answer(task.question), task.answer)
        # The teacher's whole reply is one line in its format: no working, no restating.
        assert re.fullmatch(r"Answer: \S[^\n]*", tasks.teacher_answer(task.question))
    assert tasks.generate_tasks(60, seed=3) == drawn
    assert tasks.generate_tasks(60, seed=4) != drawn


def test_splits_are_disjoint_and_test_does_not_move_when_train_grows():
    small, large = tasks.split_tasks(20, 10, 15, seed=0), tasks.split_tasks(60, 10, 15, seed=0)
    questions = [{t.question for t in small[name]} for name in ("train", "val", "test")]
    assert not (questions[0] & questions[1]) and not (questions[0] & questions[2]) and not (questions[1] & questions[2])
    assert small["test"] == large["test"]
    assert not {t.question for t in large["train"]} & {t.question for t in large["test"]}
    full = tasks.split_tasks(192, 240, 240, seed=0)  # the full budget's sizes: no family's pool runs out
    assert [len(full[name]) for name in ("train", "val", "test")] == [192, 240, 240]
    assert Counter(t.family for t in full["test"]) == {name: 40 for name in tasks.FAMILY_NAMES}
    nouns = [{t.question for t in full[name] if t.family == "plural"} for name in ("train", "val", "test")]
    assert not (nouns[0] & nouns[1]) and not (nouns[0] & nouns[2]) and not (nouns[1] & nouns[2])


@pytest.mark.parametrize("question, value", [
    ("What is 46 minus 6?", "40"), ("What is 7 times 8?", "56"), ("What number comes before 131?", "130"),
    ("What number comes after 999?", "1000"), ("Which number is smaller, 73 or 67?", "67"),
    ("Which number is larger, 39 or 85?", "85"), ("Convert 52 meters to centimeters.", "5200 centimeters"),
    ("Convert 3 centuries to years.", "300 years"), ("What is the last word in this list: meadow, pepper, silver?", "silver"),
    ("What is the first word in this list: meadow, pepper, silver?", "meadow"), ("What is the plural of 'box'?", "boxes"),
    ("What is the plural of 'city'?", "cities"), ("What is the plural of 'mouse'?", "mice"),
    ("What is the plural of 'knife'?", "knives"),
])
def test_families_solve_their_questions(question, value):
    assert tasks.teacher_answer(question) == f"Answer: {value}"


def test_q0_style_answers_are_not_exact_matches():
    # SmolLM2's own answers to these questions (docs/miniature.md): right value, not the format.
    assert not tasks.exact_match("The plural of 'box' is 'boxes'.", "boxes")
    assert not tasks.exact_match("To add 6 and 7, we need to follow the order of operations.", "13")
    assert tasks.exact_match("6 + 7 = 13.\nAnswer: 13", "13")


@pytest.mark.parametrize("reply, answer, expected", [
    ("12 + 5 = 17.\nAnswer: 17", "17", True),
    ("answer:  17.", "17", True),
    ("The sum is 17", "17", False),  # no `Answer:` line: the last line must be the value itself
    ("Sure!\n17", "17", True),
    ("Answer: 17\nAnswer: 18", "17", False),  # the last commitment counts
    ("Answer: 2, 5, 9", "2, 5, 9", True),
    ("", "17", False),
])
def test_exact_match_reads_the_final_commitment(reply, answer, expected):
    assert tasks.exact_match(reply, answer) is expected


@pytest.fixture
def teacher():
    server = make_server(judge=judge_responder.judge_verdict)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="unused", max_retries=0)
    server.shutdown()
    server.server_close()


def _ask(client, content, **params):
    response = client.chat.completions.create(model="program-teacher", messages=[{"role": "user", "content": content}],
                                              **params)
    return response.choices[0]


def test_teacher_answers_exactly_and_refuses_what_it_cannot_do(teacher):
    choice = _ask(teacher, "What is 7 times 8?")
    assert choice.message.content == "Answer: 56" and choice.finish_reason == "stop"
    assert _ask(teacher, "Write a poem about the sea.").message.content == UNKNOWN_REPLY
    truncated = _ask(teacher, "Convert 7 kilometers to meters.", max_tokens=2)
    assert truncated.finish_reason == "length" and truncated.message.content == "Answer: 7000"


def test_a_hot_teacher_is_a_careless_one_deterministically(teacher):
    question = "Convert 7 kilometers to meters."
    hot = [_ask(teacher, question, temperature=1.5).message.content for _ in range(2)]
    assert hot[0] == hot[1]
    assert not tasks.exact_match(hot[0], "7000 meters")
    assert tasks.exact_match(_ask(teacher, question, temperature=1.0).message.content, "7000 meters")


def test_teacher_judges_requests_rendered_from_the_judge_template(teacher):
    question = "What is 40 minus 15?"
    right, wrong = tasks.teacher_answer(question), "I think it is 24.\nAnswer: 24"
    verbose = right + "\n" + "Let me explain that again in more words. " * 5
    for answer_1, answer_2, expected in [(right, wrong, (10.0, 2.0)), (wrong, right, (2.0, 10.0)),
                                         (verbose, "", (8.0, 1.0))]:
        messages = load_template().render(question, answer_1, answer_2)
        response = teacher.chat.completions.create(model="program-teacher", messages=messages)
        assert parse_verdict(response.choices[0].message.content) == expected


def test_teacher_runs_as_its_own_process(tmp_path):
    with running_teacher(tmp_path / "teacher.log") as base_url:
        client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        assert _ask(client, "What is the plural of 'child'?").message.content == "Answer: children"
        assert client.models.list().data[0].id == "program-teacher"
