"""`transformers` snapshot backend: batched decoding on CPU (or one GPU), prompts sorted by
length so that a batch pads little; the shared prompt prefix runs once and finished rows leave
the batch (`decode.py`).

Sampling draws each row's token with its own seeded generator (Gumbel-max over the
temperature- and top-p-processed log-probs, exactly a sample from that distribution), so
an answer depends on its prompt's seed, not on which prompts share its batch.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..format.chat_format import render_prompt
from .decode import decode
from .engine import Completion, EngineInfo, FinishReason, Messages, SamplingSettings, SnapshotEngine, seeds_for


class TransformersEngine(SnapshotEngine):
    backend = "transformers"

    def __init__(self, model: str, *, dtype: str = "float32", batch_size: int = 8, device: str | None = None,
                 trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model
        self.batch_size = batch_size
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype
        self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left", trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
        ).to(device).eval()
        self.stop_ids = self._stop_token_ids()

    def _stop_token_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def info(self) -> EngineInfo:
        import transformers

        return EngineInfo(self.backend, self.model_name, transformers.__version__,
                          {"dtype": self.dtype, "batch_size": self.batch_size, "device": str(self.model.device)})

    def _encode(self, prompts: Sequence[Messages]) -> list[list[int]]:
        return [
            self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"]
            for messages in prompts
        ]

    def prompt_token_counts(self, prompts: Sequence[Messages]) -> list[int]:
        return [len(ids) for ids in self._encode(prompts)]

    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def generate(self, prompts: Sequence[Messages], settings: SamplingSettings,
                 prompt_ids: Sequence[str] | None = None) -> list[list[Completion]]:
        seeds = seeds_for(prompts, settings, prompt_ids)
        encoded = self._encode(prompts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[list[Completion]] = [[] for _ in encoded]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            completions = self._generate_batch([encoded[i] for i in batch], settings, [seeds[i] for i in batch])
            for index, answers in zip(batch, completions):
                results[index] = answers
        return results

    def _generate_batch(self, batch_ids: list[list[int]], settings: SamplingSettings,
                        seeds: list[list[int]]) -> list[list[Completion]]:
        # One row per (prompt, sample), prompt-major: row // n is the prompt, row % n the sample.
        rows = [ids for ids in batch_ids for _ in range(settings.n)]
        score_fn = None
        if not settings.greedy:
            # The argmax of log-prob + Gumbel noise from the row's own generator is a sample.
            row_seeds = [seed for prompt_seeds in seeds for seed in prompt_seeds]
            score_fn = PerRowGumbelSampler(row_seeds, settings.temperature, settings.top_p, self.model.device).for_rows
        new_tokens = decode(self.model, rows, max_new_tokens=settings.max_tokens, stop_ids=self.stop_ids,
                            score_fn=score_fn)
        answers = [self._completion(tokens, len(batch_ids[row // settings.n])) for row, tokens in enumerate(new_tokens)]
        return [answers[i * settings.n : (i + 1) * settings.n] for i in range(len(batch_ids))]

    def _completion(self, tokens: list[int], prompt_tokens: int) -> Completion:
        stop_at = next((i for i, token in enumerate(tokens) if token in self.stop_ids), None)
        kept = tokens if stop_at is None else tokens[: stop_at + 1]
        text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
        reason = FinishReason.LENGTH if stop_at is None else FinishReason.STOP
        return Completion(text=text, finish_reason=reason, prompt_tokens=prompt_tokens, completion_tokens=len(kept))

    def close(self) -> None:
        import gc

        del self.model
        gc.collect()


class PerRowGumbelSampler:
    """A logits processor that turns greedy decoding into sampling with one generator per row.

    argmax(log softmax(z / T) restricted to the top-p set + Gumbel noise) is a draw from
    that distribution (the Gumbel-max trick), and the noise of row r comes only from
    `seeds[r]`: batch-mates do not change a row's draws.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: Any):
        import torch

        self.temperature = temperature
        self.top_p = top_p
        self.generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """The `LogitsProcessor` form: `scores` holds every row."""
        return self.for_rows(scores, list(range(len(self.generators))))

    def for_rows(self, scores: Any, rows: list[int]) -> Any:
        """Scores of the batch rows `rows` (in that order), drawing only from their generators."""
        import torch

        logprobs = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            logprobs = _top_p_mask(logprobs, self.top_p)
        uniform = torch.stack([
            torch.rand(logprobs.shape[-1], generator=self.generators[row], device=logprobs.device) for row in rows
        ])
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=1e-20, max=1.0 - 1e-7)))
        return logprobs + gumbel


def _top_p_mask(logprobs: Any, top_p: float) -> Any:
    """Keep the smallest set of tokens whose probability reaches `top_p` (at least one)."""
    import torch

    sorted_logprobs, order = torch.sort(logprobs, descending=True, dim=-1)
    cumulative = sorted_logprobs.exp().cumsum(dim=-1)
    drop_sorted = cumulative - sorted_logprobs.exp() >= top_p  # mass before this token already reached top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logprobs.masked_fill(drop, float("-inf"))
