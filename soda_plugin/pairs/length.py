"""The `too_long` check: prompt + longer answer + end of turn, in the student's tokens."""

from __future__ import annotations

from typing import Any, Sequence

from ..format.chat_format import assistant_turn_suffix, render_prompt, strip_template_bos

# Tokens added beyond the text itself (BOS, a SentencePiece dummy prefix, normalizer
# expansions): the byte bound below adds this many.
_SPECIAL_TOKENS_MARGIN = 16


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
        pair i's prompt position, `students[i]` its rejected answer.

        Every token of a BPE/SentencePiece tokenizer covers at least one byte of text, so
        a pair whose UTF-8 size (plus a margin) is within `sequence_len` fits without
        tokenizing; only the others are tokenized.
        """
        rendered = [strip_template_bos(self.tokenizer, render_prompt(self.tokenizer, p)) for p in prompts]
        eot = len(self.end_of_turn.encode()) + _SPECIAL_TOKENS_MARGIN
        prompt_bytes = [len(r.encode()) for r in rendered]
        teacher_bytes = [len(t.encode()) for t in teachers]
        result = [
            prompt_bytes[p] + max(teacher_bytes[p], len(students[i].encode())) + eot <= self.sequence_len
            for i, p in enumerate(pair_prompt)
        ]
        unsure = [i for i, ok in enumerate(result) if not ok]
        if not unsure:
            return result
        positions = sorted({pair_prompt[i] for i in unsure})
        prompt_len = dict(zip(positions, self._lengths([rendered[p] for p in positions], special=True)))
        teacher_len = dict(zip(positions, self._lengths([teachers[p] + self.end_of_turn for p in positions], special=False)))
        student_len = self._lengths([students[i] + self.end_of_turn for i in unsure], special=False)
        for i, length in zip(unsure, student_len):
            p = pair_prompt[i]
            result[i] = prompt_len[p] + max(teacher_len[p], length) <= self.sequence_len
        return result
