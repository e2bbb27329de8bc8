"""The check's phases. Each runs in its own process (`runner.run_phase_child`) and records values.

soda's real path (`chain`, `rerun`, `lora_chain`): `axolotl train` on a soda recipe (SFT warmup,
`release_stage`, DPO from q_w with soda's reference pass and TRL's chunked log-probs), with the
check's `probe_plugin` writing what the table needs to files. `reference`: soda's pass against
TRL's precompute on one TRL trainer. `snapshot`: soda's transformers snapshot engine. TRL only,
not soda's path (`trl_only`): `dpo_resident`, `dpo_ref_kept`, the memory soda avoids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .checksums import folder_checksums, same_weights
from .runner import Recorder
from .settings import LORA_TARGETS, cuda, paths
from .shapes import ensure_prepared, read_rows
from .trl_only import load_model, load_tokenizer, peak_and_reset, sync, train_dpo

REPO = Path(__file__).resolve().parents[2]
PROBE_PLUGIN = "benchmarks.gpu_check.probe_plugin.ProbePlugin"


# --------------------------------------------------------------------------------------------
# soda's real path: `axolotl train`
# --------------------------------------------------------------------------------------------

def recipe(settings, base_model: Path, output_dir: Path, **extra) -> dict[str, Any]:
    """A soda recipe shaped like recipes/qwen3b_soda.yml, check-sized (one GPU, no DeepSpeed)."""
    gpu = cuda(settings)
    cfg = {
        "base_model": str(base_model),
        "plugins": ["soda_plugin.SODAPlugin", PROBE_PLUGIN],
        "bf16": gpu, "fp16": False, "tf32": gpu,
        "gradient_checkpointing": settings["gradient_checkpointing"],
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "attn_implementation": settings["attn_implementation"],
        "datasets": [{"path": str(paths(settings)["rows"]), "ds_type": "json", "type": "soda"}],
        "sequence_len": settings["prompt_tokens"] + settings["response_tokens"] + 16,
        "val_set_size": 0,
        "dataset_num_proc": 1,
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
        "soda": {
            "precompute_ref_batch_size": settings["precompute_ref_batch_size"],
            "warmup": {"learning_rate": settings["sft_learning_rate"], "max_steps": settings["sft_steps"],
                       "micro_batch_size": settings["micro_batch_size"], "gradient_accumulation_steps": 1},
        },
    }
    cfg.update(extra)
    return cfg


def axolotl_command(settings) -> list[str]:
    # --cpu: no venv site-packages (-S); PYTHONPATH gives the stand-ins and the GPU machine's view.
    return [sys.executable, *(["-S"] if settings["gpu_view"] else []), "-m", "axolotl.cli.train"]


def axolotl_env(settings, probe: Path) -> dict[str, str]:
    folders = [settings["site"], settings["gpu_view"], str(REPO), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(f for f in folders if f),
                SODA_GPU_CHECK_PROBE=str(probe), AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled")


def run_axolotl(settings, cfg: dict[str, Any], run_dir: Path, name: str) -> tuple[int | str, Path]:
    """`axolotl train` on `cfg` in a subprocess, under this phase's time left; (exit code or
    'timeout', probe folder). Its output goes to `<run_dir>/<name>.log`."""
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / f"{name}.yml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    probe = run_dir / f"probe_{name}"
    timeout = max(float(os.environ.get("SODA_GPU_CHECK_PHASE_TIMEOUT", "150")) - 10, 10)
    command, env = [*axolotl_command(settings), str(config)], axolotl_env(settings, probe)
    with (run_dir / f"{name}.log").open("w") as log:
        log.write(f"[gpu_check] PYTHONPATH={env['PYTHONPATH']} {' '.join(command)}\n")
        log.flush()
        try:
            proc = subprocess.run(command, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout, cwd=run_dir)
            code: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    print((run_dir / f"{name}.log").read_text(errors="replace")[-4000:], flush=True)
    return code, probe


def read_events(probe: Path) -> list[dict[str, Any]]:
    file = probe / "events.jsonl"
    return [json.loads(line) for line in file.read_text().splitlines()] if file.is_file() else []


def _first(events, kind: str, stage: str) -> dict[str, Any]:
    return next((e for e in events if e["event"] == kind and e["stage"] == stage), {})


def summarize_run(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The table's values of one `axolotl train` run, from its probe's events."""
    def peak(stage):
        values = [_first(events, "train_begin", stage).get("peak_before_training"),
                  _first(events, "train_end", stage).get("peak_training")]
        values = [v for v in values if v is not None]
        return max(values) if values else None

    def logs(stage, key):
        return [e["logs"][key] for e in events if e["event"] == "log" and e["stage"] == stage and key in e["logs"]]

    dpo_begin = _first(events, "train_begin", "dpo")
    margins = logs("dpo", "rewards/margins")
    return {
        "stages_trained": [e["stage"] for e in events if e["event"] == "train_begin"],
        "alloc_before_warmup": _first(events, "model_load", "warmup").get("allocated_before"),
        "sft_peak": peak("warmup"),
        "sft_losses": logs("warmup", "loss"),
        "alloc_before_dpo": _first(events, "model_load", "dpo").get("allocated_before"),
        "dpo_pass_peak": dpo_begin.get("peak_before_training"),
        "dpo_train_peak": _first(events, "train_end", "dpo").get("peak_training"),
        "dpo_pass_forwards": dpo_begin.get("forwards_before_training"),
        "dpo_ref_model_resident": dpo_begin.get("ref_model_resident"),
        "dpo_chunked_logps": dpo_begin.get("chunked_logps"),
        "dpo_margins": margins,
        "dpo_losses": logs("dpo", "loss"),
        "margin_step0": margins[0] if margins else None,
    }


