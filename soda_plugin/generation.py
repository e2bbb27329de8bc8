"""Batched greedy/sampled answers from a local HF model on CPU, with the chat template.

A minimal transformers engine: prompts sorted by length to cut padding, left padding,
answers returned in input order. The snapshot tool's engines grow from here.
"""

from __future__ import annotations

from typing import Sequence

from .chat_format import render_prompt


def generate_answers(
    model_dir: str,
    prompts: Sequence[Sequence[dict[str, str]]],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    progress: bool = True,
) -> list[str]:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts = [render_prompt(tokenizer, messages) for messages in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    answers: list[str] = [""] * len(texts)
    bar = tqdm(total=len(texts), desc="generating", unit="prompt", disable=not progress)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        encoded = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        for index, tokens in zip(batch, new_tokens):
            answers[index] = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        bar.update(len(batch))
    bar.close()
    return answers
