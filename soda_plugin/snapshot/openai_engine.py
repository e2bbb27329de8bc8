"""`openai` snapshot backend: any OpenAI-compatible chat-completions server (for example
`vllm serve <student>` running elsewhere). The server applies the student's template.

One request per answer (`n` requests per prompt, seeds `prompt_seed + i`, see
`engine.prompt_seed`): exact per-answer token
counts, and servers without `n` support work too. Requests run concurrently; the client
retries 429/5xx/timeouts with backoff (honouring `Retry-After`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from ..client.core import ClientSettings
from .engine import Completion, EngineInfo, FinishReason, Messages, SamplingSettings, SnapshotEngine, seeds_for


class OpenAIEngine(SnapshotEngine):
    backend = "openai"

    def __init__(self, model: str, *, base_url: str, api_key_env: str = ClientSettings.api_key_env,
                 concurrency: int = ClientSettings.concurrency,
                 timeout_s: float = 600.0, max_retries: int = 6):
        import openai

        self.model_name = model
        self.base_url = base_url
        self.concurrency = concurrency
        # The key is read from the environment and handed to the client only.
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                                    timeout=timeout_s, max_retries=max_retries)

    def info(self) -> EngineInfo:
        import openai

        return EngineInfo(self.backend, self.model_name, f"openai-python {openai.__version__}",
                          {"base_url": self.base_url, "concurrency": self.concurrency})

    def _one(self, messages: Messages, settings: SamplingSettings, seed: int) -> Completion:
        response = self.client.chat.completions.create(
            model=self.model_name, messages=list(messages), temperature=settings.temperature,
            top_p=settings.top_p, max_tokens=settings.max_tokens, seed=seed, n=1,
        )
        if not response.choices:
            raise RuntimeError(f"the server at {self.base_url} returned no choices")
        choice = response.choices[0]
        if choice.finish_reason not in (FinishReason.STOP.value, FinishReason.LENGTH.value):
            raise RuntimeError(f"unexpected finish_reason {choice.finish_reason!r} from {self.base_url}")
        usage = response.usage
        return Completion(
            text=(choice.message.content or "").strip(),
            finish_reason=FinishReason(choice.finish_reason),
            prompt_tokens=usage.prompt_tokens if usage else -1,
            completion_tokens=usage.completion_tokens if usage else -1,
        )

    def generate(self, prompts: Sequence[Messages], settings: SamplingSettings,
                 prompt_ids: Sequence[str] | None = None) -> list[list[Completion]]:
        seeds = seeds_for(prompts, settings, prompt_ids)
        jobs = [(p, seed) for p, prompt_seeds in enumerate(seeds) for seed in prompt_seeds]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            answers = list(pool.map(lambda job: self._one(prompts[job[0]], settings, job[1]), jobs))
        return [answers[p * settings.n : (p + 1) * settings.n] for p in range(len(prompts))]

    def close(self) -> None:
        self.client.close()