def standins_used(probe: Path) -> list[str]:
    used = set()
    for file in probe.glob("modules.*.json"):
        used |= {name for name, entry in json.loads(file.read_text()).items() if entry["standin"]}
    return sorted(used)


def weights_evidence(start: Path, warmup: Path, dpo_out: Path, probe: Path) -> dict[str, Any]:
    """From the saved folders and the probe's checksums of the model at DPO's first step."""
    q0, q_w, final = folder_checksums(start), folder_checksums(warmup), folder_checksums(dpo_out)
    dpo_start = json.loads((probe / "dpo_start_checksums.json").read_text())
    warmup_start_file = probe / "warmup_start_checksums.json"
    warmup_start = json.loads(warmup_start_file.read_text()) if warmup_start_file.is_file() else None
    return {
        "warmup_started_from_q0": None if warmup_start is None else same_weights(warmup_start, q0),
        "warmup_changed_q0": q_w != q0,
        "dpo_started_from_warmup": same_weights(dpo_start, q_w),
        "dpo_changed_q_w": final != q_w,
    }


def _run_chain(settings, rec: Recorder, out: Path, name: str, **extra) -> dict[str, Any]:
    p = ensure_prepared(settings)
    start = time.perf_counter()
    code, probe = run_axolotl(settings, recipe(settings, p["q0"], out, **extra), out, name)
    rec["axolotl_s"] = round(time.perf_counter() - start, 1)
    rec["probe"] = str(probe)
    rec["output_dir"] = str(out)
    rec.update(**summarize_run(read_events(probe)), standins_used=standins_used(probe))
    cost = out / "warmup" / "reference_logps" / "cost.json"
    if cost.is_file():
        rec["reference_pass_s"] = json.loads(cost.read_text()).get("wall_seconds")
    if code != 0:
        raise RuntimeError(f"axolotl train exited {code}; see {out / (name + '.log')}")
    return {"probe": probe, "q0": p["q0"]}


def phase_chain(settings, rec: Recorder) -> None:
    out = paths(settings)["chain"]
    run = _run_chain(settings, rec, out, "chain")
    rec.update(**weights_evidence(run["q0"], out / "warmup", out, run["probe"]))


def phase_rerun(settings, rec: Recorder) -> None:
    """The same recipe again: the warmup is reused (marker), the reference log-probs come from
    the store (0 forwards), and DPO step 0's margin is still 0 on the stored values."""
    out = paths(settings)["chain"]
    if not (out / "warmup" / "soda_stage.json").is_file():
        raise RuntimeError("the `chain` phase left no finished warmup to re-run on")
    _run_chain(settings, rec, out, "rerun")


def phase_lora_chain(settings, rec: Recorder) -> None:
    out = paths(settings)["lora"]
    _run_chain(settings, rec, out, "lora", adapter="lora", lora_r=16, lora_alpha=32, lora_dropout=0.0,
               lora_target_modules=list(LORA_TARGETS))
    rec["dpo_merged_student"] = (out / "merged" / "config.json").is_file()
    rec["warmup_merged_q_w"] = (out / "warmup" / "merged" / "config.json").is_file()


# --------------------------------------------------------------------------------------------
# soda's reference pass against TRL's precompute (issue 31, item 4)
# --------------------------------------------------------------------------------------------

class _ForwardCount:
    def __init__(self, model):
        self.count = 0
        model.get_decoder().register_forward_hook(lambda *a: setattr(self, "count", self.count + 1))


