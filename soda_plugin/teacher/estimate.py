"""`--dry-run`: what a collection would send and cost, without calling the API.

Prompt tokens: each message's content counted with `--tokenizer` (a local Hugging Face
tokenizer) when given, else as characters / 4 (OpenAI's rule of thumb for English text),
plus 4 tokens per message and 3 per request for the chat format's role markers.
Completion tokens: the mean of the answers already in the output file when there are
any; else `max_tokens` per prompt (an upper bound); else `ASSUMED_COMPLETION_TOKENS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 3
# The paper's response cap (SODA_METHOD.md: max response 1536 tokens), used only when
# neither observed answers nor `max_tokens` say more.
ASSUMED_COMPLETION_TOKENS = 1536


@dataclass(frozen=True)
class CostEstimate:
    prompts: int
    prompt_tokens: int
    completion_tokens: int
    prompt_method: str
    completion_method: str
    cost: float

    def report(self) -> str:
        return (f"dry run: {self.prompts} prompts would be sent; about {self.prompt_tokens} prompt tokens "
                f"({self.prompt_method}) + {self.completion_tokens} completion tokens ({self.completion_method}) "
                f"= ${self.cost:.4f}")


def message_tokens(messages: Sequence[dict[str, str]], tokenizer: Any = None) -> int:
    content = [str(m.get("content", "")) for m in messages]
    if tokenizer is not None:
        text_tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in content)
    else:
        text_tokens = sum(math.ceil(len(text) / CHARS_PER_TOKEN) for text in content)
    return text_tokens + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_REQUEST


def estimate_cost(requests: Sequence[Sequence[dict[str, str]]], *, max_tokens: int | None,
                  observed_mean_completion: float | None, price_in: float, price_out: float,
                  tokenizer: Any = None, tokenizer_name: str | None = None) -> CostEstimate:
    """Tokens and cost of sending `requests` (the messages as they would be sent)."""
    prompt_tokens = sum(message_tokens(messages, tokenizer) for messages in requests)
    if observed_mean_completion is not None:
        per_answer, completion_method = observed_mean_completion, "mean of the answers already collected"
    elif max_tokens is not None:
        per_answer, completion_method = max_tokens, "max_tokens per prompt, an upper bound"
    else:
        per_answer = ASSUMED_COMPLETION_TOKENS
        completion_method = f"assumed {ASSUMED_COMPLETION_TOKENS} per prompt; set --max-tokens for a bound"
    completion_tokens = math.ceil(per_answer * len(requests))
    prompt_method = f"tokenizer {tokenizer_name}" if tokenizer is not None else f"characters / {CHARS_PER_TOKEN}"
    prompt_method += f" + {TOKENS_PER_MESSAGE}/message + {TOKENS_PER_REQUEST}/request"
    cost = (prompt_tokens * price_in + completion_tokens * price_out) / 1e6
    return CostEstimate(len(requests), prompt_tokens, completion_tokens, prompt_method, completion_method, cost)
