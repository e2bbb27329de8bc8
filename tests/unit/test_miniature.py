"""The miniature's tasks and its local teacher, reached over real HTTP with the `openai` client."""

import threading

import pytest
from openai import OpenAI

from soda_plugin.judge.template import load_template, parse_verdict
from soda_plugin.miniature import judge_responder, tasks
from soda_plugin.miniature.teacher_server import UNKNOWN_REPLY, make_server, running_teacher


def test_every_family_generates_questions_its_solver_reads_back():
    drawn = tasks.generate_tasks(50, seed=3)
    assert {t.family for t in drawn} == {f.name for f in tasks.FAMILIES}
    for task in drawn:
        assert tasks.solve(task.question) == (task.family, task.answer)
        assert tasks.exact_match(tasks.teacher_answer(task.question), task.answer)
    assert tasks.generate_tasks(50, seed=3) == drawn
    assert tasks.generate_tasks(50, seed=4) != drawn


def test_splits_are_disjoint_and_test_does_not_move_when_train_grows():
    small, large = tasks.split_tasks(20, 10, 15, seed=0), tasks.split_tasks(60, 10, 15, seed=0)
    questions = [{t.question for t in small[name]} for name in ("train", "val", "test")]
    assert not (questions[0] & questions[1]) and not (questions[0] & questions[2]) and not (questions[1] & questions[2])
    assert small["test"] == large["test"]
    assert not {t.question for t in large["train"]} & {t.question for t in large["test"]}
    full = tasks.split_tasks(200, 50, 100, seed=0)  # well above the full mode's sizes
    assert [len(full[name]) for name in ("train", "val", "test")] == [200, 50, 100]


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
    choice = _ask(teacher, "What is 12 times 11?")
    assert choice.message.content == "12 * 11 = 132.\nAnswer: 132" and choice.finish_reason == "stop"
    assert _ask(teacher, "Write a poem about the sea.").message.content == UNKNOWN_REPLY
    truncated = _ask(teacher, "What is 12 times 11?", max_tokens=2)
    assert truncated.finish_reason == "length" and truncated.message.content == "12 *"


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
        assert _ask(client, "Write the word 'planet' backwards.").message.content.endswith("Answer: tenalp")
        assert client.models.list().data[0].id == "program-teacher"


def test_seed_interval_is_students_t():
    from soda_plugin.miniature.report import over_seeds

    summary = over_seeds([50.0, 60.0, 70.0])  # sd 10, t(0.975, 2) = 4.303 -> half-width 24.84
    assert summary.mean == pytest.approx(60.0)
    assert (summary.low, summary.high) == (pytest.approx(35.16, abs=0.01), pytest.approx(84.84, abs=0.01))
    assert over_seeds([42.0]).format() == "42.0"


def test_tables_compare_ablation_rows_on_the_same_seeds():
    from soda_plugin.miniature.summary import ABLATION, MAIN, collect_metrics, only_seeds, stage_ratio
    from soda_plugin.miniature.report import metric_table

    matches = {"base": {"a": False, "b": True}, "soda/s0": {"a": True, "b": True}, "soda/s1": {"a": True, "b": False},
               "soda-sibling/s0": {"a": False, "b": False}, "soda-degraded/s0": {"a": True, "b": False}}
    judged = {"results": [{"model": name.replace("/", "_"), "score": 10.0 * i} for i, name in enumerate(matches)]}
    metrics = collect_metrics(matches, judged)
    assert metrics["soda"]["exact_match"] == {"s0": 100.0, "s1": 50.0} and metrics["base"]["judge"] == {"-": 0.0}
    main = metric_table(metrics, MAIN)
    assert "| SODA | 2 | 75.0 [" in main and "| Base (SmolLM2-135M-Instruct) | 1 | 50.0 | 0.0 |" in main
    ablation = metric_table(only_seeds(metrics, [0]), ABLATION)
    assert "| q0 negatives (SODA) | 1 | 100.0 | 10.0 |" in ablation and "| cross-student negatives | 1 | 0.0 | 30.0 |" in ablation
    with pytest.raises(ValueError, match="no score for `soda/s1`"):
        collect_metrics(matches, {"results": judged["results"][:2]})
    assert stage_ratio({"q0 snapshot": 10, "SODA train (warmup + DPO)": 60, "SeqKD train": 40}, 2) == pytest.approx(2.0)


def test_the_report_shows_the_judges_paired_figures_per_model_group():
    from soda_plugin.miniature.report import judge_figures_table
    from soda_plugin.miniature.summary import MAIN, collect_metrics

    def record(model, paired_score, own_score, first, second, disagree, tokens):
        figures = {"student_first": first, "reference_first": second, "order_disagreement": disagree,
                   "model_tokens": tokens, "reference_tokens": 20.0}
        return {"model": model, "score": own_score, **figures,
                "paired": {"n": 2, "score": paired_score, **figures}}

    matches = {"base": {"a": False, "b": True}, "soda/s0": {"a": True, "b": True}, "soda/s1": {"a": True, "b": False}}
    judged = {"results": [record("base", 40.0, 41.0, 42.0, 38.0, 0.5, 30.0),
                          record("soda_s0", 50.0, 99.0, 52.0, 48.0, 0.0, 18.0),
                          record("soda_s1", 54.0, 99.0, 56.0, 52.0, 0.5, 22.0)]}
    metrics = collect_metrics(matches, judged)
    assert metrics["soda"]["judge"] == {"s0": 50.0, "s1": 54.0}  # the paired score, not the own-subset one
    assert metrics["soda"]["judge_order_disagreement"] == {"s0": 0.0, "s1": 50.0}
    table = judge_figures_table(metrics, MAIN)
    assert "| Base (SmolLM2-135M-Instruct) | 1 | 42.0 | 38.0 | 50.0 | 30.0 | 20.0 |" in table
    assert "| SODA | 2 | 54.0 [" in table and "| 25.0 [" in table and "| 20.0 [" in table
    assert judge_figures_table(collect_metrics(matches, {"results": [
        {"model": m, "score": 1.0} for m in ("base", "soda_s0", "soda_s1")]}), MAIN).startswith("(the judge")
