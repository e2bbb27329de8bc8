"""The pair builder: one test per drop reason, policies, sources, card, degraded source."""

import json
from pathlib import Path

import pytest

from soda_plugin.pairs import (
    PAIR_COLUMNS, DropReason, NoPairsError, SnapshotInput, TruncatedPolicy, build_pairs,
    degrade_snapshot, iter_pairs,
)
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.snapshot import store
from soda_data import write_jsonl

R = DropReason


def msgs(i):
    return [{"role": "user", "content": f"What is {i} plus {i}?"}]


def teacher(i, answer=None, **extra):
    return {"content": msgs(i), "teacher_response": f"The answer is {2 * i}." if answer is None else answer, **extra}


def snap(i, response=None, sample_index=0, finish="stop", source="q0:tiny", **extra):
    row = {
        "prompt_id": prompt_id(msgs(i)), "sample_index": sample_index, "prompt": msgs(i),
        "response": f"Maybe {2 * i + 1}, let me explain." if response is None else response,
        "finish_reason": finish, "prompt_tokens": 5, "response_tokens": 6, "source": source,
    }
    row.update(extra)
    return row


def build(tmp_path, teachers, snaps, **kwargs):
    t = write_jsonl(teachers, tmp_path / "teacher.jsonl")
    s = write_jsonl(snaps, tmp_path / "snap.jsonl")
    report = build_pairs([t], [kwargs.pop("snapshot", None) or s], tmp_path / "out", **kwargs)
    return report, list(iter_pairs(tmp_path / "out"))


def dropped(report):
    return {k: v for k, v in report.dropped.items() if v}


def test_one_pair_has_exactly_the_soda_columns_and_provenance(tmp_path):
    report, pairs = build(tmp_path, [teacher(1)], [snap(1)])
    assert pairs == [{
        "content": msgs(1), "teacher_response": "The answer is 2.", "student_response": "Maybe 3, let me explain.",
        "prompt_id": prompt_id(msgs(1)), "sample_index": 0, "rejected_source": "q0:tiny",
        "rejected_finish_reason": "stop",
    }]
    assert report.kept == 1 and dropped(report) == {} and report.teacher_rows == 1


def test_malformed_teacher_rows(tmp_path):
    bad = [
        {"content": "not a list", "teacher_response": "x"},
        {"content": [{"role": "user", "content": 5}], "teacher_response": "x"},
        {"content": [{"role": "assistant", "content": "hi"}], "teacher_response": "x"},
        {"content": [{"text": "no role"}], "teacher_response": "x"},
        teacher(2, answer=7),
        teacher(3, prompt_id=12),
    ]
    report, _ = build(tmp_path, [teacher(1)] + bad, [snap(1)])
    assert dropped(report) == {R.MALFORMED_TEACHER_ROW.value: 6}
    assert report.kept == 1


def test_empty_teacher_answer(tmp_path):
    rows = [teacher(1, answer=""), teacher(2, answer=" \n\t"), {"content": msgs(3)}, teacher(4)]
    report, _ = build(tmp_path, rows, [snap(1), snap(2), snap(3), snap(4)])
    assert dropped(report) == {R.EMPTY_TEACHER_ANSWER.value: 3, R.NO_TEACHER_ROW.value: 3}
    assert report.kept == 1


def test_duplicate_teacher_prompt_keeps_the_first(tmp_path):
    report, pairs = build(tmp_path, [teacher(1, "first"), teacher(1, "second"), teacher(1, "third")], [snap(1)])
    assert dropped(report) == {R.DUPLICATE_TEACHER_PROMPT.value: 2}
    assert [p["teacher_response"] for p in pairs] == ["first"]


def test_teacher_prompt_id_column_is_the_join_key(tmp_path):
    report, pairs = build(tmp_path, [teacher(1, prompt_id="custom-id")], [snap(1, prompt_id="custom-id")])
    assert report.kept == 1 and pairs[0]["prompt_id"] == "custom-id"


