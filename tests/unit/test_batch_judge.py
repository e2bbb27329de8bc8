"""The judge and the pair filter through the batch API (`--batch`), in process, against the
real local batch server (`tests/batch_server.py`) playing the judge with `JudgeResponder`:
both phases as batches, injected faults resubmitted, every call paid once (the server's own
`submitted` / `paid` counts), and the shared cache + journals so that mixing online and
batch runs never pays twice."""

import pytest

from batch_server import BatchServer
from chat_server import ChatServer, no_sleep
from judge_data import write_answers, write_eval_file
from judge_responder import JudgeResponder, reference_text
from soda_plugin.client import ChatClient, ClientSettings
from soda_plugin.client.batch_core import BatchOptions, BatchWaitError
from soda_plugin.judge.run import ScoreConfig, results_document, score_models_sync
from soda_plugin.pairs import JudgeFilterConfig, build_pairs, iter_pairs
from soda_plugin.verdict import JudgeCalls, JudgeSettings, load_template
from soda_plugin.verdict.batch import BatchChat
from soda_data import pair_inputs

TEMPLATE = load_template()
PROMPTS = ["Name a prime.", "Describe the sea.", "Why is the sky blue?"]
BASE = {PROMPTS[0]: "2 q=8", PROMPTS[1]: "blue q=4", PROMPTS[2]: "Rayleigh q=10"}
BASE_SCORE = 100 * (0.5 + 1 / 3 + 10 / 18) / 3  # against the reference's q=8, both orders
FAST = BatchOptions(poll_s=0.02, max_wait_s=60)


def verdict_content(question, answer_1, answer_2):
    """What the batch server keys a verdict request by: its last message."""
    return TEMPLATE.render(question, answer_1, answer_2)[-1]["content"]


def verdict_contents(answers):
    contents = set()
    for prompt, answer in answers.items():
        reference = reference_text(prompt)
        contents |= {verdict_content(prompt, answer, reference), verdict_content(prompt, reference, answer)}
    return contents


def client_settings(server):
    return ClientSettings(base_url=server.base_url, model="judge-model", max_attempts=3, backoff_base_s=0.01)


def score(client, tmp_path, models):
    settings = JudgeSettings("judge-model", TEMPLATE)
    config = ScoreConfig(models, ["vicuna"], tmp_path / "scores", settings,
                         {"vicuna": str(write_eval_file(tmp_path / "vicuna.jsonl", PROMPTS))}, resamples=200,
                         progress=False)
    calls = JudgeCalls(client, settings, tmp_path / "cache", progress=False)
    results = score_models_sync(config, calls)
    prices = FAST.prices(2.0, 8.0) if isinstance(client, BatchChat) else (2.0, 8.0)
    document = results_document(config, results, calls, prices)
    return {r["model"]: r["score"] for r in document["results"]}, document


def online(server):
    return ChatClient(ClientSettings(base_url=server.base_url, model="judge-model"), sleep=no_sleep)


def test_both_phases_go_through_batches_faults_are_resubmitted_and_each_call_is_paid_once(tmp_path):
    base = write_answers(tmp_path / "base", BASE)
    malformed = verdict_content(PROMPTS[2], BASE[PROMPTS[2]], reference_text(PROMPTS[2]))
    # The references' batch expires after its first item; the second reference then meets a 500;
    # one verdict comes back malformed.
    faults = {PROMPTS[1]: "500", malformed: "malformed"}
    with BatchServer(JudgeResponder(), item_faults=faults, expire_batches=1, expire_keep=1) as server:
        scores, document = score(BatchChat(client_settings(server), tmp_path / "cache", FAST), tmp_path,
                                 {"base": base})
        submitted, paid, created = dict(server.submitted), dict(server.paid), server.batches_created
        assert not server.item_faults  # every fault was met
    verdicts = verdict_contents(BASE)
    assert submitted == {PROMPTS[0]: 1, PROMPTS[1]: 3, PROMPTS[2]: 2,
                         **{c: 2 if c == malformed else 1 for c in verdicts}}
    # Paid: each call once; the malformed answer was billed, so that verdict twice (as online).
    assert paid == {**{p: 1 for p in PROMPTS}, **{c: 2 if c == malformed else 1 for c in verdicts}}
    assert created == 3 + 2  # references: the expired batch, then two rounds; verdicts: two rounds
    assert scores == {"base": pytest.approx(BASE_SCORE)}
    usage = document["usage"]
    assert usage["mode"] == "batch" and usage["requests"] == 3 + 6
    assert usage["batch"]["items_submitted"] == 6 + 7 and usage["batch"]["items_resubmitted"] == 3 + 1
    assert usage["batch"]["statuses"] == {"expired": 1, "completed": 4}
    # 3 references of 10 + 20 tokens and 6 verdicts of 50 + 8, at half of $2 / $8 per 1M.
    assert usage["cost"] == pytest.approx((3 * 10 * 2 + 3 * 20 * 8 + 6 * 50 * 2 + 6 * 8 * 8) / 1e6 * 0.5)
    assert document["calls"]["references_new"] == 3 and document["calls"]["verdicts_new"] == 6
    for phase in ("references", "verdicts"):
        assert (tmp_path / "cache" / f"batches.{phase}.jsonl").is_file()


