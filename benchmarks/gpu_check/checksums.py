"""Exact per-tensor weight checksums, of a model in memory or of a saved folder, computed alike.

A tensor's checksum is the sum of its elements' bit patterns as int64 (in chunks, on the tensor's
own device, so a 3B model on a GPU takes well under a second): any changed weight changes it
except by an astronomically unlikely cancellation. Comparing the dict of a model at DPO's first
step with the dict of the warmup's saved folder proves DPO started from q_w.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

_CHUNK = 1 << 24


def tensor_checksum(tensor: Any) -> int:
    import torch

    ints = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    flat = tensor.detach().contiguous().reshape(-1)
    bits = flat.view(ints[flat.element_size()])
    total = 0
    with torch.no_grad():
        for start in range(0, bits.numel(), _CHUNK):
            total += int(bits[start:start + _CHUNK].sum(dtype=torch.int64).item())
    return total


def named_checksums(named_tensors: Iterable[tuple[str, Any]]) -> dict[str, int]:
    return {name: tensor_checksum(tensor) for name, tensor in named_tensors}


def model_checksums(model: Any) -> dict[str, int]:
    """Of `model`'s parameters (tied ones once), named as `save_pretrained` names them."""
    return named_checksums(model.named_parameters())


def folder_checksums(folder: str | Path) -> dict[str, int]:
    """Of every tensor in a saved model folder's `*.safetensors` files."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {folder}")
    sums: dict[str, int] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                sums[name] = tensor_checksum(handle.get_tensor(name))
    return sums


def same_weights(in_memory: dict[str, int], saved: dict[str, int]) -> bool:
    """Every tensor of the saved folder is in memory with the same checksum (a model in memory
    may hold more: a tied `lm_head` is not saved)."""
    return bool(saved) and all(in_memory.get(name) == value for name, value in saved.items())
