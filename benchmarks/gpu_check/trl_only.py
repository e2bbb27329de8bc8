"""TRL-only helpers: DPO with TRL's `DPOTrainer` driven directly, not through `axolotl train`.

Used only where the real path cannot measure something: a DPO stage that keeps a resident
reference model (what soda avoids), and TRL's own reference precompute (what soda's pass
replaces). The table labels their rows "TRL only, not soda's path".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .runner import Recorder
from .settings import cuda, torch_dtype


def sync(settings) -> None:
    if cuda(settings):
        import torch

        torch.cuda.synchronize()


def peak_and_reset(settings) -> int | None:
    """The CUDA peak since the last reset (None on CPU), then reset."""
    if not cuda(settings):
        return None
    import torch

    sync(settings)
    value = int(torch.cuda.max_memory_allocated())
    torch.cuda.reset_peak_memory_stats()
    return value


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


def dpo_dataset(tokenizer, rows):
    """soda's DPO view (`soda_plugin.train.views.dpo_example`): templated prompt, teacher answer = chosen, q0's answer = rejected."""
    from datasets import Dataset

    from soda_plugin.format.rows import SodaFields, parse_row
    from soda_plugin.train.views import dpo_example

    fields = SodaFields()
    return Dataset.from_list([dpo_example(tokenizer, parse_row(r, fields, index=i, need_student=True))
                              for i, r in enumerate(rows)])


def train_dpo(settings, policy, tokenizer, rows, dpo_cfg, out: Path, *, ref_model=None,
              precompute: bool = True, rec: Recorder | None = None,
              prefix: str = "dpo") -> dict[str, Any]:
    """DPO with TRL's `DPOTrainer` alone (TRL 1.14.1). A `ref_model` passed in stays resident
    (`DPOTrainer.__init__` keeps `self.ref_model`) even when `precompute_ref_log_probs` is on:
    Axolotl's behaviour without soda. `DPOConfig.max_length` defaults to 1024: set to the pair here.
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
                         processing_class=tokenizer, callbacks=[capture])
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