def phase_reference(settings, rec: Recorder) -> None:
    """One TRL `DPOTrainer` on q_w, built with the DPO arguments soda gives its stage (chunked
    log-probs), then: TRL's `_precompute_ref_logps` at the recipes' micro batch and at soda's
    batch (TRL only), soda's `attach_reference_logps` into an empty store at
    `precompute_ref_batch_size`, and again over the full store (a second DPO run)."""
    import uuid

    import torch
    import trl.trainer.dpo_trainer as dpo
    from trl import DPOConfig, DPOTrainer

    from soda_plugin.train.args import ReferenceLogps
    from soda_plugin.train.memory import chunked_logps_training_args
    from soda_plugin.train.reference_pass import PassPlan, attach_reference_logps

    from .trl_only import common_training_args, dpo_dataset

    p = ensure_prepared(settings)
    warmup = p["chain"] / "warmup"
    start = warmup if (warmup / "config.json").is_file() else p["q0"]
    rec["start_model"] = "q_w (the chain's warmup)" if start == warmup else "q0 (the chain's warmup is missing)"
    out = p["reference"]
    cfg = recipe(settings, start, out)
    rows = read_rows(settings, settings["reference_pairs"])
    tokenizer = load_tokenizer(p["q0"])
    chunked = chunked_logps_training_args(cfg, True)
    rec["chunked_logps"] = bool(chunked.get("use_liger_kernel"))
    config = DPOConfig(**common_training_args(settings, out, cfg), **chunked, beta=float(settings["beta"]),
                       precompute_ref_log_probs=False,
                       max_length=settings["prompt_tokens"] + settings["response_tokens"] + 16)
    trainer = DPOTrainer(model=load_model(settings, start), args=config, train_dataset=dpo_dataset(tokenizer, rows),
                         processing_class=tokenizer)
    trainer.ref_model = None  # the policy at step 0 is the reference, as in a soda DPO stage
    dataset = trainer.train_dataset
    forwards = _ForwardCount(trainer.model)
    trl_precompute = getattr(dpo.DPOTrainer._precompute_ref_logps, "__wrapped__", dpo.DPOTrainer._precompute_ref_logps)
    micro, batch = settings["micro_batch_size"], settings["precompute_ref_batch_size"]
    plan = PassPlan(store_dir=out / "store", mode=ReferenceLogps.REUSE, reference=str(start))

    def trl_at(size):
        dataset._fingerprint = f"gpu-check-{uuid.uuid4().hex}"  # TRL's cache file must miss
        return trl_precompute(trainer, dataset, "train", size)

    warm = PassPlan(store_dir=out / "warm_store", mode=ReferenceLogps.REUSE, reference=str(start))
    attach_reference_logps(trainer, dataset.select(range(min(2, len(dataset)))), "warm", batch, warm)  # kernels, allocator
    runs = {"trl_micro": lambda: trl_at(micro), "trl_batch": lambda: trl_at(batch),
            "soda_cold": lambda: attach_reference_logps(trainer, dataset, "train", batch, plan),
            "soda_reuse": lambda: attach_reference_logps(trainer, dataset, "train", batch, plan)}
    results = {}
    for name, run in runs.items():
        before = forwards.count
        peak_and_reset(settings)
        sync(settings)
        began = time.perf_counter()
        results[name] = run()
        sync(settings)
        rec[f"{name}_s"] = round(time.perf_counter() - began, 3)
        rec[f"{name}_forwards"] = forwards.count - before
        rec[f"{name}_peak"] = peak_and_reset(settings)
    reference = torch.tensor(results["trl_micro"]["ref_chosen_logps"])
    rec["pairs"] = len(dataset)
    rec["max_abs_diff_vs_trl"] = max(
        float((torch.tensor(results[n]["ref_chosen_logps"]) - reference).abs().max()) for n in runs if n != "trl_micro")
    rec["speedup"] = round(rec.values["trl_micro_s"] / rec.values["soda_cold_s"], 2) if rec.values["soda_cold_s"] else None


# --------------------------------------------------------------------------------------------
# TRL only, not soda's path: what a resident reference model costs
# --------------------------------------------------------------------------------------------

def _dpo_variant(settings, rec: Recorder, *, precompute: bool) -> None:
    p = ensure_prepared(settings)
    rows = read_rows(settings, settings["dpo_steps"] * settings["micro_batch_size"])
    warmup = p["chain"] / "warmup"
    start = warmup if (warmup / "config.json").is_file() else p["q0"]
    rec["start_model"] = "q_w (the chain's warmup)" if start == warmup else "q0 (the chain's warmup is missing)"
    tokenizer = load_tokenizer(p["q0"])
    cfg = recipe(settings, start, p["chain"], precompute_ref_log_probs=precompute)
    peak_and_reset(settings)
    policy = load_model(settings, start)
    ref_model = load_model(settings, start).eval()
    for param in ref_model.parameters():
        param.requires_grad_(False)
    name = "resident" if not precompute else "ref_kept"
    dpo = train_dpo(settings, policy, tokenizer, rows, cfg, p["chain"] / f"trl_dpo_{name}", ref_model=ref_model,
                    precompute=precompute, rec=rec)
    rec["dpo_peak"] = peak_and_reset(settings)
    rec.update(dpo_margins=dpo["margins"], dpo_losses=dpo["losses"], dpo_train_s=dpo["train_s"])
    rec["margin_step0"] = dpo["margins"][0] if dpo["margins"] else None


