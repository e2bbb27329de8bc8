"""The shrinking-batch, shared-prefix decoder gives `generate`'s tokens: greedy and sampled,
with rows that stop at different steps, prompts of different lengths and a shared opening."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

from soda_plugin.format.chat_format import render_prompt
from soda_plugin.snapshot.decode import decode, shared_prefix_length
from soda_plugin.snapshot.transformers_engine import PerRowGumbelSampler

QUESTIONS = ["What is 4 plus 5?", "Name a colour.", "Say hi", "Write the word for the number seven, please.",
             "Why?", "Give me three animals that live in the sea and one that does not."]


def _load(directory):
    tokenizer = AutoTokenizer.from_pretrained(str(directory), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    # The tiny models' small initial weights repeat one token whatever the prompt; seeded
    # noise makes answers depend on the prompt, so rows stop at different steps.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model, tokenizer


def _prompt_rows(tokenizer):
    return [tokenizer(render_prompt(tokenizer, [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": q}]),
                      add_special_tokens=False)["input_ids"] for q in QUESTIONS]


def _generate(model, tokenizer, rows, max_new_tokens, stop_ids, processor=None):
    """Reference: HF generate, each row cut after its first stop token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    padded = tokenizer.pad({"input_ids": rows}, return_tensors="pt")
    extra = {"logits_processor": LogitsProcessorList([processor])} if processor else {}
    with torch.no_grad():
        output = model.generate(**padded, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                temperature=None, top_p=None, top_k=None, pad_token_id=pad,
                                eos_token_id=sorted(stop_ids), **extra)
    cut = []
    for tokens in output[:, padded["input_ids"].shape[1]:].tolist():
        stop = next((i for i, t in enumerate(tokens) if t in stop_ids), None)
        cut.append(tokens if stop is None else tokens[: stop + 1])
    return cut


def _frequent_tokens(model, tokenizer, rows, count=3):
    """Tokens greedy decoding emits often: used as stop ids, so rows stop at different steps."""
    free = _generate(model, tokenizer, rows, 12, stop_ids={-1})
    first = {tokens[0] for tokens in free}
    seen = {}
    for tokens in free:
        for t in tokens[2:]:
            if t not in first:
                seen[t] = seen.get(t, 0) + 1
    return {t for t, _ in sorted(seen.items(), key=lambda kv: -kv[1])[:count]}


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_greedy_tokens_equal_generate_with_rows_stopping_at_different_steps(tiny_model_dirs, family):
    model, tokenizer = _load(tiny_model_dirs[family])
    rows = _prompt_rows(tokenizer)
    assert shared_prefix_length(rows) > 3  # the template and system turn are shared
    stop_ids = _frequent_tokens(model, tokenizer, rows)
    expected = _generate(model, tokenizer, rows, 12, stop_ids)
    lengths = {len(t) for t in expected}
    assert len(lengths) > 1 and min(lengths) < 12  # some rows leave the batch early
    assert decode(model, rows, max_new_tokens=12, stop_ids=stop_ids) == expected


def test_sampled_tokens_equal_generate_with_the_same_per_row_generators(tiny_model_dirs):
    model, tokenizer = _load(tiny_model_dirs["qwen2"])
    rows = _prompt_rows(tokenizer)
    stop_ids = _frequent_tokens(model, tokenizer, rows)
    seeds = list(range(100, 100 + len(rows)))
    expected = _generate(model, tokenizer, rows, 10, stop_ids, PerRowGumbelSampler(seeds, 1.0, 0.9, "cpu"))
    got = decode(model, rows, max_new_tokens=10, stop_ids=stop_ids,
                 score_fn=PerRowGumbelSampler(seeds, 1.0, 0.9, "cpu").for_rows)
    assert got == expected
    assert got != decode(model, rows, max_new_tokens=10, stop_ids=stop_ids)  # the noise did something


def test_shared_prefix_leaves_every_row_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[7], [7, 8]]) == 0
    assert shared_prefix_length([[1, 2], [3, 2]]) == 0
    assert shared_prefix_length([]) == 0


def test_one_row_and_a_row_without_a_shared_prefix_decode_like_generate(tiny_model_dirs):
    model, tokenizer = _load(tiny_model_dirs["llama"])
    rows = [[5, 6, 7, 8], [9, 10]]
    assert decode(model, rows, max_new_tokens=5, stop_ids={-1}) == _generate(model, tokenizer, rows, 5, {-1})
    assert decode(model, rows[:1], max_new_tokens=5, stop_ids={-1}) == _generate(model, tokenizer, rows[:1], 5, {-1})


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_new_tokens"):
        decode(None, [[1]], max_new_tokens=0, stop_ids=set())
    with pytest.raises(ValueError, match="no token"):
        decode(None, [[1], []], max_new_tokens=3, stop_ids=set())
