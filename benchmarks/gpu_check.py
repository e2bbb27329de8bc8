"""A prepared GPU check of soda's chain: one command, one table, under 8 minutes on one H200.

    # on the lent GPU machine (wheels from tools/gpu_wheels.sh, carried as .whl):
    bash benchmarks/gpu_check.sh      # installs .whl into /tmp/soda-gpu/site-packages, writes $OUT/gpu_check.*
    python benchmarks/gpu_check.py --cpu --out /tmp/gc               # the same phases on CPU, tiny model

What it measures, on a random-initialised model with a real student's shape (Qwen2.5-1.5B by
default, `--model qwen2.5-3b`), bf16, gradient checkpointing, 2k-token pairs (512 prompt +
1536 response tokens):

- `chain`: soda's warmup (SFT on the teacher answer) then DPO from the warmup's weights with
  reference log-probs precomputed and no resident reference model; the rewards margin at
  DPO step 0 (must be 0: the reference is the policy at step 0); peak GPU memory of each stage;
  `torch.cuda.memory_allocated()` just before each stage (what the warmup leaves behind);
  parameter checksums (DPO starts from the warmup weights, and DPO changes them).
- `dpo_resident`: DPO on the same tokens with a second, resident reference model.
- `dpo_ref_kept`: precomputed log-probs but the reference model handed to TRL anyway (what
  Axolotl does without soda: TRL keeps it resident).
- `lora_chain`: the LoRA chain (r 16 on q/k/v/o/gate/up/down): adapter warmup, soda's merge
  into q_w, a fresh DPO adapter whose reference is the adapter disabled.
- `snapshot`: soda's transformers snapshot backend (TransformersEngine), greedy, tokens/s.
- `axolotl`: the chain through `python -m axolotl.cli.train` with soda's plugin, only where
  Axolotl can be imported (it cannot be brought to the GPU machine: see tools/gpu_wheels.sh).

Every phase runs in its own process (fresh CUDA allocator, its own peak), under its own
timeout and a global budget; a failed phase is recorded as `FAILED: <error>` and the others
still run. The core path needs only TRL + transformers + datasets + peft + soda_plugin:
soda's row parsing and views (rows.py, views.py, chat_format.py), its chain logic (args.py,
stages.py: warmup config, marker, re-run decision), reference.py's rule for dropping the
reference model, merge.py for the LoRA warmup, and the snapshot engine.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # soda_plugin without an install (the GPU machine has none)

# Real students' shapes (their config.json values on the Hub), random-initialised here.
MODELS: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                         rope_theta=1.0e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         max_position_embeddings=32768),
    "qwen2.5-3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                       num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                       rope_theta=1.0e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       max_position_embeddings=32768),
    # --cpu: the tiny test students' scale (tests/tiny_models.py), vocab from the tiny tokenizer.
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, rope_theta=1.0e6, rms_norm_eps=1e-6,
                 tie_word_embeddings=True, max_position_embeddings=512),
}

# ChatML, as Qwen2.5 writes it (the template tests/tiny_models.py sets on its qwen2 tokenizer).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ROLE_WORDS = ["user", "assistant", "system"]
# Qwen2's pre-tokenizer (transformers' Qwen2Tokenizer.PRETOKENIZE_REGEX): letters after one space
# stay one piece, so " abcd" is one byte-level word.
QWEN_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                          r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MARGIN_TOLERANCE = 1e-3

# name, timeout on GPU (s), timeout on CPU (s). Order: the measurements that matter most first.
PHASES: list[tuple[str, int, int]] = [
    ("env", 90, 120),
    ("axolotl", 150, 240),
    ("chain", 170, 240),
    ("dpo_resident", 110, 150),
    ("dpo_ref_kept", 110, 150),
    ("snapshot", 90, 120),
    ("lora_chain", 170, 240),
]
MIN_PHASE_S = 25  # a phase is skipped rather than started with less time than this left

AXOLOTL_NOT_BROUGHT = (
    "axolotl not importable here. It cannot travel to the GPU machine: Axolotl 0.21 imports "
    "bitsandbytes (43.1 MB wheel, axolotl/kernels/lora.py) and wandb (20.3 MB, "
    "axolotl/utils/callbacks/__init__.py) unconditionally, over the 64 MiB that travels with "
    "the trl/transformers/datasets wheels (21.8 MiB); the TRL fallback below drives soda's pieces"
)


# --------------------------------------------------------------------------------------------
# Settings shared by the parent and the phase processes
# --------------------------------------------------------------------------------------------

def make_settings(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cpu = args.cpu
    model = "tiny" if cpu else args.model
    shape = dict(MODELS[model])
    prompt_tokens = args.prompt_tokens or (16 if cpu else 512)
    response_tokens = args.response_tokens or (48 if cpu else 1536)
    steps = 2 if cpu else 4
    return {
        "mode": "cpu" if cpu else "gpu",
        "model": model,
        "shape": shape,
        "device": "cpu" if cpu else "cuda",
        "dtype": "float32" if cpu else "bfloat16",
        "attn_implementation": "sdpa",  # the recipes say flash_attention_2; flash-attn is not on the machine
        "gradient_checkpointing": True,
        "prompt_tokens": prompt_tokens,
        "response_tokens": response_tokens,
        "sft_steps": args.sft_steps or steps,
        "dpo_steps": args.dpo_steps or steps,
        "micro_batch_size": 1,
        # The recipes' rates (5e-6 warmup, 1e-6 DPO) barely move bf16 weights in 4 steps without
        # DeepSpeed's fp32 master copy; memory does not depend on the rate.
        "sft_learning_rate": 1.0e-4 if not cpu else 1.0e-3,
        "dpo_learning_rate": 2.0e-5 if not cpu else 1.0e-3,
        "beta": 0.1,
        "seed": 42,
        "snapshot_prompts": 4 if cpu else 32,
        "snapshot_new_tokens": 16 if cpu else 128,
        "workdir": str(workdir),
    }


def _paths(settings: dict[str, Any]) -> dict[str, Path]:
    w = Path(settings["workdir"])
    return {
        "q0": w / "q0",
        "rows": w / "rows.jsonl",
        "chain": w / "chain",
        "lora": w / "lora",
        "axolotl": w / "axolotl",
        "hf_cache": w / "hf_cache",
    }


# --------------------------------------------------------------------------------------------
# Data and model (built once, in the first phase that needs them)
# --------------------------------------------------------------------------------------------

def _word_tokens(n: int) -> list[str]:
    """`n` lowercase words (1 to 4 letters), shortest first, so each one's prefix is also a word."""
    import itertools
    import string

    words: list[str] = []
    for length in range(1, 5):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            if len(words) == n:
                return words
            words.append("".join(letters))
    raise ValueError(f"cannot make {n} words of up to 4 letters")


