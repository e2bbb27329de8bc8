"""`soda_plugin.miniature.metrics`: format, rambling, restating, length and movement of answers."""

from __future__ import annotations

import pytest

from soda_plugin.miniature import metrics

QUESTIONS = {"add": "What is 6 plus 7?", "convert": "Convert 7 meters to centimeters.",
             "plural": "What is the plural of 'box'?"}
TEACHER = {"add": "Answer: 13", "convert": "Answer: 700 centimeters", "plural": "Answer: boxes"}


def row(pid: str, response: str, finish_reason: str = "stop", tokens: int = 4) -> dict:
    return {"prompt_id": pid, "response": response, "finish_reason": finish_reason, "response_tokens": tokens}


@pytest.mark.parametrize("pid", list(QUESTIONS))
def test_teacher_style_answers_pass(pid):
    answer = TEACHER[pid]
    assert metrics.follows_format(answer)
    assert metrics.has_answer_line(answer)
    assert not metrics.rambles(answer)
    assert not metrics.restates(QUESTIONS[pid], answer)


def test_answer_42_follows_format():
    assert metrics.follows_format("Answer: 42")
    assert metrics.follows_format("  Answer: 42\n")


@pytest.mark.parametrize("response", ["To add 6 and 7, we need to follow the order of operations",
                                      "answer: 42", "Answer:42", "Answer: ", "Answer: 13\nBecause.",
                                      "The answer is 13.\nAnswer: 13"])
def test_format_failures(response):
    assert not metrics.follows_format(response)


def test_has_answer_line():
    assert metrics.has_answer_line("Let me think.\n  answer: 13")
    assert metrics.has_answer_line("ANSWER: 13")
    assert not metrics.has_answer_line("To add 6 and 7, we need to follow the order of operations")
    assert not metrics.has_answer_line("The answer: 13")


def test_rambles():
    assert metrics.rambles("Answer: 13\nThis is because 6 plus 7...")
    assert metrics.rambles("Answer: 13\n\n  more")
    assert not metrics.rambles("Answer: 13\n   \n")
    assert not metrics.rambles("Answer: 13 because 6 plus 7 is 13")  # same line: not past the line
    assert not metrics.rambles("To add 6 and 7, we need to follow the order of operations")
    # Only text after the FIRST Answer: line counts.
    assert metrics.rambles("Answer: 13\nAnswer: 13")


def test_restates():
    assert metrics.restates("What is the plural of 'box'?", "The plural of 'box' is 'boxes'.")
    assert metrics.restates("What is the last word in this list: a, b, c?", "The last word in this list is c.")
    assert not metrics.restates("What is 6 plus 7?", "To add 6 and 7, we need to follow the order of operations")
    assert not metrics.restates("What is the plural of 'box'?", "The plural is boxes.")


def test_restates_short_question_compares_whole_question():
    assert metrics.restates("Plural of box?", "The plural of box is boxes.")
    assert not metrics.restates("Plural of box?", "Plural of boxes.")
    assert not metrics.restates("", "anything")


def test_normalized_and_edit_distance():
    assert metrics.normalized("  Answer:\t13 \n ") == "answer: 13"
    assert metrics.token_edit_distance("Answer: 13", "answer:   13") == 0.0
    assert metrics.token_edit_distance("", "") == 0.0
    assert metrics.token_edit_distance("a b c d", "a x c d") == 0.25
    assert metrics.token_edit_distance("a b", "a b c d") == 0.5
    assert metrics.token_edit_distance("a b", "") == 1.0
    assert metrics.token_edit_distance("x y", "p q r") == 1.0


