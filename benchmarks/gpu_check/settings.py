"""The check's settings (one dict, shared by the parent and every phase process) and its paths."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .shapes import MODELS

DEFAULT_GPU_SITE = "/tmp/soda-gpu/site-packages"  # where gpu_check.sh installs the wheels
MARGIN_TOLERANCE = 1e-3
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# name, timeout on GPU (s), timeout on CPU (s). Order: the measurements that matter most first.
PHASES: list[tuple[str, int, int]] = [
    ("env", 90, 120),
    ("chain", 200, 150),
    ("reference", 120, 90),
    ("rerun", 120, 120),
    ("dpo_resident", 100, 90),
    ("dpo_ref_kept", 100, 90),
    ("snapshot", 80, 90),
    ("lora_chain", 200, 150),
]
TRL_ONLY_PHASES = ("dpo_resident", "dpo_ref_kept")  # labelled "TRL only, not soda's path" in the table
MIN_PHASE_S = 25  # a phase is skipped rather than started with less time than this left


def make_settings(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cpu = args.cpu
    model = "tiny" if cpu else args.model
    steps = 2 if cpu else 4
    site = Path(args.site).resolve() if args.site else (workdir / "standins" / "site-packages" if cpu
                                                          else Path(DEFAULT_GPU_SITE))
    return {
        "mode": "cpu" if cpu else "gpu",
        "model": model,
        "shape": dict(MODELS[model]),
        "device": "cpu" if cpu else "cuda",
        "dtype": "float32" if cpu else "bfloat16",
        "attn_implementation": "sdpa",  # the recipes' value (flash-attn is not on the machine)
        "gradient_checkpointing": True,
        "prompt_tokens": args.prompt_tokens or (16 if cpu else 512),
        "response_tokens": args.response_tokens or (48 if cpu else 1536),
        "sft_steps": args.sft_steps or steps,
        "dpo_steps": args.dpo_steps or steps,
        "micro_batch_size": 1,  # the recipes' DPO micro batch
        "precompute_ref_batch_size": 4,  # the recipes' `soda.precompute_ref_batch_size`
        "reference_pairs": 8 if cpu else 64,
        # The recipes' rates (1e-6) barely move bf16 weights in 4 steps; memory does not depend on the rate.
        "sft_learning_rate": 1.0e-3 if cpu else 1.0e-4,
        "dpo_learning_rate": 1.0e-3 if cpu else 2.0e-5,
        "beta": 0.1,
        "seed": 42,
        "snapshot_prompts": 4 if cpu else 32,
        "snapshot_new_tokens": 16 if cpu else 128,
        "workdir": str(workdir),
        "site": str(site),
        # --cpu: `axolotl train` sees only what the GPU machine has plus the wheels (gpu_view.py).
        "gpu_view": str(workdir / "gpu_view" / "site-packages") if cpu else None,
    }


def paths(settings: dict[str, Any]) -> dict[str, Path]:
    w = Path(settings["workdir"])
    return {
        "q0": w / "q0",
        "rows": w / "rows.jsonl",
        "chain": w / "chain",
        "lora": w / "lora",
        "reference": w / "reference",
        "hf_cache": w / "hf_cache",
    }


def n_rows(settings: dict[str, Any]) -> int:
    trained = max(settings["sft_steps"], settings["dpo_steps"]) * settings["micro_batch_size"]
    return max(trained, settings["snapshot_prompts"], settings["reference_pairs"])


def torch_dtype(settings: dict[str, Any]):
    import torch

    return getattr(torch, settings["dtype"])


def cuda(settings: dict[str, Any]) -> bool:
    return settings["device"] == "cuda"