def build_tokenizer(vocab_size: int):
    """A Qwen2-style byte-level BPE with exactly `vocab_size` entries and ChatML specials, in
    which every word " abcd" (one space, 1-4 letters) is exactly one token.

    So random text of N words is N tokens through soda's text views and through TRL's own
    tokenization (TRL 1.14.1 DPOTrainer._prepare_dataset tokenizes the text `prompt` and
    `prompt + chosen`, dpo_trainer.py:1022-1070; it takes no token ids), and the ids span the
    model's whole vocabulary (151936 for Qwen2.5). Its normalizer, pre-tokenizer and decoder
    are Qwen2Tokenizer's, so the tokenizer tokenizes alike whether transformers reloads it as
    `TokenizersBackend` or, from a folder whose config.json says qwen2, as `Qwen2Tokenizer`
    (transformers 5.20 does the latter and rebuilds the pipeline from vocab and merges).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    space = "\u0120"  # byte-level form of " "
    merges: list[tuple[str, str]] = []
    n_role_merges = sum(len(w) - 1 for w in ROLE_WORDS)
    n_words = vocab_size - len(alphabet) - len(SPECIAL) - n_role_merges
    words = _word_tokens(n_words)
    for word in words:  # " a" = (Ġ, a); " ab" = (Ġa, b); ...: all ranked before the role merges
        merges.append((space + word[:-1], word[-1]))
    for word in ROLE_WORDS:  # "user", "assistant", "system" without a space (after the template's \n)
        merges += [(word[:i], word[i]) for i in range(1, len(word))]
    vocab: dict[str, int] = {}
    for token in alphabet + [a + b for a, b in merges] + SPECIAL:
        vocab.setdefault(token, len(vocab))
    assert len(vocab) == vocab_size, (len(vocab), vocab_size)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, continuing_subword_prefix="",
                               end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = CHATML_TEMPLATE
    assert len(hf) == vocab_size, (len(hf), vocab_size)
    return hf


def text_words(vocab_size: int) -> list[str]:
    """The one-token words of `build_tokenizer(vocab_size)`."""
    n_words = vocab_size - 256 - len(SPECIAL) - sum(len(w) - 1 for w in ROLE_WORDS)
    return _word_tokens(n_words)


def make_rows(settings: dict[str, Any], n: int, tokenizer) -> list[dict[str, Any]]:
    """`soda` rows (content / teacher_response / student_response) of random one-token words,
    sized so that the templated prompt is `prompt_tokens` and each answer plus its
    end-of-turn token is `response_tokens` long."""
    import random

    from soda_plugin.format.chat_format import render_prompt

    rng = random.Random(settings["seed"])
    words = text_words(settings["shape"]["vocab_size"])

    def text(k: int) -> str:
        return "".join(" " + words[rng.randrange(len(words))] for _ in range(k))

    overhead = len(tokenizer(render_prompt(tokenizer, [{"role": "user", "content": " a"}]),
                             add_special_tokens=False)["input_ids"]) - 1
    prompt_words = settings["prompt_tokens"] - overhead
    answer_words = settings["response_tokens"] - 1  # + <|im_end|>
    def answer(k: int) -> str:
        # soda strips both answers: the first word must be one token without its space
        # (a single letter is one byte-level token), the rest are " word" tokens.
        return rng.choice("abcdefghijklmnopqrstuvwxyz") + text(k - 1)

    return [{"content": [{"role": "user", "content": text(prompt_words)}],
             "teacher_response": answer(answer_words), "student_response": answer(answer_words)}
            for _ in range(n)]


def torch_dtype(settings):
    import torch

    return getattr(torch, settings["dtype"])


def ensure_prepared(settings: dict[str, Any]) -> dict[str, Path]:
    """q0 (random init, saved with its tokenizer) and the rows, built once per workdir."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    paths = _paths(settings)
    Path(settings["workdir"]).mkdir(parents=True, exist_ok=True)
    n_rows = max(settings["sft_steps"], settings["dpo_steps"]) * settings["micro_batch_size"]
    tokenizer = build_tokenizer(settings["shape"]["vocab_size"])
    if not paths["rows"].is_file():
        rows = make_rows(settings, max(n_rows, settings["snapshot_prompts"]), tokenizer)
        tmp = paths["rows"].with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(paths["rows"])
    if not (paths["q0"] / "config.json").is_file():
        shape = dict(settings["shape"])
        rope_theta = shape.pop("rope_theta")
        config = Qwen2Config(
            **shape, rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
            use_cache=False,
        )
        torch.manual_seed(settings["seed"])
        with torch.device(settings["device"]):
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(settings))
        tmp = paths["q0"].with_name("q0.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        gc.collect()
        if settings["device"] == "cuda":
            torch.cuda.empty_cache()
        tmp.replace(paths["q0"])
    return paths


def read_rows(settings: dict[str, Any], n: int) -> list[dict[str, Any]]:
    lines = _paths(settings)["rows"].read_text().splitlines()
    return [json.loads(line) for line in lines[:n]]


# --------------------------------------------------------------------------------------------
# Helpers used inside the phase processes
# --------------------------------------------------------------------------------------------

class Recorder:
    """Phase results, rewritten to disk after every value so a killed phase keeps what it had."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, Any] = {}
        self.status = "running"
        self.error: str | None = None

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.flush()
        print(f"[gpu_check] {key} = {value}", flush=True)

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            self[key] = value

    def flush(self) -> None:
        record = {"status": self.status, "error": self.error, "values": self.values}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str))
        tmp.replace(self.path)


def cuda(settings) -> bool:
    return settings["device"] == "cuda"


def sync(settings) -> None:
    if cuda(settings):
        import torch

        torch.cuda.synchronize()


def allocated(settings) -> int | None:
    if not cuda(settings):
        return None
    import torch

    return int(torch.cuda.memory_allocated())


def reset_peak(settings) -> None:
    if cuda(settings):
        import torch

        sync(settings)
        torch.cuda.reset_peak_memory_stats()


def peak(settings) -> int | None:
    if not cuda(settings):
        return None
    import torch

    sync(settings)
    return int(torch.cuda.max_memory_allocated())


def checksum(model, trainable_only: bool = False) -> str:
    """An exact checksum of the weights: the bit patterns of every parameter, summed as int64
    per tensor (in chunks, so it adds little memory), hashed with the names."""
    import torch

    digest = hashlib.sha256()
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if trainable_only and not param.requires_grad:
                continue
            flat = param.detach().reshape(-1)
            bits = flat.view(ints[flat.element_size()])
            total = 0
            for start in range(0, bits.numel(), 1 << 24):
                total += int(bits[start:start + (1 << 24)].sum(dtype=torch.int64).item())
            digest.update(f"{name}:{total};".encode())
    return digest.hexdigest()[:16]


def load_model(settings, directory: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=torch_dtype(settings), attn_implementation=settings["attn_implementation"])
    model.config.use_cache = False
    return model.to(settings["device"])


def load_tokenizer(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


class LogCapture:
    """A TrainerCallback collecting every `on_log` dict (TRL adds its DPO metrics there)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Capture(TrainerCallback):
            def __init__(self):
                self.logs: list[dict[str, Any]] = []

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs:
                    self.logs.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})

        return _Capture()


