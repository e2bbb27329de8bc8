"""What the tests read from saved models and from `fault_plugin`'s event file, computed
here with plain transformers rather than taken from soda's or the trainer's logs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from soda_plugin.format.rows import SodaFields, parse_row
from soda_plugin.train.reference_store import ReferenceStore, row_key
from soda_plugin.train.views import dpo_example


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(directory) / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def parameters_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: equal for a
    model's `named_parameters()` and its saved `model.safetensors` (tied weights are saved
    once, as `named_parameters` lists them once)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def saved_checksum(directory: Path) -> str:
    return parameters_checksum(weights(directory))


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


def trl_pair_ids(tokenizer, triple: Mapping[str, str]) -> tuple[list[int], list[int], list[int]]:
    """A text DPO triple tokenized as TRL's `DPOTrainer._prepare_dataset` does for
    non-conversational rows: the end-of-sequence token appended to each answer if missing,
    then prompt and prompt + answer tokenized whole, the answer being the tail."""
    eos = tokenizer.eos_token
    prompt_ids = tokenizer(text=triple["prompt"])["input_ids"]
    tails = []
    for answer in (triple["chosen"], triple["rejected"]):
        answer = answer if answer.endswith(eos) else answer + eos
        ids = tokenizer(text=triple["prompt"] + answer)["input_ids"]
        assert ids[:len(prompt_ids)] == prompt_ids, "the prompt's tokens change when an answer follows"
        tails.append(ids[len(prompt_ids):])
    return prompt_ids, tails[0], tails[1]


def _sum_logprob(model, prompt_ids: list[int], completion_ids: list[int]) -> float:
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    return float(logprobs[len(prompt_ids) - 1:].gather(1, ids[0, len(prompt_ids):, None]).sum())


def reference_logps_under(model_dir: Path, rows: list[dict]) -> dict[str, tuple[float, float]]:
    """Per pair, keyed as soda's reference store keys it (`row_key` of TRL's token ids): the
    summed log-probs of the chosen and rejected answers under the model in `model_dir`, one
    unpadded pair at a time with plain transformers."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    found = {}
    for index, row in enumerate(rows):
        triple = dpo_example(tokenizer, parse_row(row, SodaFields(), index=index, need_student=True))
        prompt_ids, chosen_ids, rejected_ids = trl_pair_ids(tokenizer, triple)
        found[row_key(prompt_ids, chosen_ids, rejected_ids)] = (
            _sum_logprob(model, prompt_ids, chosen_ids), _sum_logprob(model, prompt_ids, rejected_ids))
    return found


def stored_reference_logps(store_dir: Path) -> dict[str, tuple[float, float]]:
    """What a reference store's `part-*.jsonl` files hold (a torn line fails the caller's check)."""
    contents = ReferenceStore(Path(store_dir)).read()
    assert contents.torn_lines == 0, f"{contents.torn_lines} torn line(s) in {store_dir}"
    return contents.values


def _event_lines(events: Path, kind: str) -> list[str]:
    """Rank 0's `kind` lines (every rank runs the callbacks), without the `pid=` / `rank=` tail."""
    if not events.exists():
        return []
    lines = [line for line in events.read_text().splitlines() if line.startswith(kind + " ")]
    return [line[len(kind) + 1:].rsplit(" pid=", 1)[0] for line in lines if line.endswith(" rank=0")]


def logged_metrics(events: Path, stage: str | None = None) -> list[dict]:
    """The metrics dicts the trainers logged (`on_log`) on rank 0, in order, each with its
    `stage` and `step`, as `fault_plugin` wrote them; only `stage`'s if given."""
    found = [json.loads(text) for text in _event_lines(events, "metrics")]
    return [record for record in found if stage is None or record["stage"] == stage]


def starting_checksums(events: Path, stage: str) -> list[tuple[int, str]]:
    """Per trainer of `stage`, as `fault_plugin` recorded it at `on_train_begin` on rank 0: (the
    global step it begins at, the checksum of its policy's parameters)."""
    found = []
    for text in _event_lines(events, "weights"):
        fields = dict(part.split("=", 1) for part in text.split())
        if fields["stage"] == stage:
            found.append((int(fields["step"]), fields["sha256"]))
    return found


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