def test_mixing_online_and_batch_runs_never_pays_twice(tmp_path):
    base = write_answers(tmp_path / "base", BASE)
    responder = JudgeResponder()
    with BatchServer(responder, hold="batch") as server:
        slow = BatchChat(client_settings(server), tmp_path / "cache", BatchOptions(poll_s=0.02, max_wait_s=0.3))
        with pytest.raises(BatchWaitError, match="still unfinished"):
            score(slow, tmp_path, {"base": base})
        # An online run now would pay for the references the open batch carries: refused.
        with ChatServer(JudgeResponder()) as chat, pytest.raises(ValueError, match="in batches still open"):
            score(online(chat), tmp_path, {"base": base})
        assert chat.requests == 0
        server.release()
        scores, _ = score(BatchChat(client_settings(server), tmp_path / "cache", FAST), tmp_path, {"base": base})
        assert server.batches_created == 2  # the held references' batch was resumed, not sent again
        assert dict(server.paid) == {c: 1 for c in [*PROMPTS, *verdict_contents(BASE)]}
        assert scores == {"base": pytest.approx(BASE_SCORE)}

        # Online after batch: everything is cached. A new student online, then both in batch: nothing new.
        soda = write_answers(tmp_path / "soda", {**BASE, PROMPTS[2]: "scattering q=9"})
        with ChatServer(JudgeResponder()) as chat:
            assert score(online(chat), tmp_path, {"base": base})[0] == scores
            assert chat.requests == 0
            both, _ = score(online(chat), tmp_path, {"base": base, "soda": soda})
            assert chat.requests == 2  # the new answer's two orders
        again, document = score(BatchChat(client_settings(server), tmp_path / "cache", FAST), tmp_path,
                                {"base": base, "soda": soda})
        assert server.batches_created == 2 and sum(server.paid.values()) == 3 + 6
    assert again == both and both["soda"] == pytest.approx(100 * (0.5 + 1 / 3 + 9 / 17) / 3)
    assert document["calls"]["verdicts_cached"] == 8 and document["usage"]["batch"]["items_submitted"] == 0


def test_an_unparsable_verdict_is_asked_again_in_a_new_batch_within_parse_attempts(tmp_path):
    answers = write_answers(tmp_path / "m", {**BASE, PROMPTS[0]: "BAD1 q=6"})
    with BatchServer(JudgeResponder()) as server:
        _, document = score(BatchChat(client_settings(server), tmp_path / "cache", FAST), tmp_path, {"m": answers})
        bad = {c for c in verdict_contents({PROMPTS[0]: "BAD1 q=6"})}
        assert {c: n for c, n in server.submitted.items() if n > 1} == {c: 2 for c in bad}
        assert server.batches_created == 1 + 2
    assert document["calls"]["unparsable_retried"] == 2 and document["calls"]["verdicts_unparsable"] == 0
    assert document["results"][0]["n_scored"] == 3


# The pair filter: (teacher answer, q0 answer) -> its mark, as in test_pair_filter.py.
CASES = [
    ("Teacher: 2. q=9", "Student: 3. q=3", "teacher_won"),
    ("Teacher: 4. q=3", "Student: 5. q=8", "teacher_not_better"),
    ("Teacher: 8. q=9/5", "Student: 9. q=6/3", "teacher_won"),
    ("Teacher: 10. q=9 BAD3", "Student: 11. q=4", "unjudged_unparsable"),  # 3 bad verdicts per order
    ("Teacher: 12. q=7", "Student: 13. q=2", "unjudged_failed"),  # a 400 on its teacher-first verdict
]