def common_training_args(settings, out: Path, stage_cfg: dict[str, Any]) -> dict[str, Any]:
    """TrainingArguments keys shared by the SFT (transformers.Trainer) and DPO (TRL) stages,
    from the stage's Axolotl-style config (as soda derives it)."""
    return dict(
        output_dir=str(out),
        per_device_train_batch_size=int(stage_cfg.get("micro_batch_size") or 1),
        gradient_accumulation_steps=int(stage_cfg.get("gradient_accumulation_steps") or 1),
        max_steps=int(stage_cfg["max_steps"]),
        learning_rate=float(stage_cfg["learning_rate"]),
        lr_scheduler_type=stage_cfg.get("lr_scheduler") or "cosine",
        # transformers 5.20 has no `warmup_ratio`; Axolotl turns the ratio into steps as well.
        warmup_steps=int(float(stage_cfg.get("warmup_ratio") or 0.0) * int(stage_cfg["max_steps"])),
        optim="adamw_torch",
        weight_decay=0.0,
        max_grad_norm=1.0,
        bf16=settings["dtype"] == "bfloat16",
        use_cpu=not cuda(settings),
        gradient_checkpointing=settings["gradient_checkpointing"],
        gradient_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=settings["seed"],
    )


def train_sft(settings, model, tokenizer, rows, warmup_cfg, out: Path) -> dict[str, Any]:
    """The warmup: soda's SFT view of each row (loss on the teacher answer only), trained with
    transformers' Trainer (which Axolotl's SFT trainer subclasses)."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from soda_plugin.format.rows import SodaFields, parse_row
    from soda_plugin.train.views import sft_example

    fields = SodaFields()
    examples = [sft_example(tokenizer, parse_row(r, fields, index=i, need_student=False)) for i, r in enumerate(rows)]
    dataset = Dataset.from_list(examples)
    capture = LogCapture()
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**common_training_args(settings, out, warmup_cfg), remove_unused_columns=False),
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[capture],
    )
    start = time.perf_counter()
    trainer.train()
    sync(settings)
    elapsed = time.perf_counter() - start
    losses = [log["loss"] for log in capture.logs if "loss" in log]
    result = {
        "tokens_per_row": len(examples[0]["input_ids"]),
        "loss_tokens_per_row": sum(1 for x in examples[0]["labels"] if x != -100),
        "losses": losses,
        "train_s": round(elapsed, 2),
    }
    trainer.model = trainer.model_wrapped = None
    del trainer
    return result


def dpo_dataset(tokenizer, rows):
    """soda's DPO view: templated prompt, teacher answer = chosen, q0's answer = rejected."""
    from datasets import Dataset

    from soda_plugin.format.rows import SodaFields, parse_row
    from soda_plugin.train.views import dpo_example

    fields = SodaFields()
    return Dataset.from_list([dpo_example(tokenizer, parse_row(r, fields, index=i, need_student=True))
                              for i, r in enumerate(rows)])


def train_dpo(settings, policy, tokenizer, rows, dpo_cfg, out: Path, *, ref_model=None,
              precompute: bool = True, peft_config=None, rec: Recorder | None = None,
              prefix: str = "dpo") -> dict[str, Any]:
    """DPO with TRL 1.14.1. What soda relies on there:

    - `ref_model=None` with `precompute_ref_log_probs=True` keeps no reference model
      (dpo_trainer.py:912-917: `self.ref_model = None`), and precomputes the reference log-probs
      in `__init__` (dpo_trainer.py:984-991, batch `precompute_ref_batch_size or
      per_device_train_batch_size`) with `model = self.ref_model or self.model`
      (dpo_trainer.py:1169), i.e. the policy before its first update, under `torch.no_grad()`
      and with gradient checkpointing off (dpo_trainer.py:1289-1290). With PEFT and no
      ref_model, the reference is the policy with its adapter disabled (dpo_trainer.py:1282-1286).
    - A `ref_model` passed in is kept resident (dpo_trainer.py:929) even when log-probs are
      precomputed: Axolotl's behaviour without soda.
    - The loss reads the precomputed columns from the batch (dpo_trainer.py:1367), and the
      metric `rewards/margins` is beta * (chosen log-ratio - rejected log-ratio), batch mean
      (dpo_trainer.py:1670-1687), averaged over the steps since the last log (dpo_trainer.py:1793):
      with logging_steps=1 the first log is step 0's forward, before any update.
    - DPOConfig.max_length defaults to 1024 (dpo_config.py:194): set to the pair length here.
    """
    from trl import DPOConfig, DPOTrainer

    dataset = dpo_dataset(tokenizer, rows)
    capture = LogCapture()
    config = DPOConfig(
        **common_training_args(settings, out, dpo_cfg),
        beta=float(settings["beta"]),
        precompute_ref_log_probs=precompute,
        max_length=settings["prompt_tokens"] + settings["response_tokens"] + 16,
    )
    start = time.perf_counter()
    trainer = DPOTrainer(model=policy, ref_model=ref_model, args=config, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=peft_config, callbacks=[capture])
    sync(settings)
    init_s = time.perf_counter() - start
    if rec is not None:
        rec[f"{prefix}_init_s"] = round(init_s, 2)
        rec[f"{prefix}_resident_ref_model"] = trainer.ref_model is not None
    first = trainer.train_dataset[0]
    start = time.perf_counter()
    trainer.train()
    sync(settings)
    elapsed = time.perf_counter() - start
    logs = [log for log in capture.logs if "rewards/margins" in log]
    result = {
        "init_s": round(init_s, 2),
        "train_s": round(elapsed, 2),
        "resident_ref_model": trainer.ref_model is not None,
        "pair_tokens": [len(first["prompt_ids"]), len(first["chosen_ids"]), len(first["rejected_ids"])],
        "margins": [log["rewards/margins"] for log in logs],
        "losses": [log.get("loss") for log in logs],
        "step0": {k: round(v, 6) for k, v in logs[0].items() if k.startswith(("rewards/", "logps/", "loss"))}
        if logs else None,
        "trained_model": trainer.model,
    }
    trainer.model = trainer.model_wrapped = trainer.ref_model = None
    del trainer
    return result


def recipe(settings, base_model: Path, output_dir: Path, **extra) -> dict[str, Any]:
    """An Axolotl-style soda recipe (the shape of recipes/qwen3b_soda.yml, check-sized)."""
    cfg = {
        "base_model": str(base_model),
        "plugins": ["soda_plugin.SODAPlugin"],
        "bf16": settings["dtype"] == "bfloat16",
        "gradient_checkpointing": settings["gradient_checkpointing"],
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "attn_implementation": settings["attn_implementation"],
        "datasets": [{"path": str(_paths(settings)["rows"]), "ds_type": "json", "type": "soda"}],
        "sequence_len": settings["prompt_tokens"] + settings["response_tokens"] + 16,
        "val_set_size": 0,
        "rl": "dpo",
        "trl": {"beta": settings["beta"]},
        "precompute_ref_log_probs": True,
        "learning_rate": settings["dpo_learning_rate"],
        "lr_scheduler": "cosine",
        "optimizer": "adamw_torch",
        "micro_batch_size": settings["micro_batch_size"],
        "gradient_accumulation_steps": 1,
        "max_steps": settings["dpo_steps"],
        "output_dir": str(output_dir),
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": settings["seed"],
        "soda": {"warmup": {"learning_rate": settings["sft_learning_rate"], "max_steps": settings["sft_steps"],
                            "micro_batch_size": settings["micro_batch_size"], "gradient_accumulation_steps": 1}},
    }
    cfg.update(extra)
    return cfg


def chain_configs(raw: dict[str, Any]):
    """soda's own derivation of the warmup stage from the recipe (soda_plugin.train.stages)."""
    from soda_plugin.train.args import SodaConfig
    from soda_plugin.train.stages import derive_warmup_config

    soda = SodaConfig.model_validate(raw["soda"])
    return soda, derive_warmup_config(raw, soda)


