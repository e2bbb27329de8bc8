"""The check's table: one row per measurement, rendered as Markdown."""

from __future__ import annotations

from typing import Any

from .settings import MARGIN_TOLERANCE, PHASES, TRL_ONLY_PHASES

TRL_ONLY = " (TRL only, not soda's path)"


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


def _status(phases, phase: str) -> str:
    p = phases.get(phase) or {}
    s = p.get("status", "missing")
    if s == "ok":
        return "ok"
    if s == "skipped":
        return f"SKIPPED: {p.get('error')}"
    return f"FAILED: {p.get('error') or s}"


def _margin_check(value) -> tuple[bool, str]:
    return abs(value) < MARGIN_TOLERANCE, f"|m| < {MARGIN_TOLERANCE:g}"


def build_rows(settings: dict[str, Any], phases: dict[str, dict[str, Any]]) -> tuple[list[list[str]], list[str]]:
    """Rows [phase, measurement, value, status] and the notes under the table."""
    gpu = settings["mode"] == "gpu"
    rows: list[list[str]] = []

    def v(phase, key):
        return (phases.get(phase) or {}).get("values", {}).get(key)

    def add(phase, label, key=None, *, value=None, kind="text", check=None):
        val = v(phase, key) if key else value
        shown = fmt_gb(val) if kind == "gb" and (val is not None or not gpu) else fmt(val)
        status = _status(phases, phase)
        if check is not None and val is not None and status == "ok":
            ok, what = check(val)
            status = ("PASS: " if ok else "CHECK FAILED: ") + what
        rows.append([phase, label + (TRL_ONLY if phase in TRL_ONLY_PHASES else ""), shown, status])

    env = (phases.get("env") or {}).get("values", {})
    versions = env.get("versions") or {}
    add("env", "versions", value=", ".join(f"{k} {versions.get(k, '?')}" for k in
                                           ("python", "torch", "transformers", "trl", "axolotl", "peft", "liger_kernel")))
    add("env", "device", value=env.get("gpu"))
    add("env", "model", value=env.get("model"))
    add("env", "setup", value=(f"{settings['dtype']}, gradient checkpointing, {settings['attn_implementation']}, pairs "
                               f"{settings['prompt_tokens']} prompt + {settings['response_tokens']} response tokens, "
                               f"micro batch {settings['micro_batch_size']}, {settings['sft_steps']} SFT + "
                               f"{settings['dpo_steps']} DPO steps, no DeepSpeed"))

    add("chain", "axolotl train (soda chain), wall s", "axolotl_s")
    add("chain", "stand-ins imported (import-only, unused)", "standins_used")
    add("chain", "memory_allocated before the warmup loads", "alloc_before_warmup", kind="gb")
    add("chain", "SFT warmup peak (max_memory_allocated)", "sft_peak", kind="gb")
    add("chain", "memory_allocated before DPO loads (left by the warmup after release_stage)", "alloc_before_dpo",
        kind="gb")
    add("chain", "DPO load + soda's reference pass peak", "dpo_pass_peak", kind="gb")
    add("chain", "DPO training peak (no resident reference)", "dpo_train_peak", kind="gb")
    add("chain", "DPO trainer holds a reference model", "dpo_ref_model_resident")
    add("chain", "TRL chunked log-probs on (soda.chunked_logps)", "dpo_chunked_logps")
    add("chain", "reference pass: forwards / s (store's cost.json)",
        value=None if v("chain", "dpo_pass_forwards") is None else
        f"{v('chain', 'dpo_pass_forwards')} / {fmt(v('chain', 'reference_pass_s'))}")
    add("chain", "rewards/margins at DPO step 0", "margin_step0", check=_margin_check)
    add("chain", "rewards/margins per DPO step", "dpo_margins")
    add("chain", "warmup started from q0 / changed q0 (saved weights)",
        value=f"{fmt(v('chain', 'warmup_started_from_q0'))} / {fmt(v('chain', 'warmup_changed_q0'))}")
    add("chain", "DPO started from q_w / changed q_w (checksums vs saved weights)",
        value=f"{fmt(v('chain', 'dpo_started_from_warmup'))} / {fmt(v('chain', 'dpo_changed_q_w'))}")

    add("rerun", "re-run: stages trained (warmup reused from its marker)", "stages_trained")
    add("rerun", "re-run: reference forwards (log-probs from the store)", "dpo_pass_forwards")
    add("rerun", "re-run: rewards/margins at DPO step 0 (stored log-probs)", "margin_step0", check=_margin_check)

    micro, batch = settings["micro_batch_size"], settings["precompute_ref_batch_size"]
    for key, label in (("trl_micro", f"TRL precompute, batch {micro} (the recipes' micro batch){TRL_ONLY}"),
                       ("trl_batch", f"TRL precompute, batch {batch}{TRL_ONLY}"),
                       ("soda_cold", f"soda's reference pass, batch {batch}, empty store"),
                       ("soda_reuse", "soda's reference pass, full store (a second DPO run)")):
        add("reference", f"{label}: s / forwards / peak", value=None if v("reference", f"{key}_s") is None else
            f"{v('reference', f'{key}_s')} s / {v('reference', f'{key}_forwards')} / "
            f"{fmt_gb(v('reference', f'{key}_peak'))}")
    add("reference", "pairs / speed-up of soda's pass over TRL at the micro batch / max |diff| vs TRL",
        value=None if v("reference", "speedup") is None else
        f"{v('reference', 'pairs')} / {v('reference', 'speedup')}x / {fmt(v('reference', 'max_abs_diff_vs_trl'))}")

    add("dpo_resident", "DPO, resident reference model, peak", "dpo_peak", kind="gb")
    add("dpo_ref_kept", "DPO, precomputed but reference kept (Axolotl without soda), peak", "dpo_peak", kind="gb")
    add("dpo_resident", "resident reference: rewards/margins at step 0", "margin_step0", check=_margin_check)

    add("snapshot", "snapshot (TransformersEngine, greedy) tokens/s", "snapshot_tokens_per_s")
    add("snapshot", "snapshot peak", "snapshot_peak", kind="gb")

    add("lora_chain", "LoRA r16 chain (axolotl train): SFT peak", "sft_peak", kind="gb")
    add("lora_chain", "LoRA: DPO training peak", "dpo_train_peak", kind="gb")
    add("lora_chain", "LoRA: rewards/margins at DPO step 0", "margin_step0", check=_margin_check)
    add("lora_chain", "LoRA: q_w merged / final student merged",
        value=f"{fmt(v('lora_chain', 'warmup_merged_q_w'))} / {fmt(v('lora_chain', 'dpo_merged_student'))}")

    for name, _, _ in PHASES:
        p = phases.get(name) or {}
        rows.append([name, "phase wall s / process peak RSS",
                     f"{p.get('wall_s')} s / {p.get('rss_mb', 0) / 1024:.1f} GB" if p.get("wall_s") else "-",
                     _status(phases, name)])

    notes = [
        "Rows without a label suffix ran soda's real path: `axolotl train` with soda's plugin (chain, rerun, "
        "lora_chain), soda's `attach_reference_logps` (reference) and snapshot engine; rows marked "
        f"'{TRL_ONLY.strip()}' drive TRL's DPOTrainer directly to measure what soda avoids.",
        "Memory is torch.cuda.max_memory_allocated / memory_allocated, written by the check's own Axolotl plugin "
        "(probe_plugin.py) at each stage's model load, first step and end. One GPU, no DeepSpeed: pure bf16 weights "
        "and AdamW states, below the 8-GPU ZeRO-2 recipes' per-GPU figures; the ratios are the point."
        if gpu else "--cpu: GPU memory is n/a; each phase's process peak RSS is in the last rows.",
        f"Margin checks: |rewards/margins| < {MARGIN_TOLERANCE:g} at DPO step 0 (policy == reference == q_w).",
    ]
    return rows, notes


def render_markdown(title: str, rows: list[list[str]], notes: list[str]) -> str:
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"## {title}", "", "| phase | measurement | value | status |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
