"""Rendering a prompt and its final assistant turn with the student's chat template.

Both views of the `soda` type and the snapshot tool render through here, so the student
sees one format everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

_PROBE = "SODAPROBE7f3a"

# Llama 3.2's template writes "Today Date: <today>" unless given `date_string`, so the
# snapshot, the SFT and DPO views and the evaluation would each see a different prompt, and
# tokenized caches would depend on the day they were made. Every render passes this fixed
# date (the one Llama 3.1's template hard-codes); templates without the variable ignore it.
FIXED_DATE_STRING = "26 Jul 2024"
TEMPLATE_KWARGS = {"date_string": FIXED_DATE_STRING}


class ChatTemplateError(ValueError):
    """The tokenizer's chat template cannot be used for prompt/response rendering."""


@dataclass(frozen=True)
class RenderedTurn:
    """A prompt and one assistant answer, as text.

    `prompt` ends with the generation prompt; `completion` is the answer as the template
    writes it followed by its end-of-turn token; `trailer` is what the template appends
    after the end-of-turn token (e.g. the newline after ChatML's `<|im_end|>`).
    """

    prompt: str
    completion: str
    trailer: str


def _require_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            "the student's tokenizer has no chat template. Set `chat_template` in the config "
            "(e.g. `chat_template: chatml`) or use an instruct model that ships one."
        )


_SUFFIX_CACHE: dict[tuple[str, str | None, str | None], str] = {}


def _template_turn_suffix(tokenizer: Any) -> str:
    key = (tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token)
    if key not in _SUFFIX_CACHE:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}],
            tokenize=False, **TEMPLATE_KWARGS,
        )
        _SUFFIX_CACHE[key] = text[text.rindex(_PROBE) + len(_PROBE):]
    return _SUFFIX_CACHE[key]


def assistant_turn_suffix(tokenizer: Any) -> tuple[str, str]:
    """Return `(end_of_turn, trailer)`: what the template writes after an assistant answer.

    Falls back to the tokenizer's EOS token when the template writes nothing.
    """
    _require_template(tokenizer)
    suffix = _template_turn_suffix(tokenizer)
    end_of_turn = suffix.rstrip()
    trailer = suffix[len(end_of_turn):]
    if not end_of_turn:
        if not tokenizer.eos_token:
            raise ChatTemplateError(
                "the chat template writes no end-of-turn token and the tokenizer has no "
                "`eos_token`; the student could never learn to stop."
            )
        end_of_turn = tokenizer.eos_token
    return end_of_turn, trailer


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The prompt as text, ending with the template's generation prompt."""
    _require_template(tokenizer)
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True,
                                         **TEMPLATE_KWARGS)


def render_final_turn(tokenizer: Any, messages: Sequence[dict[str, str]], response: str) -> RenderedTurn:
    """Render `messages` plus `response` as the final assistant turn.

    Raises:
        ChatTemplateError: when the rendered prompt is not a prefix of the rendered
            conversation, which would make prompt masking wrong.
    """
    prompt = render_prompt(tokenizer, messages)
    full = tokenizer.apply_chat_template(
        list(messages) + [{"role": "assistant", "content": response}], tokenize=False, **TEMPLATE_KWARGS
    )
    if not full.startswith(prompt):
        raise ChatTemplateError(
            "the chat template renders the prompt differently with and without the answer "
            f"(prompt: {prompt[-80:]!r}); prompt tokens could not be masked exactly. Use a "
            "template whose generation prompt is a prefix of the full conversation."
        )
    end_of_turn, trailer = assistant_turn_suffix(tokenizer)
    tail = full[len(prompt):]
    # The template may reformat the answer (Llama 3 trims it); keep its rendering.
    suffix = end_of_turn + trailer
    if tail.endswith(suffix):
        answer = tail[: len(tail) - len(suffix)]
    elif tail.endswith(end_of_turn):
        answer, trailer = tail[: len(tail) - len(end_of_turn)], ""
    else:
        answer, trailer = tail, ""
    return RenderedTurn(prompt=prompt, completion=answer + end_of_turn, trailer=trailer)


def plain_tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether `tokenizer(text)` prepends BOS by itself (Llama does, ChatML models do not)."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos_id


def strip_template_bos(tokenizer: Any, prompt: str) -> str:
    """Drop a BOS the template wrote when the plain tokenizer will add its own.

    TRL tokenizes string prompts with `tokenizer(prompt)`, which adds BOS; without this
    a Llama prompt would start with two BOS tokens.
    """
    bos = getattr(tokenizer, "bos_token", None)
    if bos and prompt.startswith(bos) and plain_tokenizer_adds_bos(tokenizer):
        return prompt[len(bos):]
    return prompt
