"""`transformers` snapshot backend: batched `generate` on CPU (or one GPU), left padding,
prompts sorted by length so that a batch pads little."""

from __future__ import annotations

from typing import Any, Sequence

from ..chat_format import render_prompt
from .engine import Completion, EngineInfo, FinishReason, Messages, SamplingSettings, SnapshotEngine


class TransformersEngine(SnapshotEngine):
    backend = "transformers"

    def __init__(self, model: str, *, dtype: str = "float32", batch_size: int = 8, device: str = "cpu",
                 trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model
        self.batch_size = batch_size
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
                          {"dtype": self.dtype, "batch_size": self.batch_size})

    def generate(self, prompts: Sequence[Messages], settings: SamplingSettings) -> list[list[Completion]]:
        encoded = [
            self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"]
            for messages in prompts
        ]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[list[Completion]] = [[] for _ in encoded]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            completions = self._generate_batch([encoded[i] for i in batch], settings, seed=settings.seed + start)
            for index, answers in zip(batch, completions):
                results[index] = answers
        return results

    def _generate_batch(self, batch_ids: list[list[int]], settings: SamplingSettings, seed: int) -> list[list[Completion]]:
        import torch

        padded = self.tokenizer.pad({"input_ids": batch_ids}, return_tensors="pt").to(self.model.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if not settings.greedy:
            # Seeded per batch: sampled answers depend on how prompts were batched.
            torch.manual_seed(seed)
            sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
        with torch.no_grad():
            output = self.model.generate(
                **padded, max_new_tokens=settings.max_tokens, num_return_sequences=settings.n,
                pad_token_id=self.tokenizer.pad_token_id, **sampling,
            )
        new_tokens = output[:, padded["input_ids"].shape[1]:].tolist()
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
