"""The versioned judge template: strict verdict parsing, render and read-back."""

import pytest

from soda_plugin.verdict.template import (JudgeTemplate, UnparsableVerdictError, clamp_to_scale, load_template,
                                        parse_verdict, question_text)


@pytest.mark.parametrize("text, scores", [
    ("8 6", (8.0, 6.0)),
    ("8 6\nAssistant 1 gives more detail.", (8.0, 6.0)),
    ("\n  7.5 10  \nexplanation", (7.5, 10.0)),
    ("9, 3\n", (9.0, 3.0)),
    ("1 10", (1.0, 10.0)),
])
def test_a_first_line_of_two_scores_parses(text, scores):
    assert parse_verdict(text) == scores


@pytest.mark.parametrize("text", [
    "", "8", "8 6 7", "Assistant 1: 8, Assistant 2: 6", "Both did well.\n8 6", "8/10 6/10", "**8 6**",
    "7 -2", "8 six",
])
def test_anything_else_is_unparsable(text):
    with pytest.raises(UnparsableVerdictError):
        parse_verdict(text)


@pytest.mark.parametrize("text, scores, clamped", [
    ("0 5", (1.0, 5.0), True),  # an empty answer's usual verdict: kept, at the bottom of the scale
    ("11 3", (10.0, 3.0), True),
    ("0 0", (1.0, 1.0), True),  # S + R > 0 for S/(S+R)
    ("1 10", (1.0, 10.0), False),
])
def test_a_score_outside_the_scale_parses_and_is_clamped_to_it(text, scores, clamped):
    assert clamp_to_scale(parse_verdict(text), load_template().scale) == (scores, clamped)


def test_render_then_parse_request_round_trips_awkward_text():
    template = load_template("pairwise_v1")
    question, first, second = "Explain {answer_2} and [Question] in JSON: {\"a\": 1}", "line 1\n\nline 2", ""
    messages = template.render(question, first, second)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == template.system
    expected = {"question": question, "answer_1": first, "answer_2": second}
    assert template.parse_request(messages[1]["content"]) == expected
    assert template.parse_request("What is 2 + 2?") is None


def test_template_version_and_hash_follow_the_sent_text(tmp_path):
    base = load_template("pairwise_v1")
    assert base.version == "pairwise_v1" and len(base.sha) == 16
    assert JudgeTemplate("pairwise_v1", base.system, base.user + " ").sha != base.sha
    source = (load_template.__globals__["TEMPLATES_DIR"] / "pairwise_v1.txt").read_text()
    (tmp_path / "pairwise_v1.txt").write_text("# another comment\n" + source)
    assert load_template("pairwise_v1", tmp_path).sha == base.sha


def test_a_broken_template_is_refused_with_its_path(tmp_path):
    (tmp_path / "bad_v1.txt").write_text("=== system ===\nS\n=== user ===\n{question} {answer_1}\n")
    with pytest.raises(ValueError, match=r"bad_v1.txt: the user section must contain `\{answer_2\}`"):
        load_template("bad_v1", tmp_path)
    with pytest.raises(ValueError, match="no judge template `missing`"):
        load_template("missing", tmp_path)


def test_question_text_keeps_a_single_turn_and_labels_a_conversation():
    assert question_text([{"role": "user", "content": "Hi?"}]) == "Hi?"
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    assert question_text(conversation) == "System: Be brief.\n\nUser: Hi?"
