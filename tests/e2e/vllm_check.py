"""Greedy answers from the `vllm` snapshot backend, as JSON on the last line of stdout.

Run with the vLLM venv (tools/env_vllm.sh), not the main one:

    .venv-vllm/bin/python tests/e2e/vllm_check.py outputs/models/SmolLM2-135M-Instruct

float32 and eager mode: compiled bfloat16 once gave a different greedy answer on CPU.
"""

import json
import os
import sys

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write one sentence about the sea."}],
    [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name three primary colors."},
    ],
    [{"role": "user", "content": "How many legs does a spider have?"}],
]


def main(model_dir: str) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from soda_plugin.snapshot.engine import SamplingSettings, create_engine

    engine = create_engine("vllm", model_dir, dtype="float32", enforce_eager=True, max_model_len=2048)
    try:
        answers = engine.generate(PROMPTS, SamplingSettings(temperature=0.0, max_tokens=32, n=1))
    finally:
        engine.close()
    rows = [
        {
            "text": c.text,
            "finish_reason": c.finish_reason.value,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
        }
        for (c,) in answers
    ]
    print(json.dumps(rows), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