# --------------------------------------------------------------------------------------------
# Phases (each runs in its own process: `gpu_check.py --phase NAME --settings FILE`)
# --------------------------------------------------------------------------------------------

def phase_env(settings, rec: Recorder) -> None:
    import importlib
    import platform

    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "datasets", "peft", "accelerate", "tokenizers",
                 "pyarrow", "pydantic", "numpy", "safetensors", "huggingface_hub", "axolotl"):
        try:
            module = importlib.import_module(name)
            versions[name] = getattr(module, "__version__", "?")
            if name in ("trl", "transformers"):
                versions[f"{name}_from"] = str(Path(module.__file__).parent.parent)
        except Exception as error:  # noqa: BLE001 - recorded, not fatal
            versions[name] = f"missing ({type(error).__name__})"
    rec["versions"] = versions
    # dill (datasets' fingerprints) pickles modules outside "site-packages"/sys.prefix by value
    # and then fails deep inside Dataset.from_list; say so plainly instead.
    try:
        import dill._dill as dill_internals
        import datasets
        import pyarrow

        outside = [m.__name__ for m in (datasets, pyarrow) if not dill_internals._is_builtin_module(m)]
        if outside:
            raise RuntimeError(f"{outside} are imported from a folder whose path has no 'site-packages' "
                               f"({Path(datasets.__file__).parent.parent}); dill would pickle them by value and "
                               "datasets fails. Install the wheels with --target .../site-packages.")
    except ImportError:
        pass
    import torch

    if cuda(settings):
        props = torch.cuda.get_device_properties(0)
        rec["gpu"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB, sm_{props.major}{props.minor}"
        rec["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
    else:
        rec["gpu"] = "none (cpu mode)"
    start = time.perf_counter()
    ensure_prepared(settings)
    rec["prepare_s"] = round(time.perf_counter() - start, 2)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(_paths(settings)["q0"]))
    h, i, l, v = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    # Qwen2 with tied embeddings: embeddings + per layer (q,k,v with bias, o, MLP, 2 norms) + final norm
    n_params = v * h + l * (h * h * 2 + 2 * h * kv + h + 2 * kv + 3 * h * i + 2 * h) + h
    rec["model"] = (f"{settings['model']} shape: hidden {h}, intermediate {i}, {l} layers, "
                    f"{config.num_attention_heads} heads, {config.num_key_value_heads} kv heads, vocab {v}, "
                    f"tied {config.tie_word_embeddings}; " + (f"{n_params / 1e9:.3f} B" if n_params > 1e8 else f"{n_params / 1e6:.2f} M")
                    + " params, random init")


def phase_chain(settings, rec: Recorder) -> None:
    import torch

    from soda_plugin.train.reference import should_skip_reference_model
    from soda_plugin.train.stages import decide_warmup, write_marker

    paths = ensure_prepared(settings)
    rows = read_rows(settings, max(settings["sft_steps"], settings["dpo_steps"]) * settings["micro_batch_size"])
    raw = recipe(settings, paths["q0"], paths["chain"])
    soda, warmup_cfg = chain_configs(raw)
    warmup_dir = Path(warmup_cfg["output_dir"])
    decision = decide_warmup(warmup_cfg, str(warmup_dir), soda.warmup.on_config_change)
    rec["warmup_decision"] = decision.reason
    tokenizer = load_tokenizer(paths["q0"])

    # ---- warmup (SFT) ----
    rec["alloc_before_warmup"] = allocated(settings)
    reset_peak(settings)
    model = load_model(settings, paths["q0"])
    rec["checksum_q0"] = checksum(model)
    sft = train_sft(settings, model, tokenizer, rows, warmup_cfg, paths["chain"] / "sft_run")
    rec["sft_peak"] = peak(settings)
    rec.update(sft_losses=sft["losses"], sft_train_s=sft["train_s"], sft_tokens_per_row=sft["tokens_per_row"],
               sft_loss_tokens_per_row=sft["loss_tokens_per_row"])
    rec["checksum_warmup_end"] = checksum(model)
    model.save_pretrained(warmup_dir)
    tokenizer.save_pretrained(warmup_dir)
    write_marker(str(warmup_dir), "warmup", warmup_cfg)
    again = decide_warmup(warmup_cfg, str(warmup_dir), soda.warmup.on_config_change)
    rec["rerun_skips_warmup"] = not again.run
    # As soda_plugin.train.chain.run_warmup: drop the warmup's objects, collect, then start DPO.
    del model
    gc.collect()
    rec["alloc_before_dpo"] = allocated(settings)
    if cuda(settings):
        rec["reserved_before_dpo"] = int(torch.cuda.memory_reserved())

    # ---- DPO from q_w, reference = q_w via precomputed log-probs, no resident reference ----
    reset_peak(settings)
    policy = load_model(settings, warmup_dir)
    rec["checksum_dpo_start"] = checksum(policy)
    skip_ref = should_skip_reference_model(raw)
    rec["soda_skips_reference_model"] = skip_ref
    ref_model = None if skip_ref else load_model(settings, warmup_dir)
    dpo = train_dpo(settings, policy, tokenizer, rows, raw, paths["chain"] / "dpo_run", ref_model=ref_model,
                    precompute=True, rec=rec)
    rec["dpo_soda_peak"] = peak(settings)
    rec.update(dpo_margins=dpo["margins"], dpo_losses=dpo["losses"], dpo_train_s=dpo["train_s"],
               dpo_pair_tokens=dpo["pair_tokens"])
    rec["margin_step0"] = dpo["margins"][0] if dpo["margins"] else None
    rec["dpo_step0"] = dpo["step0"]
    rec["checksum_dpo_end"] = checksum(dpo["trained_model"])
    v = rec.values
    rec["dpo_started_from_warmup"] = v["checksum_dpo_start"] == v["checksum_warmup_end"]
    rec["dpo_changed_weights"] = v["checksum_dpo_end"] != v["checksum_dpo_start"]
    rec["warmup_changed_weights"] = v["checksum_warmup_end"] != v["checksum_q0"]


def _dpo_variant(settings, rec: Recorder, *, precompute: bool) -> None:
    paths = ensure_prepared(settings)
    rows = read_rows(settings, settings["dpo_steps"] * settings["micro_batch_size"])
    warmup_dir = paths["chain"] / "warmup"
    start = warmup_dir if (warmup_dir / "model.safetensors").is_file() or \
        (warmup_dir / "model.safetensors.index.json").is_file() else paths["q0"]
    rec["start_model"] = "q_w (the chain's warmup)" if start == warmup_dir else "q0 (chain's warmup missing)"
    tokenizer = load_tokenizer(paths["q0"])
    raw = recipe(settings, start, paths["chain"], precompute_ref_log_probs=precompute)
    reset_peak(settings)
    policy = load_model(settings, start)
    ref_model = load_model(settings, start).eval()
    for param in ref_model.parameters():
        param.requires_grad_(False)
    name = "resident" if not precompute else "ref_kept"
    dpo = train_dpo(settings, policy, tokenizer, rows, raw, paths["chain"] / f"dpo_{name}_run", ref_model=ref_model,
                    precompute=precompute, rec=rec)
    rec["dpo_peak"] = peak(settings)
    rec.update(dpo_margins=dpo["margins"], dpo_losses=dpo["losses"], dpo_train_s=dpo["train_s"])
    rec["margin_step0"] = dpo["margins"][0] if dpo["margins"] else None


def phase_dpo_resident(settings, rec: Recorder) -> None:
    _dpo_variant(settings, rec, precompute=False)


def phase_dpo_ref_kept(settings, rec: Recorder) -> None:
    _dpo_variant(settings, rec, precompute=True)


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")


def phase_lora_chain(settings, rec: Recorder) -> None:
    from peft import get_peft_model

    from soda_plugin.train.merge import merge_warmup_adapter, merged_dir, uses_adapter
    from soda_plugin.train.stages import write_marker

    paths = ensure_prepared(settings)
    rows = read_rows(settings, max(settings["sft_steps"], settings["dpo_steps"]) * settings["micro_batch_size"])
    raw = recipe(settings, paths["q0"], paths["lora"], adapter="lora", lora_r=16, lora_alpha=32,
                 lora_dropout=0.0, lora_target_modules=list(LORA_TARGETS))
    soda, warmup_cfg = chain_configs(raw)
    warmup_dir = Path(warmup_cfg["output_dir"])
    rec["uses_adapter"] = uses_adapter(warmup_cfg)
    rec["axolotl_lora_kernels"] = "not exercised (TRL fallback: peft's own LoRA layers)"
    tokenizer = load_tokenizer(paths["q0"])

    rec["alloc_before_warmup"] = allocated(settings)
    reset_peak(settings)
    model = get_peft_model(load_model(settings, paths["q0"]), lora_config())
    if settings["gradient_checkpointing"]:
        model.enable_input_require_grads()  # as TRL does for PEFT + checkpointing (dpo_trainer.py)
    sft = train_sft(settings, model, tokenizer, rows, warmup_cfg, paths["lora"] / "sft_run")
    rec["sft_peak"] = peak(settings)
    rec.update(sft_losses=sft["losses"], sft_train_s=sft["train_s"])
    model.save_pretrained(warmup_dir)  # the adapter only
    tokenizer.save_pretrained(warmup_dir)
    del model
    gc.collect()
    start = time.perf_counter()
    merged = merge_warmup_adapter(warmup_cfg, warmup_dir)  # soda's merge: q_w as a full model
    rec["merge_s"] = round(time.perf_counter() - start, 2)
    write_marker(str(warmup_dir), "warmup", warmup_cfg)
    rec["merged_dir_is_soda_default"] = Path(merged) == merged_dir(warmup_dir)

    rec["alloc_before_dpo"] = allocated(settings)
    reset_peak(settings)
    policy = load_model(settings, merged)
    rec["checksum_dpo_start_base"] = checksum(policy)
    dpo = train_dpo(settings, policy, tokenizer, rows, raw, paths["lora"] / "dpo_run", ref_model=None,
                    precompute=True, peft_config=lora_config(), rec=rec)
    rec["dpo_peak"] = peak(settings)
    rec.update(dpo_margins=dpo["margins"], dpo_losses=dpo["losses"], dpo_train_s=dpo["train_s"])
    rec["margin_step0"] = dpo["margins"][0] if dpo["margins"] else None
    trained = dpo["trained_model"]
    import torch

    with torch.no_grad():
        lora_b = [p for n, p in trained.named_parameters() if "lora_B" in n]
        rec["dpo_adapter_trained"] = bool(lora_b) and any(bool(p.abs().sum() > 0) for p in lora_b)
        rec["dpo_trainable_params"] = sum(p.numel() for p in trained.parameters() if p.requires_grad)


def phase_snapshot(settings, rec: Recorder) -> None:
    from soda_plugin.snapshot.engine import SamplingSettings
    from soda_plugin.snapshot.transformers_engine import TransformersEngine

    paths = ensure_prepared(settings)
    warmup_dir = paths["chain"] / "warmup"
    model_dir = warmup_dir if (warmup_dir / "config.json").is_file() else paths["q0"]
    n = settings["snapshot_prompts"]
    prompts = [row["content"] for row in read_rows(settings, n)]
    reset_peak(settings)
    engine = TransformersEngine(str(model_dir), dtype=settings["dtype"], batch_size=n, device=settings["device"])
    engine.generate(prompts[:2], SamplingSettings(temperature=0.0, max_tokens=4))  # warm-up
    sync(settings)
    start = time.perf_counter()
    answers = engine.generate(prompts, SamplingSettings(temperature=0.0, max_tokens=settings["snapshot_new_tokens"]))
    sync(settings)
    elapsed = time.perf_counter() - start
    tokens = sum(a[0].completion_tokens for a in answers)
    rec.update(
        snapshot_prompts=n, snapshot_prompt_tokens=answers[0][0].prompt_tokens,
        snapshot_new_tokens=settings["snapshot_new_tokens"], snapshot_generated=tokens,
        snapshot_s=round(elapsed, 3), snapshot_tokens_per_s=round(tokens / elapsed, 1),
        snapshot_finish=sorted({a[0].finish_reason.value for a in answers}),
        snapshot_engine=engine.info().extra, snapshot_peak=peak(settings),
    )
    engine.close()


_LOG_DICT = re.compile(r"\{'loss': [^{}]*\}")


def phase_axolotl(settings, rec: Recorder) -> None:
    """The chain through Axolotl's CLI with soda's plugin, where Axolotl can be imported."""
    import ast
    import importlib.util

    if importlib.util.find_spec("axolotl") is None:
        rec.status = "skipped"
        rec.error = AXOLOTL_NOT_BROUGHT
        rec.flush()
        return
    import yaml

    paths = ensure_prepared(settings)
    n = max(settings["sft_steps"], settings["dpo_steps"]) * settings["micro_batch_size"]
    data = paths["axolotl"] / "rows.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(r) + "\n" for r in read_rows(settings, n)))
    cfg = recipe(settings, paths["q0"], paths["axolotl"] / "out", dataset_processes=1,
                 datasets=[{"path": str(data), "ds_type": "json", "type": "soda"}])
    if not cuda(settings):
        cfg.update(bf16=False, fp16=False, tf32=False)
    config = paths["axolotl"] / "soda_chain.yml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    stats = paths["axolotl"] / "stats.json"
    env = dict(os.environ, AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
    timeout = float(os.environ.get("SODA_GPU_CHECK_PHASE_TIMEOUT", "150")) - 15
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--axolotl-child", str(config), str(stats)],
                              env=env, capture_output=True, text=True, timeout=max(timeout, 10))
        output, returncode = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"").decode(errors="replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
        output += (error.stderr or b"").decode(errors="replace") if isinstance(error.stderr, bytes) else (error.stderr or "")
        returncode = "timeout"
    rec["axolotl_s"] = round(time.perf_counter() - start, 1)
    (paths["axolotl"] / "axolotl.log").write_text(output)
    print(output[-6000:], flush=True)
    logs = []
    for match in _LOG_DICT.finditer(output):
        raw = ast.literal_eval(match.group(0))
        logs.append({k: float(v) for k, v in raw.items() if _is_number(v)})
    dpo_logs = [log for log in logs if "rewards/margins" in log]
    rec.update(
        axolotl_returncode=returncode,
        axolotl_sft_steps_logged=len(logs) - len(dpo_logs),
        axolotl_dpo_margins=[log["rewards/margins"] for log in dpo_logs],
        axolotl_no_second_model="no second model is loaded" in output,
        axolotl_warmup_marker=(paths["axolotl"] / "out" / "warmup" / "soda_stage.json").is_file(),
    )
    rec["margin_step0"] = dpo_logs[0]["rewards/margins"] if dpo_logs else None
    if stats.is_file():
        rec["process_peak"] = json.loads(stats.read_text()).get("max_memory_allocated")
    if returncode != 0:
        lines = [line for line in output.splitlines() if "Error" in line or "error:" in line]
        raise RuntimeError(f"axolotl train exited {returncode}: {(lines or ['(no error line)'])[-1][:300]}")
    if not dpo_logs:
        raise RuntimeError("axolotl train logged no DPO step")


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def axolotl_child(config: str, stats: str) -> None:
    """`python -m axolotl.cli.train CONFIG`, then the process's peak GPU memory."""
    import atexit
    import runpy

    def dump():
        try:
            import torch

            value = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
        except Exception:  # noqa: BLE001
            value = None
        Path(stats).write_text(json.dumps({"max_memory_allocated": value}))

    atexit.register(dump)
    sys.argv = ["axolotl.cli.train", config]
    runpy.run_module("axolotl.cli.train", run_name="__main__")


PHASE_FUNCS: dict[str, Callable[[dict[str, Any], Recorder], None]] = {
    "env": phase_env,
    "axolotl": phase_axolotl,
    "chain": phase_chain,
    "dpo_resident": phase_dpo_resident,
    "dpo_ref_kept": phase_dpo_ref_kept,
    "lora_chain": phase_lora_chain,
    "snapshot": phase_snapshot,
}


def run_phase_child(name: str, settings_path: str) -> int:
    settings = json.loads(Path(settings_path).read_text())
    rec = Recorder(Path(settings["workdir"]) / f"phase_{name}.json")
    rec.flush()
    try:
        import torch

        torch.manual_seed(settings["seed"])
        if not cuda(settings):
            torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))
        PHASE_FUNCS[name](settings, rec)
        if rec.status == "running":
            rec.status = "ok"
    except BaseException as error:  # noqa: BLE001 - recorded for the table
        traceback.print_exc()
        rec.status = "failed"
        rec.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"[:400]
    rec.flush()
    return 0 if rec.status in ("ok", "skipped") else 1