def test_movement_identical_and_different():
    rows = {pid: row(pid, text) for pid, text in TEACHER.items()}
    same = metrics.movement(rows, {pid: row(pid, "  " + text.upper()) for pid, text in TEACHER.items()},
                            list(TEACHER))
    assert (same.changed_rate, same.mean_edit_distance, same.n) == (0.0, 0.0, 3)
    other = {pid: row(pid, "no idea at all") for pid in TEACHER}
    moved = metrics.movement(rows, other, list(TEACHER))
    assert (moved.changed_rate, moved.mean_edit_distance, moved.n) == (100.0, 1.0, 3)
    assert moved.to_dict() == {"changed_rate": 100.0, "mean_edit_distance": 1.0, "n": 3}


def test_movement_partial():
    rows = {"p": row("p", "Answer: 13"), "q": row("q", "Answer: 5")}
    ref = {"p": row("p", "Answer: 13"), "q": row("q", "Answer: 6")}
    moved = metrics.movement(rows, ref, ["p", "q"])
    assert moved.changed_rate == 50.0 and moved.mean_edit_distance == 0.25


def test_movement_missing_row_raises():
    rows = {"p": row("p", "Answer: 13")}
    with pytest.raises(ValueError, match="'q'"):
        metrics.movement(rows, {"p": row("p", "x"), "q": row("q", "y")}, ["p", "q"])
    with pytest.raises(ValueError, match="'q'"):
        metrics.movement({"p": row("p", "x"), "q": row("q", "y")}, rows, ["p", "q"])


def test_answer_metrics_hand_made_set():
    questions = {**QUESTIONS, "last": "What is the last word in this list: a, b, c?"}
    teacher_tokens = {"add": 4, "convert": 5, "plural": 4, "last": 4}
    rows = {
        "add": row("add", "Answer: 13\nThis is because 6 plus 7 is 13.", tokens=12),  # rambles, 3x
        "convert": row("convert", "Answer: 700 centimeters", tokens=5),  # teacher-like
        "plural": row("plural", "The plural of 'box' is 'boxes'.", tokens=8),  # restates, no line, 2x
        "last": row("last", "The last word in this list is c, because", "length", tokens=16),  # 4x, cut
        "extra": row("extra", "ignored: not in questions", tokens=100),
    }
    m = metrics.answer_metrics(rows, questions, teacher_tokens)
    assert m.n == 4
    assert m.stop_rate == 75.0 and m.truncation_rate == 25.0
    assert m.format_rate == 25.0
    assert m.answer_line_rate == 50.0
    assert m.ramble_rate == 25.0
    assert m.restate_rate == 50.0
    assert m.mean_tokens == (12 + 5 + 8 + 16) / 4
    assert m.length_ratio == pytest.approx((3 + 1 + 2 + 4) / 4)
    assert m.over_2x_teacher_rate == 50.0  # 3x and 4x; exactly 2x is not over
    assert set(m.to_dict()) == {"n", "stop_rate", "truncation_rate", "format_rate", "answer_line_rate",
                                "ramble_rate", "restate_rate", "mean_tokens", "length_ratio",
                                "over_2x_teacher_rate"}


def test_answer_metrics_of_teacher_answers():
    rows = {pid: row(pid, text, tokens=3) for pid, text in TEACHER.items()}
    m = metrics.answer_metrics(rows, QUESTIONS, {pid: 3 for pid in QUESTIONS})
    assert (m.stop_rate, m.format_rate, m.answer_line_rate, m.ramble_rate, m.restate_rate) == (100, 100, 100, 0, 0)
    assert (m.length_ratio, m.over_2x_teacher_rate, m.truncation_rate) == (1.0, 0.0, 0.0)


def test_answer_metrics_missing_row_raises():
    rows = {"add": row("add", "Answer: 13")}
    with pytest.raises(ValueError, match="'convert'"):
        metrics.answer_metrics(rows, QUESTIONS, {pid: 3 for pid in QUESTIONS})


def test_answer_metrics_missing_teacher_tokens_raises():
    rows = {pid: row(pid, text) for pid, text in TEACHER.items()}
    with pytest.raises(ValueError, match="'plural'"):
        metrics.answer_metrics(rows, QUESTIONS, {"add": 3, "convert": 3})
