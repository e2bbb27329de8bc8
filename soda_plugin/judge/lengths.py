"""Answer lengths in tokens, counted one way for every model and for the reference, so the
judge's length diagnostics compare like with like (docs/judge.md).

Without a tokenizer a token is a run of word characters or one punctuation mark
(`\\w+|[^\\w\\s]`): deterministic, needs nothing installed, and roughly proportional to a
subword count. `--length-tokenizer NAME` counts with a Hugging Face tokenizer instead
(no special tokens added).

Examples:
    >>> token_counter(None)("Hello, world! It's 2 o'clock.")
    12
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

WORD_TOKENS = re.compile(r"\w+|[^\w\s]")
REGEX_COUNTER = r"regex:\w+|[^\w\s]"


@dataclass(frozen=True)
class TokenCounter:
    name: str  # recorded in results.json's protocol (`length_tokenizer`)
    count: Callable[[str], int]

    def __call__(self, text: str) -> int:
        return self.count(text)


def counter_name(tokenizer: str | None = None) -> str:
    """How `token_counter(tokenizer)` counts, as results.json's protocol records it."""
    return f"hf:{tokenizer}" if tokenizer else REGEX_COUNTER


def token_counter(tokenizer: str | None = None) -> TokenCounter:
    """The regex counter, or one counting with the Hugging Face tokenizer `tokenizer`.

    Raises:
        ValueError: the tokenizer cannot be loaded (named, with the loader's reason).
    """
    if not tokenizer:
        return TokenCounter(counter_name(), lambda text: len(WORD_TOKENS.findall(text)))
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as error:
        raise ValueError(f"`--length-tokenizer`: cannot load tokenizer {tokenizer!r} ({error}); give a local "
                         "tokenizer folder or Hub id, or leave it out for the regex count.") from error
    return TokenCounter(counter_name(tokenizer), lambda text: len(loaded(text, add_special_tokens=False)["input_ids"]))