# --------------------------------------------------------------------------------------------
# Parent: run the phases, build the table
# --------------------------------------------------------------------------------------------

def run_subprocess(cmd: list[str], log: Path, timeout: float, env: dict[str, str]) -> tuple[int | str, float, float]:
    """Run `cmd` in its own process group; return (exit code or 'timeout', wall s, peak RSS MB)."""
    start = time.monotonic()
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # the group this call started
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    return ("timeout" if timed_out else proc.returncode), wall, usage.ru_maxrss / 1024


def preimport() -> None:
    """Import the heavy modules once in the parent (CPU mode) so that forked phases start at once.

    Never touches CUDA: a CUDA context made before fork() is unusable in the child, which is
    why GPU runs start every phase as a fresh process instead."""
    import importlib

    for name in ("torch", "transformers", "datasets", "peft", "trl", "trl.trainer.dpo_trainer",
                 "soda_plugin.train.views", "soda_plugin.train.stages", "soda_plugin.train.merge",
                 "soda_plugin.snapshot.transformers_engine"):
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - the phase that needs it records the failure
            print(f"[gpu_check] preimport {name}: {type(error).__name__}: {error}", flush=True)


def run_forked(name: str, settings_path: Path, log: Path, timeout: float, env: dict[str, str]) -> tuple[int | str, float, float]:
    """Run phase `name` in a fork of this process; same contract as `run_subprocess`."""
    start = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    import warnings

    # Python 3.12 warns on fork() with threads (torch/pyarrow pools made at import). The child
    # only runs one phase and exits; a deadlock there would be ended by the phase timeout.
    warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks.*")
    pid = os.fork()
    if pid == 0:  # the phase process
        code = 1
        try:
            os.setsid()  # its own process group, so a timeout ends what it started too
            fd = os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.environ.clear()
            os.environ.update(env)
            code = run_phase_child(name, str(settings_path))
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)  # the group of the fork made above
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.2)
    code = os.waitstatus_to_exitcode(status)
    return ("timeout" if timed_out else code), time.monotonic() - start, usage.ru_maxrss / 1024