def test_no_student_answer_and_no_teacher_row(tmp_path):
    report, _ = build(tmp_path, [teacher(1), teacher(2), teacher(3)], [snap(1), snap(4), snap(5, sample_index=1)])
    assert dropped(report) == {R.NO_STUDENT_ANSWER.value: 2, R.NO_TEACHER_ROW.value: 2}


def test_malformed_snapshot_rows(tmp_path):
    bad = [snap(1, sample_index="0"), snap(1, response=5, sample_index=1), snap(1, finish="abc", sample_index=2),
           {k: v for k, v in snap(1, sample_index=3).items() if k != "prompt_id"}, snap(1, sample_index=True)]
    report, _ = build(tmp_path, [teacher(1)], [snap(1)] + bad)
    assert dropped(report) == {R.MALFORMED_SNAPSHOT_ROW.value: 5} and report.kept == 1


def test_duplicate_snapshot_sample(tmp_path):
    report, pairs = build(tmp_path, [teacher(1)], [snap(1, "a"), snap(1, "b"), snap(1, "c", sample_index=1)])
    assert dropped(report) == {R.DUPLICATE_SNAPSHOT_SAMPLE.value: 1}
    assert [p["student_response"] for p in pairs] == ["a", "c"]


def test_empty_student_answer(tmp_path):
    snaps = [snap(1, ""), snap(1, "  \n", sample_index=1), snap(1, None, sample_index=2, response_tokens=0)]
    snaps[2]["response"] = None
    report, _ = build(tmp_path, [teacher(1), teacher(2)], snaps + [snap(2)])
    assert dropped(report) == {R.EMPTY_STUDENT_ANSWER.value: 3} and report.kept == 1


def test_chosen_equals_rejected_after_normalization(tmp_path):
    report, _ = build(tmp_path, [teacher(1), teacher(2)], [snap(1, " The  answer\nis 2. "), snap(2)])
    assert dropped(report) == {R.CHOSEN_EQUALS_REJECTED.value: 1} and report.kept == 1


TRUNCATION_CASES = {
    TruncatedPolicy.DROP: (1, {R.TRUNCATED_TEACHER_ANSWER.value: 1, R.TRUNCATED_STUDENT_ANSWER.value: 1,
                               R.NO_TEACHER_ROW.value: 1}),
    TruncatedPolicy.KEEP: (3, {}),
    TruncatedPolicy.TEACHER_ONLY: (2, {R.TRUNCATED_TEACHER_ANSWER.value: 1, R.NO_TEACHER_ROW.value: 1}),
}


@pytest.mark.parametrize("policy", list(TruncatedPolicy))
def test_truncation_policies(tmp_path, policy):
    teachers = [teacher(1, finish_reason="length"), teacher(2, finish_reason="stop"), teacher(3)]
    snaps = [snap(1), snap(2, finish="length"), snap(3)]
    report, pairs = build(tmp_path, teachers, snaps, truncated=policy.value)
    kept, drops = TRUNCATION_CASES[policy]
    assert report.kept == kept and dropped(report) == drops
    if policy is TruncatedPolicy.TEACHER_ONLY:
        assert sorted(p["rejected_finish_reason"] for p in pairs) == ["length", "stop"]


def test_n_samples_give_one_pair_each_or_only_the_first(tmp_path):
    snaps = [snap(1, f"answer {k}", sample_index=k) for k in (2, 0, 1)]
    report, pairs = build(tmp_path, [teacher(1)], snaps)
    assert report.kept == 3 and [p["sample_index"] for p in pairs] == [0, 1, 2]
    report, pairs = build(tmp_path, [teacher(1)], snaps, first_sample_only=True, overwrite=True)
    assert [p["student_response"] for p in pairs] == ["answer 0"]
    assert dropped(report) == {R.NOT_FIRST_SAMPLE.value: 2}