def phase_dpo_resident(settings, rec: Recorder) -> None:
    _dpo_variant(settings, rec, precompute=False)


def phase_dpo_ref_kept(settings, rec: Recorder) -> None:
    _dpo_variant(settings, rec, precompute=True)


# --------------------------------------------------------------------------------------------
# Environment and the snapshot engine
# --------------------------------------------------------------------------------------------

def phase_env(settings, rec: Recorder) -> None:
    import importlib
    import platform

    import importlib.metadata

    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "datasets", "peft", "accelerate", "tokenizers", "pyarrow",
                 "pydantic", "numpy", "liger_kernel", "axolotl"):
        try:
            module = importlib.import_module(name)
            versions[name] = getattr(module, "__version__", None) or importlib.metadata.version(name.replace("_", "-"))
        except Exception as error:  # noqa: BLE001 - recorded, not fatal
            versions[name] = f"missing ({type(error).__name__})"
    rec["versions"] = versions
    _refuse_dill_by_value()
    import torch

    if cuda(settings):
        props = torch.cuda.get_device_properties(0)
        rec["gpu"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB, sm_{props.major}{props.minor}"
    else:
        rec["gpu"] = "none (--cpu)"
    began = time.perf_counter()
    ensure_prepared(settings)
    rec["prepare_s"] = round(time.perf_counter() - began, 2)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(paths(settings)["q0"]))
    n_params = sum(v.numel() for v in _meta_model(config).parameters())
    rec["model"] = (f"{settings['model']} shape: hidden {config.hidden_size}, intermediate {config.intermediate_size}, "
                    f"{config.num_hidden_layers} layers, {config.num_attention_heads} heads, "
                    f"{config.num_key_value_heads} kv heads, vocab {config.vocab_size}; "
                    + (f"{n_params / 1e9:.3f} B" if n_params >= 1e8 else f"{n_params / 1e6:.2f} M") + " params, random init")


def _meta_model(config):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _refuse_dill_by_value() -> None:
    """dill (datasets' fingerprints) pickles modules outside "site-packages"/sys.prefix by value
    and then fails deep inside `Dataset.from_list`; say so plainly instead."""
    try:
        import datasets
        import dill._dill as dill_internals
        import pyarrow
    except ImportError:
        return
    outside = [m.__name__ for m in (datasets, pyarrow) if not dill_internals._is_builtin_module(m)]
    if outside:
        raise RuntimeError(f"{outside} are imported from a folder whose path has no 'site-packages' "
                           f"({Path(datasets.__file__).parent.parent}); dill would pickle them by value and "
                           "datasets fails. Install the wheels with --target .../site-packages.")


def phase_snapshot(settings, rec: Recorder) -> None:
    from soda_plugin.snapshot.engine import SamplingSettings
    from soda_plugin.snapshot.transformers_engine import TransformersEngine

    p = ensure_prepared(settings)
    warmup = p["chain"] / "warmup"
    model_dir = warmup if (warmup / "config.json").is_file() else p["q0"]
    n = settings["snapshot_prompts"]
    prompts = [row["content"] for row in read_rows(settings, n)]
    peak_and_reset(settings)
    engine = TransformersEngine(str(model_dir), dtype=settings["dtype"], batch_size=n, device=settings["device"])
    engine.generate(prompts[:2], SamplingSettings(temperature=0.0, max_tokens=4))  # warm-up
    sync(settings)
    began = time.perf_counter()
    answers = engine.generate(prompts, SamplingSettings(temperature=0.0, max_tokens=settings["snapshot_new_tokens"]))
    sync(settings)
    elapsed = time.perf_counter() - began
    tokens = sum(a[0].completion_tokens for a in answers)
    rec.update(snapshot_prompts=n, snapshot_prompt_tokens=answers[0][0].prompt_tokens,
               snapshot_new_tokens=settings["snapshot_new_tokens"], snapshot_generated=tokens,
               snapshot_s=round(elapsed, 3), snapshot_tokens_per_s=round(tokens / elapsed, 1),
               snapshot_peak=peak_and_reset(settings))
    engine.close()


PHASE_FUNCTIONS = {
    "env": phase_env,
    "chain": phase_chain,
    "reference": phase_reference,
    "rerun": phase_rerun,
    "dpo_resident": phase_dpo_resident,
    "dpo_ref_kept": phase_dpo_ref_kept,
    "snapshot": phase_snapshot,
    "lora_chain": phase_lora_chain,
}
