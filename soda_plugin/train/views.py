"""The views of a `soda` row: tokenized SFT example, DPO text triple, GRPO prompt with its teacher answer."""

from __future__ import annotations

from typing import Any

from ..format.chat_format import render_final_turn, strip_template_bos
from ..constants import GRPO_TEACHER_COLUMN, IGNORE_INDEX
from ..format.rows import SodaRow


def _ids(tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def sft_example(tokenizer: Any, row: SodaRow) -> dict[str, list[int]]:
    """Tokenize `row` for the warmup: loss on the teacher's answer and its end-of-turn only.

    Prompt and answer are tokenized separately, as they are at inference (the model
    generates answer tokens after the prompt's tokens), so the mask boundary is exact.

    Examples:
        With a ChatML template and prompt `[{"role": "user", "content": "2+2?"}]`, teacher
        answer `"4"`: `input_ids` encodes
        `<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n4<|im_end|>\\n` and
        `labels` is `-100` everywhere except the tokens of `4<|im_end|>`.
    """
    turn = render_final_turn(tokenizer, row.messages, row.teacher.strip())
    prompt_ids = _ids(tokenizer, turn.prompt)
    answer_ids = _ids(tokenizer, turn.completion)
    trailer_ids = _ids(tokenizer, turn.trailer)
    input_ids = prompt_ids + answer_ids + trailer_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids + [IGNORE_INDEX] * len(trailer_ids)
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def dpo_example(tokenizer: Any, row: SodaRow) -> dict[str, str]:
    """The DPO triple: templated prompt, teacher answer as chosen, student answer as rejected.

    Examples:
        With a ChatML template, prompt `[{"role": "user", "content": "2+2?"}]`, teacher `"4"`
        and student `"5"`:
        `{"prompt": "<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n",
        "chosen": "4<|im_end|>", "rejected": "5<|im_end|>"}`.
    """
    # Both answers stripped, as the snapshot strips q0's: whitespace on one side only would
    # be a preference feature learnable without reading the answers.
    chosen = render_final_turn(tokenizer, row.messages, row.teacher.strip())
    rejected = render_final_turn(tokenizer, row.messages, (row.student or "").strip())
    return {
        "prompt": strip_template_bos(tokenizer, chosen.prompt),
        "chosen": chosen.completion,
        "rejected": rejected.completion,
    }


def grpo_example(tokenizer: Any, row: SodaRow) -> dict[str, str]:
    """GAD's view: the templated prompt, which the policy answers, and the teacher's answer
    rendered as the final turn (with its end-of-turn token), which the discriminator reads.

    Examples:
        With a ChatML template, prompt `[{"role": "user", "content": "2+2?"}]` and teacher `"4"`:
        `{"prompt": "<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n",
        "teacher_completion": "4<|im_end|>"}`.
    """
    turn = render_final_turn(tokenizer, row.messages, row.teacher.strip())
    return {"prompt": strip_template_bos(tokenizer, turn.prompt), GRPO_TEACHER_COLUMN: turn.completion}