def test_too_long_uses_the_student_template_and_is_exact(tmp_path, chatml_tokenizer):
    from soda_plugin.format.chat_format import assistant_turn_suffix, render_prompt

    tok = chatml_tokenizer
    eot, _ = assistant_turn_suffix(tok)
    student = "I think the answer might be something else, let me explain at length."
    need = len(tok(render_prompt(tok, msgs(1)))["input_ids"]) + len(tok(student + eot, add_special_tokens=False)["input_ids"])
    snaps = [snap(1, student), snap(2, "ok")]
    report, _ = build(tmp_path, [teacher(1), teacher(2)], snaps, tokenizer=tok, sequence_len=need)
    assert report.kept == 2
    report, _ = build(tmp_path, [teacher(1), teacher(2)], snaps, tokenizer=tok, sequence_len=need - 1, overwrite=True)
    assert report.kept == 1 and dropped(report) == {R.TOO_LONG.value: 1}


def test_too_long_counts_in_batches(tmp_path, llama_tokenizer):
    teachers = [teacher(i) for i in range(10)]
    snaps = [snap(i, "long " * (200 if i % 3 == 0 else 1)) for i in range(10)]
    report, pairs = build(tmp_path, teachers, snaps, tokenizer=llama_tokenizer, sequence_len=100, batch_pairs=3)
    assert dropped(report) == {R.TOO_LONG.value: 4} and report.kept == 6
    assert [p["prompt_id"] for p in pairs] == [prompt_id(msgs(i)) for i in range(10) if i % 3]


def test_nothing_kept_raises_with_counts(tmp_path):
    with pytest.raises(NoPairsError, match="no_student_answer"):
        build(tmp_path, [teacher(1)], [snap(2)])
    assert json.loads((tmp_path / "out" / "build_report.json").read_text())["counts"]["kept"] == 0


def test_existing_output_is_not_overwritten_silently(tmp_path):
    build(tmp_path, [teacher(1)], [snap(1)])
    with pytest.raises(FileExistsError, match="overwrite"):
        build(tmp_path, [teacher(1)], [snap(1)])


def _snapshot_dir(path, rows, **manifest):
    store.write_shard(path, 0, rows)
    store.write_manifest(path, {"model": "tiny-student", "backend": "transformers", "engine_version": "5.0",
                                "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 64, "n": 1, "seed": 3},
                                **manifest})
    return path


def test_several_sources_and_rejected_source(tmp_path):
    q0 = _snapshot_dir(tmp_path / "q0", [snap(1, source="q0:tiny-student"), snap(2, source="q0:tiny-student")])
    other = write_jsonl([snap(1, "other model says 3"), snap(2, "other model says 5")], tmp_path / "other.jsonl")
    t = write_jsonl([teacher(1), teacher(2)], tmp_path / "teacher.jsonl")
    report = build_pairs([t], [str(q0), f"{other}=cross:big-model"], tmp_path / "out")
    pairs = list(iter_pairs(tmp_path / "out"))
    assert [(p["prompt_id"], p["rejected_source"]) for p in pairs] == [
        (prompt_id(msgs(1)), "q0:tiny-student"), (prompt_id(msgs(1)), "cross:big-model"),
        (prompt_id(msgs(2)), "q0:tiny-student"), (prompt_id(msgs(2)), "cross:big-model"),
    ]
    assert report.kept_by_source == {"cross:big-model": 2, "q0:tiny-student": 2}
    assert SnapshotInput.parse("a/b=lbl") == SnapshotInput(Path("a/b"), "lbl")


def test_every_snapshot_row_is_accounted_for(tmp_path):
    teachers = [teacher(i) for i in range(6)] + [teacher(0), teacher(7, answer="")]
    snaps = [snap(i, sample_index=k) for i in range(9) for k in range(2)] + [snap(0), snap(1, sample_index="x")]
    snaps[2]["response"] = "The answer is 2."
    report, _ = build(tmp_path, teachers, snaps)
    per_row = sum(n for r, n in report.dropped.items() if R(r).unit.name != "TEACHER_ROW")
    assert report.kept + per_row == sum(report.snapshot_rows.values()) == len(snaps)