def last_error_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        if re.search(r"(Error|Exception|error:|Killed|Traceback)", line):
            return line.strip()[:300]
    return (lines[-1].strip()[:300] if lines else "(empty log)")


def fmt_gb(value) -> str:
    return f"{value / 1e9:.2f} GB" if isinstance(value, (int, float)) else "n/a (cpu)"


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def build_rows(settings, phases: dict[str, dict[str, Any]]) -> tuple[list[list[str]], list[str]]:
    """Table rows: [phase, measurement, value, x SFT, status]."""
    gpu = settings["mode"] == "gpu"
    rows: list[list[str]] = []
    notes: list[str] = []

    def v(phase, key):
        return (phases.get(phase) or {}).get("values", {}).get(key)

    def status(phase, have_value=True):
        p = phases.get(phase) or {}
        s = p.get("status", "missing")
        if s == "ok":
            return "ok"
        if s == "skipped":
            return f"SKIPPED: {p.get('error')}"
        if s in ("failed", "timeout", "missing", "running"):
            if have_value and s != "missing":
                return f"ok (phase later FAILED: {p.get('error')})"
            return f"FAILED: {p.get('error') or s}"
        return s

    sft_peak = v("chain", "sft_peak")

    def ratio(value):
        if isinstance(value, (int, float)) and isinstance(sft_peak, (int, float)) and sft_peak:
            return f"{value / sft_peak:.3f}"
        return "n/a (cpu)" if not gpu else "-"

    def add(phase, label, key=None, *, value=None, kind="text", check=None):
        val = v(phase, key) if key else value
        have = val is not None
        if kind == "gb":
            shown, rel = (fmt_gb(val) if (have or not gpu) else "-"), ratio(val)
            have = have or not gpu
        elif kind == "alloc":
            shown, rel = (fmt_gb(val) if (have or not gpu) else "-"), ""
            have = have or not gpu
        else:
            shown, rel = fmt(val), ""
        st = status(phase, have)
        if check is not None and have and st.startswith("ok"):
            ok, what = check(val)
            st = ("PASS: " if ok else "CHECK FAILED: ") + what
        rows.append([phase, label, shown, rel, st])

    env = (phases.get("env") or {}).get("values", {})
    versions = env.get("versions") or {}
    ver = ", ".join(f"{k} {versions.get(k, '?')}" for k in
                    ("python", "torch", "transformers", "trl", "datasets", "peft", "accelerate"))
    ax_ok = (phases.get("axolotl") or {}).get("status") == "ok"
    path = "axolotl CLI + trl-fallback (core measurements)" if ax_ok else "trl-fallback"
    add("env", "versions", value=ver)
    add("env", "device", value=env.get("gpu"))
    add("env", "path that ran", value=path)
    add("env", "model", value=env.get("model"))
    add("env", "setup", value=(f"{settings['dtype']}, gradient checkpointing, {settings['attn_implementation']} attention, "
                               f"pairs {settings['prompt_tokens']} prompt + {settings['response_tokens']} response tokens, "
                               f"micro batch {settings['micro_batch_size']}, {settings['sft_steps']} SFT + "
                               f"{settings['dpo_steps']} DPO steps, AdamW, lr {settings['sft_learning_rate']:g} / "
                               f"{settings['dpo_learning_rate']:g}, beta {settings['beta']}"))

    add("axolotl", "axolotl train (soda plugin, chain), wall s", "axolotl_s", kind="text")
    if phases.get("axolotl", {}).get("status") != "skipped":
        add("axolotl", "axolotl: rewards/margins at DPO step 0", "margin_step0",
            check=lambda m: (abs(m) < MARGIN_TOLERANCE, f"|m| < {MARGIN_TOLERANCE:g}"))
        add("axolotl", "axolotl: no second model loaded (soda log line)", "axolotl_no_second_model")
        add("axolotl", "axolotl: process peak (max of warmup, DPO)", "process_peak", kind="gb")

    add("chain", "memory_allocated before warmup", "alloc_before_warmup", kind="alloc")
    add("chain", "SFT warmup peak (max_memory_allocated)", "sft_peak", kind="gb")
    add("chain", "memory_allocated before DPO (left by the warmup)", "alloc_before_dpo", kind="alloc")
    add("chain", "DPO, soda: precomputed ref log-probs, no resident reference, peak", "dpo_soda_peak", kind="gb")
    add("dpo_resident", "DPO, resident reference model, peak", "dpo_peak", kind="gb")
    add("dpo_ref_kept", "DPO, precomputed but reference kept (Axolotl without soda), peak", "dpo_peak", kind="gb")
    add("chain", "rewards/margins at DPO step 0", "margin_step0",
        check=lambda m: (abs(m) < MARGIN_TOLERANCE, f"|m| < {MARGIN_TOLERANCE:g}"))
    add("chain", "DPO loss at step 0 (ln 2 = 0.6931)", value=(v("chain", "dpo_losses") or [None])[0])
    step0 = v("chain", "dpo_step0") or {}
    add("chain", "rewards/chosen, rewards/rejected at DPO step 0", value=(
        None if not step0 else f"{fmt(step0.get('rewards/chosen'))}, {fmt(step0.get('rewards/rejected'))}"))
    add("chain", "rewards/margins per DPO step", "dpo_margins")
    add("chain", "SFT losses per step", "sft_losses")
    add("chain", "warmup changed q0 / DPO started from q_w / DPO changed q_w",
        value=(None if v("chain", "dpo_changed_weights") is None else
               f"{fmt(v('chain', 'warmup_changed_weights'))} / {fmt(v('chain', 'dpo_started_from_warmup'))} / "
               f"{fmt(v('chain', 'dpo_changed_weights'))}"))
    add("chain", "soda drops the reference model / TRL holds one", value=(
        None if v("chain", "dpo_resident_ref_model") is None else
        f"{fmt(v('chain', 'soda_skips_reference_model'))} / {fmt(v('chain', 'dpo_resident_ref_model'))}"))
    add("chain", "re-run skips the finished warmup (soda marker)", "rerun_skips_warmup")
    add("chain", "tokens: SFT row / DPO prompt, chosen, rejected", value=(
        None if v("chain", "dpo_pair_tokens") is None else
        f"{v('chain', 'sft_tokens_per_row')} ({v('chain', 'sft_loss_tokens_per_row')} in the loss) / "
        f"{fmt(v('chain', 'dpo_pair_tokens'))}"))
    add("chain", "time: SFT train / DPO init (precompute) / DPO train (s)", value=(
        None if v("chain", "dpo_train_s") is None else
        f"{v('chain', 'sft_train_s')} / {v('chain', 'dpo_init_s')} / {v('chain', 'dpo_train_s')}"))
    add("dpo_resident", "resident reference: rewards/margins at step 0", "margin_step0",
        check=lambda m: (abs(m) < MARGIN_TOLERANCE, f"|m| < {MARGIN_TOLERANCE:g}"))

    add("lora_chain", "LoRA r16 (7 modules) SFT warmup peak", "sft_peak", kind="gb")
    add("lora_chain", "LoRA: memory_allocated before DPO", "alloc_before_dpo", kind="alloc")
    add("lora_chain", "LoRA DPO (fresh adapter on merged q_w, ref = adapter off) peak", "dpo_peak", kind="gb")
    add("lora_chain", "LoRA: rewards/margins at DPO step 0", "margin_step0",
        check=lambda m: (abs(m) < MARGIN_TOLERANCE, f"|m| < {MARGIN_TOLERANCE:g}"))
    add("lora_chain", "LoRA: soda merge (s) / DPO adapter trained", value=(
        None if v("lora_chain", "dpo_adapter_trained") is None else
        f"{v('lora_chain', 'merge_s')} / {fmt(v('lora_chain', 'dpo_adapter_trained'))}"))
    add("lora_chain", "Axolotl LoRA kernels", "axolotl_lora_kernels")

    add("snapshot", "snapshot (TransformersEngine, greedy) tokens/s", "snapshot_tokens_per_s")
    add("snapshot", "snapshot: prompts x new tokens, prompt tokens, wall s", value=(
        None if v("snapshot", "snapshot_s") is None else
        f"{v('snapshot', 'snapshot_prompts')} x {v('snapshot', 'snapshot_new_tokens')}, "
        f"{v('snapshot', 'snapshot_prompt_tokens')}, {v('snapshot', 'snapshot_s')} s "
        f"({v('snapshot', 'snapshot_generated')} tokens, {fmt(v('snapshot', 'snapshot_finish'))})"))
    add("snapshot", "snapshot peak", "snapshot_peak", kind="gb")

    for name, _, _ in PHASES:
        p = phases.get(name) or {}
        rows.append([name, "phase wall s / process peak RSS",
                     f"{p.get('wall_s', '-')} s / {p.get('rss_mb', 0) / 1024:.1f} GB" if p.get("wall_s") else "-",
                     "", status(name, bool(p.get("wall_s")))])

    if not ax_ok:
        skipped = (phases.get("axolotl") or {}).get("status") == "skipped"
        why = (phases.get("axolotl") or {}).get("error")
        notes.append("Path: trl-fallback. " + (f"Axolotl skipped: {why}" if skipped else
                     f"The Axolotl attempt failed ({why})")
                     + ". The core measurements drive soda's own pieces (rows/views/chat_format, args/stages, "
                       "reference, merge, snapshot engine) with transformers' Trainer and TRL's DPOTrainer directly.")
    else:
        notes.append("Path: axolotl CLI ran the chain (row `axolotl`); the memory split, LoRA and snapshot rows "
                     "come from the TRL fallback, which measures each stage in its own process.")
    notes.append("Memory rows are torch.cuda.max_memory_allocated (reset before each stage, weights included) or "
                 "memory_allocated; 'x SFT' divides by the chain's SFT warmup peak. One GPU, no DeepSpeed: pure "
                 "bf16 weights and AdamW states, so absolute numbers are below the 8-GPU ZeRO-2 recipes' fp32 "
                 "master copies; the ratios are the point." if gpu else
                 "CPU mode: GPU memory columns are n/a; each phase's process peak RSS is in the last rows.")
    notes.append(f"Margin checks: |rewards/margins| < {MARGIN_TOLERANCE:g} at DPO step 0 (policy == reference). "
                 "TRL precomputes the reference log-probs in DPOTrainer.__init__, before accelerate wraps the "
                 "model, so without autocast; training sees accelerate's fp32-converted logits. On CUDA TRL's "
                 "Triton kernel computes fp32 log-probs in both passes; on CPU in bf16 (not this check's CPU "
                 "mode, which is fp32) the unfused path sums bf16 log-probs there and step 0 showed a margin "
                 "of about -0.17, so a non-zero margin on GPU points at the forward, not at soda's chain.")
    return rows, notes


