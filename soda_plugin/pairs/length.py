"""The `too_long` check: prompt + longer answer + end of turn, in the student's tokens."""

from __future__ import annotations

from typing import Any, Sequence

from ..chat_format import assistant_turn_suffix, render_prompt, strip_template_bos


class LengthCheck:
    """Counts tokens as the DPO view feeds them to TRL, in batches.

    The prompt is rendered with the student's chat template and tokenized as TRL does
    (`tokenizer(prompt)`, after dropping a template BOS the tokenizer adds again); each
    answer is tokenized on its own, followed by the template's end-of-turn token.
    """

    def __init__(self, tokenizer: Any, sequence_len: int):
        if sequence_len < 1:
            raise ValueError(f"`sequence_len` must be >= 1, got {sequence_len}.")
        self.tokenizer = tokenizer
        self.sequence_len = sequence_len
        self.end_of_turn, _ = assistant_turn_suffix(tokenizer)

    def _lengths(self, texts: list[str], special: bool) -> list[int]:
        if not texts:
            return []
        ids = self.tokenizer(
            texts, add_special_tokens=special, return_attention_mask=False, return_token_type_ids=False
        )["input_ids"]
        return [len(x) for x in ids]

    def fits(self, prompts: Sequence[Sequence[dict[str, str]]], teachers: Sequence[str],
             pair_prompt: Sequence[int], students: Sequence[str]) -> list[bool]:
        """Whether each pair fits. `prompts`/`teachers` are per prompt, `pair_prompt[i]` is
        pair i's prompt position, `students[i]` its rejected answer."""
        rendered = [strip_template_bos(self.tokenizer, render_prompt(self.tokenizer, p)) for p in prompts]
        prompt_len = self._lengths(rendered, special=True)
        teacher_len = self._lengths([t + self.end_of_turn for t in teachers], special=False)
        student_len = self._lengths([s + self.end_of_turn for s in students], special=False)
        return [
            prompt_len[p] + max(teacher_len[p], student_len[i]) <= self.sequence_len
            for i, p in enumerate(pair_prompt)
        ]