def write_pair_inputs(tmp_path):
    return pair_inputs(CASES, tmp_path)


def test_the_pair_filter_in_batch_mode_marks_as_online_and_a_rebuild_pays_nothing(tmp_path):
    teacher, snapshot = write_pair_inputs(tmp_path)
    rejected = verdict_content("Question 4?", CASES[4][0], CASES[4][1])
    with BatchServer(JudgeResponder(), item_faults={rejected: "400"}) as server:
        config = JudgeFilterConfig(client=client_settings(server), judge=JudgeSettings("judge-model", TEMPLATE),
                                   action="flag", batch=FAST, prices=(2.0, 8.0))
        report = build_pairs([teacher], [snapshot], tmp_path / "out", judge_filter=config)
        submitted, paid = dict(server.submitted), dict(server.paid)
        marks = {p["teacher_response"]: p["judge_verdict"] for p in iter_pairs(tmp_path / "out")}
        assert marks == {t: mark for t, _, mark in CASES}
        # BAD3: both orders asked in 3 batches (parse_attempts), each paid; the 400 is not resubmitted.
        bad = {verdict_content("Question 3?", CASES[3][0], CASES[3][1]),
               verdict_content("Question 3?", CASES[3][1], CASES[3][0])}
        assert submitted == {c: 3 if c in bad else 1 for c in submitted} and len(submitted) == 10
        assert paid == {c: 3 if c in bad else 1 for c in submitted if c != rejected}
        usage = report.judge_filter["usage"]
        assert usage["batch"]["items_submitted"] == 10 + 2 + 2 and report.judge_filter["settings"]["mode"] == "batch"
        assert usage["cost"] == pytest.approx(usage["requests"] * (50 * 2 + 8 * 8) / 1e6 * 0.5)
        assert usage["requests"] == sum(paid.values())

        rebuilt = build_pairs([teacher], [snapshot], tmp_path / "out", judge_filter=config, overwrite=True)
        # Only the two unjudged pairs' missing verdicts are asked again; every parsed one is cached.
        assert {c: n - submitted[c] for c, n in server.submitted.items() if n != submitted[c]} == {
            **{c: 1 for c in bad}, rejected: 1}
    assert rebuilt.judge_filter["calls"]["verdicts_cached"] == 7


def test_a_batch_build_sends_every_verdict_in_one_run_whatever_the_block_size(tmp_path):
    """Online the pairs go by blocks; in batch mode a block per provider wait would chain the waits."""
    teacher, snapshot = write_pair_inputs(tmp_path)
    with BatchServer(JudgeResponder()) as server:
        config = JudgeFilterConfig(client=client_settings(server), judge=JudgeSettings("judge-model", TEMPLATE),
                                   action="flag", batch=FAST)
        build_pairs([teacher], [snapshot], tmp_path / "out", judge_filter=config, batch_pairs=2)
        # One batch for all 10 verdicts, then BAD3's two verdicts asked again twice (parse attempts):
        # by blocks of 2 pairs it would be 1 + 3 + 1 batches.
        assert server.batches_created == 3
        assert sum(server.submitted.values()) == 10 + 2 + 2


def test_batch_flags_are_checked_before_anything_runs():
    from soda_plugin.cli.judge import make_parser as judge_parser
    from soda_plugin.cli.pairs import _judge_filter, make_parser as pairs_parser
    from soda_plugin.client.batch_options import batch_options

    pairs = ["--teacher", "t.jsonl", "--snapshot", "q0", "--out", "o"]
    with pytest.raises(SystemExit, match="--batch given without --judge-filter"):
        _judge_filter(pairs_parser().parse_args([*pairs, "--batch"]))
    config = _judge_filter(pairs_parser().parse_args([*pairs, "--judge-filter", "--judge-base-url", "http://h/v1",
                                                      "--judge-model", "m", "--batch", "--batch-rounds", "5"]))
    assert config.batch == BatchOptions(rounds=5) and config.describe()["mode"] == "batch"
    score = ["score", "--models", "a=x", "--out", "o", "--judge-base-url", "http://h/v1", "--judge-model", "m"]
    assert batch_options(judge_parser().parse_args(score)) is None
    assert batch_options(judge_parser().parse_args([*score, "--batch"])) == BatchOptions()
    with pytest.raises(ValueError, match="`--batch-rounds`"):
        batch_options(judge_parser().parse_args([*score, "--batch", "--batch-rounds", "0"]))
