"""What the tests read from saved models and from `fault_plugin`'s event file, computed
here with plain transformers rather than taken from soda's or the trainer's logs."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from soda_plugin.format.rows import SodaFields, parse_row
from soda_plugin.train.views import dpo_example


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(directory) / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _completion_logprob(model, tokenizer, prompt: str, completion: str) -> float:
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, len(prompt_ids):]
    return float(logprobs[len(prompt_ids) - 1:].gather(1, targets[:, None]).sum())


def mean_margin(model_dir: Path, rows: list[dict]) -> float:
    """Mean over `rows` of log p(chosen) - log p(rejected) under the model in `model_dir`."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    margins = []
    for index, row in enumerate(rows):
        triple = dpo_example(tokenizer, parse_row(row, SodaFields(), index=index, need_student=True))
        margins.append(_completion_logprob(model, tokenizer, triple["prompt"], triple["chosen"])
                       - _completion_logprob(model, tokenizer, triple["prompt"], triple["rejected"]))
    return sum(margins) / len(margins)


def causal_lm_constructions(events: Path) -> list[str]:
    """The `...ForCausalLM` models built, one line each, as `fault_plugin` recorded them."""
    if not events.exists():
        return []
    return [line for line in events.read_text().splitlines() if line.startswith("model ") and "ForCausalLM" in line]


def kills(events: Path) -> list[str]:
    return [line.split()[1] for line in events.read_text().splitlines() if line.startswith("kill ")] if events.exists() else []


def reference_forwards(events: Path) -> list[tuple[str, int]]:
    """Per trainer, as `fault_plugin` recorded it: (stage, model forwards run before its first
    training step). For DPO those are the reference log-prob forwards."""
    if not events.exists():
        return []
    found = []
    for line in events.read_text().splitlines():
        if line.startswith("forwards_before_training "):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            found.append((fields["stage"], int(fields["count"])))
    return found


def attention_states(events: Path) -> list[dict[str, str]]:
    """Per trainer built, as `fault_plugin` recorded it: the stage, whether the attention
    class runs Axolotl's LoRA-kernel forward, and how many instances carry `apply_qkv`."""
    if not events.exists():
        return []
    lines = [line.split()[1:4] for line in events.read_text().splitlines() if line.startswith("attention ")]
    return [dict(field.split("=", 1) for field in fields) for fields in lines]


def attention_runnable(state: dict[str, str]) -> bool:
    """The kernel forward needs `apply_qkv` on every instance; the stock forward needs none."""
    ready, total = state["apply_qkv"].split("/")
    return state["kernel_forward"] == "[False]" or ready == total