def render_markdown(title: str, rows: list[list[str]], notes: list[str]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"## {title}", "", "| phase | measurement | value | x SFT | status |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    out_dir = Path(args.out or os.environ.get("OUT") or (REPO / "outputs" / "gpu_check")).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="soda_gpu_check_"))
    workdir.mkdir(parents=True, exist_ok=True)
    settings = make_settings(args, workdir)
    settings_path = workdir / "settings.json"
    settings_path.write_text(json.dumps(settings, indent=1))
    budget = args.budget_s or (900 if args.cpu else 450)
    wanted = args.phases.split(",") if args.phases else [name for name, _, _ in PHASES]
    if args.no_axolotl and "axolotl" in wanted:
        wanted.remove("axolotl")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false",
               TQDM_DISABLE="1", PYTHONUNBUFFERED="1", HF_DATASETS_CACHE=str(_paths(settings)["hf_cache"]),
               HF_HOME=str(workdir / "hf_home"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    print(f"[gpu_check] mode {settings['mode']}, model {settings['model']}, workdir {workdir}, out {out_dir}, "
          f"budget {budget} s", flush=True)
    launcher = args.launcher or ("fork" if args.cpu else "spawn")
    if launcher == "fork":
        start = time.monotonic()
        os.environ.update(env)
        preimport()
        print(f"[gpu_check] launcher fork: heavy modules imported once in {time.monotonic() - start:.1f} s", flush=True)
    phases: dict[str, dict[str, Any]] = {}
    log_text: list[str] = []
    for name, gpu_timeout, cpu_timeout in PHASES:
        if name not in wanted:
            phases[name] = {"status": "skipped", "error": "not requested (--phases / --no-axolotl)"}
            continue
        left = budget - (time.monotonic() - t0) - 5
        timeout = min(cpu_timeout if args.cpu else gpu_timeout, left)
        if timeout < MIN_PHASE_S:
            phases[name] = {"status": "skipped", "error": f"out of time budget ({left:.0f} s left of {budget} s)"}
            print(f"[gpu_check] {name}: SKIPPED (time budget)", flush=True)
            continue
        log = workdir / f"phase_{name}.log"
        result_path = workdir / f"phase_{name}.json"
        result_path.unlink(missing_ok=True)
        phase_env = dict(env, SODA_GPU_CHECK_PHASE_TIMEOUT=str(int(timeout)))
        print(f"[gpu_check] {name}: starting (timeout {timeout:.0f} s)", flush=True)
        if launcher == "fork":
            code, wall, rss = run_forked(name, settings_path, log, timeout, phase_env)
        else:
            code, wall, rss = run_subprocess(
                [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--settings", str(settings_path)],
                log, timeout, phase_env)
        try:
            record = json.loads(result_path.read_text())
        except (OSError, ValueError):
            record = {"status": "failed", "error": None, "values": {}}
        if code == "timeout":
            record["status"], record["error"] = "failed", f"timeout after {wall:.0f} s (limit {timeout:.0f} s)"
        elif code != 0 and record.get("status") in ("ok", "running", None):
            record["status"], record["error"] = "failed", f"exit {code}: {last_error_line(log)}"
        elif record.get("status") == "running":
            record["status"], record["error"] = "failed", f"exit {code} before the phase finished"
        if record.get("status") == "failed" and not record.get("error"):
            record["error"] = last_error_line(log)
        record.update(wall_s=round(wall, 1), rss_mb=round(rss, 1), exit=code)
        phases[name] = record
        text = log.read_text(errors="replace") if log.is_file() else ""
        log_text.append(f"===== phase {name}: {record['status']} ({wall:.1f} s) =====\n" + text[-150_000:])
        shown = record["status"].upper() + (f": {record['error']}" if record.get("error") else "")
        print(f"[gpu_check] {name}: {shown} ({wall:.1f} s)", flush=True)

    total = time.monotonic() - t0
    title = (f"soda GPU check ({settings['mode']}, {settings['model']}), {time.strftime('%Y-%m-%d %H:%M:%S')}, "
             f"total {total:.0f} s")
    rows, notes = build_rows(settings, phases)
    markdown = render_markdown(title, rows, notes)
    report = {"title": title, "total_wall_s": round(total, 1), "settings": settings, "phases": phases,
              "launcher": launcher,
              "path": "axolotl" if (phases.get("axolotl") or {}).get("status") == "ok" else "trl-fallback",
              "rows": rows, "notes": notes}
    (out_dir / "gpu_check.md").write_text(markdown)
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "gpu_check.log").write_text("\n".join(log_text)[-4_000_000:])
    print("\n" + markdown, flush=True)
    print(f"[gpu_check] wrote {out_dir / 'gpu_check.md'}, gpu_check.json, gpu_check.log", flush=True)
    if not args.keep_workdir and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [n for n, p in phases.items() if p.get("status") == "failed"]
    return 1 if failed else 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny model, float32, on CPU (the CI-sized run)")
    parser.add_argument("--out", help="folder for gpu_check.md/.json/.log (default: $OUT, else outputs/gpu_check)")
    parser.add_argument("--model", choices=["qwen2.5-1.5b", "qwen2.5-3b"], default="qwen2.5-1.5b")
    parser.add_argument("--prompt-tokens", type=int, default=None)
    parser.add_argument("--response-tokens", type=int, default=None)
    parser.add_argument("--sft-steps", type=int, default=None)
    parser.add_argument("--dpo-steps", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=None, help="whole-run budget (default 450 GPU, 900 CPU)")
    parser.add_argument("--phases", help=f"comma-separated subset of {','.join(n for n, _, _ in PHASES)}")
    parser.add_argument("--no-axolotl", action="store_true", help="skip the Axolotl attempt")
    parser.add_argument("--workdir", help="where models and logs go (default: a temp folder, removed after)")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--launcher", choices=["spawn", "fork"], default=None,
                        help="how phases start: a fresh process each (default on GPU) or a fork of this "
                             "process after importing torch/transformers/trl once (default with --cpu)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--axolotl-child", nargs=2, help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    arguments = make_parser().parse_args()
    if arguments.axolotl_child:
        axolotl_child(*arguments.axolotl_child)
    elif arguments.phase:
        sys.exit(run_phase_child(arguments.phase, arguments.settings))
    else:
        sys.exit(main(arguments))
