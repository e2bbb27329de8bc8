"""Per-prompt seeds: a sampled q0 answer depends on its prompt's id and sample index only,
not on the batch, the order or the shard it was generated in, and no two prompts share a
noise stream (issue 13, item 3)."""

import json
import math
from collections import Counter

import pytest
import torch

from chat_server import ChatServer, Reply
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.snapshot import store
from soda_plugin.snapshot.engine import SamplingSettings, create_engine, prompt_seed, sample_seeds
from soda_plugin.snapshot.runner import SnapshotMismatchError, run_snapshot
from soda_plugin.snapshot.transformers_engine import PerRowGumbelSampler

PROMPTS = [[{"role": "user", "content": f"Tell me about the number {i}."}] for i in range(6)]
SAMPLED = SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=6, n=2, seed=5)


def test_seeds_come_from_the_prompt_id_and_differ_between_prompts():
    ids = [prompt_id(p) for p in PROMPTS]
    seeds = [prompt_seed(5, pid) for pid in ids]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**30 for s in seeds)
    assert prompt_seed(5, ids[0]) == seeds[0] and prompt_seed(6, ids[0]) != seeds[0]
    assert sample_seeds(5, ids[0], 3) == [seeds[0], seeds[0] + 1, seeds[0] + 2]


def test_transformers_answers_do_not_depend_on_batching_or_order(tiny_model_dirs):
    model = str(tiny_model_dirs["qwen2"])
    batched = create_engine("transformers", model, batch_size=4).generate(PROMPTS, SAMPLED)
    alone = create_engine("transformers", model, batch_size=1)
    reversed_answers = alone.generate(PROMPTS[::-1], SAMPLED)[::-1]
    assert [[c.text for c in a] for a in batched] == [[c.text for c in a] for a in reversed_answers]
    # the two samples of a prompt and the answers of different prompts draw different noise
    texts = [c.text for answers in batched for c in answers]
    assert len(set(texts)) > len(texts) // 2


def test_the_same_prompt_under_two_ids_gets_two_noise_streams(tiny_model_dirs):
    engine = create_engine("transformers", str(tiny_model_dirs["qwen2"]), batch_size=8)
    same = [PROMPTS[0]] * 8
    answers = engine.generate(same, SamplingSettings(temperature=1.0, max_tokens=6, seed=1),
                              prompt_ids=[f"id-{i}" for i in range(8)])
    assert len({a[0].text for a in answers}) >= 4


def test_the_gumbel_sampler_draws_from_the_tempered_top_p_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    temperature, top_p, draws = 0.7, 0.9, 6000
    counts = Counter()
    for seed in range(draws):
        scores = PerRowGumbelSampler([seed], temperature, top_p, "cpu")(None, logits.clone())
        counts[int(scores.argmax())] += 1
    probs = torch.softmax(logits[0] / temperature, dim=-1)
    order = torch.argsort(probs, descending=True).tolist()
    kept, mass = [], 0.0
    for token in order:
        if mass >= top_p:
            break
        kept.append(token)
        mass += float(probs[token])
    expected = {t: float(probs[t]) / mass for t in kept}
    assert set(counts) == set(kept)
    for token, p in expected.items():
        tolerance = 4 * math.sqrt(p * (1 - p) / draws)
        assert abs(counts[token] / draws - p) < tolerance, (token, counts[token] / draws, p)


def test_openai_requests_carry_per_prompt_seeds_whatever_the_order():
    seen: dict[str, list[int]] = {}

    def respond(request):
        seen.setdefault(request["messages"][-1]["content"], []).append(request["seed"])
        return Reply("ok", "stop", 3, 1)

    with ChatServer(respond) as server:
        engine = create_engine("openai", "tiny", base_url=server.base_url, concurrency=3)
        engine.generate(PROMPTS, SAMPLED)
        engine.generate(PROMPTS[::-1], SAMPLED)
    for messages in PROMPTS:
        first = prompt_seed(SAMPLED.seed, prompt_id(messages))
        assert sorted(seen[messages[-1]["content"]]) == [first, first, first + 1, first + 1]
    assert len({min(seeds) for seeds in seen.values()}) == len(PROMPTS)