def test_card_and_report_name_inputs_counts_and_hold_no_secret(tmp_path, monkeypatch):
    secrets = {"HF_TOKEN": "hf_FAKEtoken1234567890", "OPENAI_API_KEY": "sk-fake-9876543210abcdef"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    q0 = _snapshot_dir(tmp_path / "q0", [snap(1), snap(2, "")], api_key=secrets["OPENAI_API_KEY"],
                       engine={"base_url": "http://x", "headers": {"Authorization": secrets["HF_TOKEN"]}},
                       note=f"launched with {secrets['HF_TOKEN']}")
    t = write_jsonl([teacher(1), teacher(2), teacher(3)], tmp_path / "teacher.jsonl")
    build_pairs([t], [q0], tmp_path / "out", teacher_name="gpt-5-chat")
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("---\n") and "path: data/train-*" in card
    for text in ("gpt-5-chat", "tiny-student", "transformers", '"temperature": 1.0', "| 3 |",
                 "kept **1** pairs", "| empty_student_answer | 1 |", "| no_student_answer | 1 |", "q0:tiny"):
        assert text in card, text
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["counts"]["dropped"]["empty_student_answer"] == 1
    assert report["inputs"]["snapshots"][0]["seed"] == 3
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert not any(v.encode() in blob for v in secrets.values()), path


def test_degraded_source(tmp_path):
    q0_rows = [snap(i, "one two three four five six seven eight nine ten", source="q0:big") for i in range(4)]
    degraded = degrade_snapshot(q0_rows, tmp_path / "degraded", keep_fraction=0.5, seed=1,
                                source_manifest={"model": "big", "api_key": "x"})
    assert store.read_manifest(degraded)["model"] == "degraded:big"
    t = write_jsonl([teacher(i) for i in range(4)], tmp_path / "teacher.jsonl")
    report = build_pairs([t], [degraded], tmp_path / "out", truncated="teacher_only")
    pairs = list(iter_pairs(tmp_path / "out"))
    assert report.kept == 4 and {p["rejected_source"] for p in pairs} == {"degraded:q0:big"}
    for p in pairs:
        words = p["student_response"].split()
        assert 3 <= len(words) <= 5 and words == "one two three four five".split()[: len(words)]
        assert p["rejected_finish_reason"] == "length"
    again = degrade_snapshot(q0_rows, tmp_path / "again", keep_fraction=0.5, seed=1)
    assert list(store.iter_rows(again)) == list(store.iter_rows(degraded))


def test_degraded_source_is_dropped_by_the_default_policy(tmp_path):
    degraded = degrade_snapshot([snap(1), snap(2)], tmp_path / "d")
    t = write_jsonl([teacher(1), teacher(2)], tmp_path / "teacher.jsonl")
    with pytest.raises(NoPairsError):
        build_pairs([t], [degraded], tmp_path / "out")


def test_output_loads_with_datasets_and_feeds_the_dpo_view(tmp_path, chatml_tokenizer):
    import datasets

    from soda_plugin.train.dataset_type import default as soda_dpo

    report, _ = build(tmp_path, [teacher(i) for i in range(5)], [snap(i) for i in range(5)])
    out = tmp_path / "out"
    folder = datasets.load_dataset(str(out), split="train")
    files = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert folder.column_names == files.column_names == list(PAIR_COLUMNS)
    assert len(folder) == len(files) == report.kept == 5
    transform, map_kwargs = soda_dpo({})
    triples = folder.map(transform, **{**map_kwargs, "remove_columns": folder.column_names},
                         fn_kwargs={"tokenizer": chatml_tokenizer})
    assert triples["chosen"][0] == "The answer is 0.<|im_end|>" and len(triples["rejected"]) == 5


def test_parquet_teacher_input_and_several_output_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [teacher(i) for i in range(7)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "teacher.parquet")
    s = write_jsonl([snap(i) for i in range(7)], tmp_path / "snap.jsonl")
    report = build_pairs([tmp_path / "teacher.parquet"], [s], tmp_path / "out", rows_per_file=3, batch_pairs=2)
    assert report.files == [f"data/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [p["teacher_response"] for p in iter_pairs(tmp_path / "out")] == [r["teacher_response"] for r in rows]


def test_cli_builds_and_prints_the_table(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_pairs_cli", Path(__file__).parents[2] / "tools" / "build_pairs.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    t = write_jsonl([teacher(1), teacher(2)], tmp_path / "teacher.jsonl")
    s = write_jsonl([snap(1), snap(1, sample_index=1)], tmp_path / "snap.jsonl")
    cli.main(cli.make_parser().parse_args(
        ["--teacher", str(t), "--snapshot", f"{s}=q0:x", "--out", str(tmp_path / "out"), "--first-sample-only"]))
    out = capsys.readouterr().out
    assert "kept" in out and "not_first_sample" in out and "{'q0:x': 1}" in out


def test_length_check_tokenizes_only_pairs_the_byte_bound_cannot_rule_in(chatml_tokenizer):
    from soda_plugin.pairs.length import LengthCheck

    class CountingTokenizer:
        def __init__(self, inner):
            self.inner, self.texts = inner, 0

        def __call__(self, texts, **kwargs):
            self.texts += len(texts)
            return self.inner(texts, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    counting = CountingTokenizer(chatml_tokenizer)
    prompts = [[{"role": "user", "content": "What is 2 plus 2?"}]]
    short, long = "4.", "word " * 400
    check = LengthCheck(counting, sequence_len=256)
    assert check.fits(prompts, [short], [0, 0], [short, long]) == [True, False]
    assert counting.texts == 3, "only the long pair's prompt, teacher and student answers are tokenized"
    n_long = len(chatml_tokenizer(long + "<|im_end|>", add_special_tokens=False)["input_ids"])
    assert n_long > 256  # the tokenized verdict, not the byte bound, decided the second pair


ENV_TOKEN = "hf_ENVtokenFAKE0123456789"  # a fake, never a real token


def _pairs_cli(tmp_path, *extra):
    from soda_plugin.cli.main import main

    t = write_jsonl([teacher(1), teacher(2)], tmp_path / "teacher.jsonl")
    s = write_jsonl([snap(1), snap(2)], tmp_path / "snap.jsonl")
    return main(["pairs", "--teacher", str(t), "--snapshot", str(s), "--out", str(tmp_path / "out"), *extra])


def test_push_to_hub_without_hf_token_exits_before_building_even_with_a_cached_login(tmp_path, monkeypatch, capsys):
    from fake_hub import CACHED_TOKEN, cached_login_and_fake_hub

    hub = cached_login_and_fake_hub(tmp_path, monkeypatch)
    with pytest.raises(SystemExit, match=r"^soda pairs: set `HF_TOKEN` \(a Hub write token\)"):
        _pairs_cli(tmp_path, "--push-to-hub", "me/soda-pairs")
    assert hub.calls == [], "the Hub was called without HF_TOKEN"
    assert not (tmp_path / "out").exists(), "pairs were built before the token check"
    out = capsys.readouterr()
    assert CACHED_TOKEN not in out.out + out.err


def test_push_to_hub_without_hf_token_raises_before_any_hub_call(tmp_path, monkeypatch):
    from fake_hub import cached_login_and_fake_hub

    from soda_plugin.pairs import push_to_hub

    hub = cached_login_and_fake_hub(tmp_path, monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "  ")  # blank is unset
    with pytest.raises(PermissionError, match="set `HF_TOKEN`"):
        push_to_hub(tmp_path, "me/soda-pairs")
    assert hub.calls == []


def test_push_to_hub_hands_hf_token_to_the_hub_not_the_cached_login(tmp_path, monkeypatch, capsys):
    from fake_hub import CACHED_TOKEN, cached_login_and_fake_hub

    hub = cached_login_and_fake_hub(tmp_path, monkeypatch)
    monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    _pairs_cli(tmp_path, "--push-to-hub", "me/soda-pairs", "--private")
    assert hub.calls == [
        ("HfApi", ENV_TOKEN),
        ("create_repo", "me/soda-pairs", {"repo_type": "dataset", "private": True, "exist_ok": True}),
        ("upload_folder", "me/soda-pairs", "dataset"),
    ]
    out = capsys.readouterr()
    assert "https://huggingface.co/datasets/me/soda-pairs" in out.out
    assert ENV_TOKEN not in out.out + out.err and CACHED_TOKEN not in out.out + out.err
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and ENV_TOKEN in p.read_text(errors="replace")]
