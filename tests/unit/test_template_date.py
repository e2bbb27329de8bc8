"""Prompts render the same on every day: Llama 3.2's template writes today's date unless
it is given `date_string`, and soda always gives it a fixed one."""

import copy
import datetime

from soda_plugin.format.chat_format import FIXED_DATE_STRING, render_final_turn, render_prompt

# The date logic of Llama 3.2's chat template, on a ChatML body.
DATED_TEMPLATE = (
    "{%- if not date_string is defined %}{%- set date_string = strftime_now('%d %b %Y') %}{%- endif %}"
    "<|im_start|>system\nToday Date: {{ date_string }}<|im_end|>\n"
    "{%- for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


def test_prompt_and_final_turn_carry_the_fixed_date_not_today(chatml_tokenizer):
    tokenizer = copy.deepcopy(chatml_tokenizer)
    tokenizer.chat_template = DATED_TEMPLATE
    today = datetime.datetime.now().strftime("%d %b %Y")
    assert today in tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    prompt = render_prompt(tokenizer, [{"role": "user", "content": "hi"}])
    turn = render_final_turn(tokenizer, [{"role": "user", "content": "hi"}], "hello")
    for text in (prompt, turn.prompt):
        assert f"Today Date: {FIXED_DATE_STRING}" in text and (today == FIXED_DATE_STRING or today not in text)
