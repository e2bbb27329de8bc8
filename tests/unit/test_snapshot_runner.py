"""Snapshot runner, store and engines on tiny models; the openai backend via a real server."""

import json

import pytest

from chat_server import ChatServer, Reply
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.snapshot import store
from soda_plugin.snapshot.engine import Completion, EngineInfo, FinishReason, SamplingSettings, SnapshotEngine, create_engine
from soda_plugin.snapshot.records import SNAPSHOT_COLUMNS
from soda_plugin.snapshot.runner import SnapshotMismatchError, run_snapshot

PROMPTS = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(10)]


class EchoEngine(SnapshotEngine):
    """Deterministic engine: answers with the prompt; `length` for every third prompt."""

    backend = "echo"

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def info(self):
        return EngineInfo("echo", "echo-model", "1.0")

    def generate(self, prompts, settings, prompt_ids=None):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        out = []
        for messages in prompts:
            text = messages[-1]["content"]
            reason = FinishReason.LENGTH if int(text.split()[2]) % 3 == 0 else FinishReason.STOP
            out.append([Completion(f"{text} #{s}", reason, 5, 3) for s in range(settings.n)])
        return out


def test_rows_have_the_schema_and_provenance(tmp_path):
    summary = run_snapshot(EchoEngine(), PROMPTS + PROMPTS[:3], tmp_path, SamplingSettings(n=2, seed=3),
                           source="q0:echo", shard_size=4, progress=False)
    rows = list(store.iter_rows(tmp_path))
    assert len(rows) == 20 and summary.duplicates_dropped == 3 and summary.truncated == 8
    assert all(tuple(row) == SNAPSHOT_COLUMNS for row in rows)
    assert {row["prompt_id"] for row in rows} == {prompt_id(p) for p in PROMPTS}
    manifest = store.read_manifest(tmp_path)
    assert manifest["status"] == "complete" and manifest["backend"] == "echo"
    assert manifest["sampling"] == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 1536, "n": 2, "seed": 3}
    assert manifest["engine_version"] == "1.0" and manifest["source"] == "q0:echo"


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_snapshot(EchoEngine(fail_after=1), PROMPTS, tmp_path, SamplingSettings(), source="q0", shard_size=4,
                     progress=False)
    (tmp_path / "shards" / ".shard-000001.jsonl.abc.tmp").write_text('{"half": ')  # a killed write
    assert len(store.done_prompt_ids(tmp_path)) == 4
    engine = EchoEngine()
    summary = run_snapshot(engine, PROMPTS, tmp_path, SamplingSettings(), source="q0", shard_size=4, progress=False)
    assert summary.prompts_done_before == 4 and summary.prompts_generated == 6 and engine.calls == 2
    ids = [row["prompt_id"] for row in store.iter_rows(tmp_path)]
    assert sorted(ids) == sorted(prompt_id(p) for p in PROMPTS)
    assert len(store.read_manifest(tmp_path)["resumed_at"]) == 1


def test_resume_with_other_settings_is_refused(tmp_path):
    run_snapshot(EchoEngine(), PROMPTS[:2], tmp_path, SamplingSettings(), source="q0", progress=False)
    with pytest.raises(SnapshotMismatchError, match=r"`sampling`"):
        run_snapshot(EchoEngine(), PROMPTS, tmp_path, SamplingSettings(temperature=0.7), source="q0", progress=False)


@pytest.mark.parametrize("bad", [{"temperature": -1}, {"top_p": 0}, {"n": 0}, {"max_tokens": 0}])
def test_bad_sampling_settings(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SamplingSettings(**bad)


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown snapshot backend `vlm`"):
        create_engine("vlm", "m")


def test_transformers_and_openai_backends_agree_on_a_tiny_model(tiny_model_dirs):
    engine = create_engine("transformers", str(tiny_model_dirs["llama"]), batch_size=3)
    greedy = SamplingSettings(temperature=0, max_tokens=6)
    local = engine.generate(PROMPTS[:5], greedy)
    assert all(len(answers) == 1 for answers in local)
    assert all(c.finish_reason in (FinishReason.STOP, FinishReason.LENGTH) for answers in local for c in answers)
    assert all(0 < c.completion_tokens <= 6 for answers in local for c in answers)

    def respond(request):
        answer = engine.generate([request["messages"]], SamplingSettings(temperature=0, max_tokens=request["max_tokens"]))[0][0]
        return Reply(answer.text, answer.finish_reason.value, answer.prompt_tokens, answer.completion_tokens)

    with ChatServer(respond) as server:
        server.inject("429-retry-after", "500")
        remote = create_engine("openai", "tiny", base_url=server.base_url, concurrency=2).generate(PROMPTS[:5], greedy)
        assert server.requests == 7 and server.answered == 5
    assert remote == local


def test_sampled_transformers_answers_are_seeded(tiny_model_dirs):
    engine = create_engine("transformers", str(tiny_model_dirs["qwen2"]), batch_size=4)
    settings = SamplingSettings(temperature=1.0, max_tokens=5, n=3, seed=11)
    first = engine.generate(PROMPTS[:4], settings)
    assert all(len(answers) == 3 for answers in first)
    assert engine.generate(PROMPTS[:4], settings) == first
