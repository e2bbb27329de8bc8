"""Both views of the `soda` type at token level, for a Llama 3 and a ChatML template."""

import copy

import pytest

from soda_plugin.format.chat_format import ChatTemplateError, render_final_turn
from soda_plugin.constants import IGNORE_INDEX
from soda_plugin.format.rows import SodaRow
from soda_plugin.train.views import dpo_example, sft_example

USER = {"role": "user", "content": "What is 12 plus 7?"}
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
MULTI = (
    {"role": "user", "content": "Hello there!"},
    {"role": "assistant", "content": "Hello! How can I help you today?"},
    USER,
)


def _trained(example):
    return [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]


def test_llama_sft_labels_are_exactly_the_answer_and_end_of_turn(llama_tokenizer):
    tok = llama_tokenizer
    row = SodaRow(messages=(USER,), teacher="The answer is 19.")
    example = sft_example(tok, row)
    prompt_ids = tok.apply_chat_template([USER], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    answer_ids = tok("The answer is 19.<|eot_id|>", add_special_tokens=False)["input_ids"]
    assert example["input_ids"] == prompt_ids + answer_ids
    assert example["labels"] == [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    assert example["attention_mask"] == [1] * len(example["input_ids"])
    assert example["input_ids"].count(tok.bos_token_id) == 1
    # Chat-template round trip: the whole example is what the template renders.
    full = tok.apply_chat_template([USER, {"role": "assistant", "content": row.teacher}], tokenize=False)
    assert tok.decode(example["input_ids"]) == full


def test_chatml_sft_masks_the_newline_after_end_of_turn(chatml_tokenizer):
    tok = chatml_tokenizer
    example = sft_example(tok, SodaRow(messages=(USER,), teacher="The answer is 19."))
    assert tok.decode(_trained(example)) == "The answer is 19.<|im_end|>"
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    assert example["input_ids"][-len(newline):] == newline
    assert example["labels"][-len(newline):] == [IGNORE_INDEX] * len(newline)
    full = tok.apply_chat_template([USER, {"role": "assistant", "content": "The answer is 19."}], tokenize=False)
    assert tok.decode(example["input_ids"]) == full


@pytest.mark.parametrize("family", ["llama", "chatml"])
def test_system_and_earlier_turns_are_masked(family, llama_tokenizer, chatml_tokenizer):
    tok = llama_tokenizer if family == "llama" else chatml_tokenizer
    row = SodaRow(messages=(SYSTEM,) + MULTI, teacher="It is 19.")
    example = sft_example(tok, row)
    trained = tok.decode(_trained(example))
    assert trained.startswith("It is 19.") and "Hello" not in trained and "helpful" not in trained
    prompt_ids = tok.apply_chat_template([SYSTEM, *MULTI], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert example["input_ids"][: len(prompt_ids)] == prompt_ids
    assert set(example["labels"][: len(prompt_ids)]) == {IGNORE_INDEX}
    assert example["labels"][len(prompt_ids)] != IGNORE_INDEX


def test_llama_dpo_view_tokenizes_to_the_template_with_one_bos(llama_tokenizer):
    tok = llama_tokenizer
    row = SodaRow(messages=(SYSTEM, USER), teacher="19.", student="Maybe 20?")
    triple = dpo_example(tok, row)
    assert triple["chosen"] == "19.<|eot_id|>"
    assert triple["rejected"] == "Maybe 20?<|eot_id|>"
    # TRL tokenizes a string prompt with `tokenizer(prompt)`, which adds BOS itself.
    expected = tok.apply_chat_template([SYSTEM, USER], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert tok(triple["prompt"])["input_ids"] == expected
    assert not triple["prompt"].startswith(tok.bos_token)


def test_chatml_dpo_view_is_the_rendered_prompt_and_answers(chatml_tokenizer):
    tok = chatml_tokenizer
    triple = dpo_example(tok, SodaRow(messages=MULTI, teacher="19.", student="20."))
    assert triple == {
        "prompt": "<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help you today?"
        "<|im_end|>\n<|im_start|>user\nWhat is 12 plus 7?<|im_end|>\n<|im_start|>assistant\n",
        "chosen": "19.<|im_end|>",
        "rejected": "20.<|im_end|>",
    }


def test_template_that_rewrites_the_prompt_is_refused(chatml_tokenizer):
    broken = copy.deepcopy(chatml_tokenizer)
    broken.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT NOW:{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="prefix"):
        render_final_turn(broken, [USER], "19")


def test_missing_chat_template_is_a_clear_error(chatml_tokenizer):
    bare = copy.deepcopy(chatml_tokenizer)
    bare.chat_template = None
    with pytest.raises(ChatTemplateError, match="`chat_template`"):
        sft_example(bare, SodaRow(messages=(USER,), teacher="19"))


def test_chosen_and_rejected_get_the_same_whitespace_treatment(chatml_tokenizer):
    from soda_plugin.format.rows import SodaRow
    from soda_plugin.train.views import dpo_example, sft_example

    row = SodaRow(messages=({"role": "user", "content": "2+2?"},), teacher="\n  4 \n", student="5")
    triple = dpo_example(chatml_tokenizer, row)
    assert (triple["chosen"], triple["rejected"]) == ("4<|im_end|>", "5<|im_end|>")
    tokens = sft_example(chatml_tokenizer, row)
    answer = [t for t, label in zip(tokens["input_ids"], tokens["labels"]) if label != -100]
    assert chatml_tokenizer.decode(answer) == "4<|im_end|>"