def test_sharded_resumed_snapshot_equals_one_pass(tiny_model_dirs, tmp_path):
    engine = create_engine("transformers", str(tiny_model_dirs["qwen2"]), batch_size=3)
    run_snapshot(engine, PROMPTS, tmp_path / "one", SAMPLED, source="q0", shard_size=6, progress=False)
    run_snapshot(engine, PROMPTS[:2], tmp_path / "two", SAMPLED, source="q0", shard_size=1, progress=False)
    run_snapshot(engine, PROMPTS[::-1], tmp_path / "two", SAMPLED, source="q0", shard_size=4, progress=False)

    def answers(folder):
        return {(r["prompt_id"], r["sample_index"]): r["response"] for r in store.iter_rows(folder)}

    assert answers(tmp_path / "one") == answers(tmp_path / "two")
    assert store.read_manifest(tmp_path / "one")["seeding"] == "per-prompt-sha256-v1"


def test_a_sampled_folder_from_the_old_seeding_is_not_resumed(tiny_model_dirs, tmp_path):
    engine = create_engine("transformers", str(tiny_model_dirs["qwen2"]), batch_size=3)
    run_snapshot(engine, PROMPTS[:2], tmp_path, SAMPLED, source="q0", progress=False)
    manifest = store.read_manifest(tmp_path)
    del manifest["seeding"]  # as written before per-prompt seeds
    store.write_manifest(tmp_path, manifest)
    with pytest.raises(SnapshotMismatchError, match="seeding"):
        run_snapshot(engine, PROMPTS, tmp_path, SAMPLED, source="q0", progress=False)


def test_prompts_over_the_limit_are_listed_not_generated_then_taken_by_a_higher_limit(tiny_model_dirs, tmp_path):
    engine = create_engine("transformers", str(tiny_model_dirs["qwen2"]), batch_size=3)
    long_prompt = [{"role": "user", "content": "word " * 60}]
    prompts = PROMPTS[:3] + [long_prompt]
    lengths = engine.prompt_token_counts(prompts)
    limit = max(lengths[:3])
    assert lengths[3] > limit
    summary = run_snapshot(engine, prompts, tmp_path, SAMPLED, source="q0", progress=False, max_prompt_tokens=limit)
    assert {r["prompt_id"] for r in store.iter_rows(tmp_path)} == {prompt_id(p) for p in PROMPTS[:3]}
    listed = [json.loads(line) for line in (tmp_path / "too_long.jsonl").read_text().splitlines()]
    assert [(r["prompt_id"], r["prompt_tokens"], r["limit"]) for r in listed] == [(prompt_id(long_prompt), lengths[3], limit)]
    assert summary.too_long == 1 and summary.prompts_generated == 3 and "1 prompts left out as too long" in summary.report()
    summary = run_snapshot(engine, prompts, tmp_path, SAMPLED, source="q0", progress=False, max_prompt_tokens=lengths[3])
    assert summary.too_long == 0 and summary.prompts_generated == 1 and not (tmp_path / "too_long.jsonl").exists()
    assert len(store.done_prompt_ids(tmp_path)) == 4


def test_a_prompt_longer_than_the_context_is_left_out_without_a_limit(tiny_model_dirs, tmp_path):
    engine = create_engine("transformers", str(tiny_model_dirs["qwen2"]), batch_size=3)
    context = engine.context_length()
    too_long = [{"role": "user", "content": "word " * (context + 10)}]
    summary = run_snapshot(engine, PROMPTS[:2] + [too_long], tmp_path, SAMPLED, source="q0", progress=False)
    assert summary.too_long == 1 and store.done_prompt_ids(tmp_path) == {prompt_id(p) for p in PROMPTS[:2]}
