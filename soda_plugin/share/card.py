"""The model card (`README.md`) of a published SODA student."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .bundle import RECIPE_DIR


def _front_matter(student: str, datasets: list[str]) -> str:
    meta = {"base_model": student, "library_name": "transformers", "pipeline_tag": "text-generation",
            "tags": ["soda", "distillation", "dpo", "axolotl"]}
    if datasets:
        meta["datasets"] = datasets
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _scores_section(scores: dict[str, Any]) -> list[str]:
    lines = ["## Judge scores\n"]
    if {"protocol", "models", "benchmarks", "results"} <= set(scores):
        from ..judge.report import markdown_table

        lines.append(markdown_table(scores))
    else:
        lines += ["```json", json.dumps(scores, indent=2, sort_keys=True), "```", ""]
    return lines


def _settings(recipe: dict[str, Any]) -> list[str]:
    soda = recipe.get("soda") or {}
    warmup = {k: v for k, v in (soda.get("warmup") or {}).items() if k != "datasets"}
    dpo = {k: recipe.get(k) for k in ("learning_rate", "num_epochs", "max_steps", "micro_batch_size",
                                      "gradient_accumulation_steps", "max_grad_norm", "lr_scheduler", "adapter")
           if recipe.get(k) is not None}
    if recipe.get("trl"):
        dpo["beta"] = recipe["trl"].get("beta")
    snapshot = {k: v for k, v in (soda.get("snapshot") or {}).items() if k not in ("output_dir", "base_url")}
    fmt = lambda d: ", ".join(f"`{k}`={v}" for k, v in d.items()) or "not set"  # noqa: E731
    lines = [f"- q0 snapshot (the rejected answers): {fmt(snapshot)}"]
    if recipe.get("rl"):
        lines += [f"- Warmup (SFT on teacher answers): {fmt(warmup)}", f"- DPO: {fmt(dpo)}"]
    else:
        lines.append(f"- SFT: {fmt(dpo)}")
    return lines


def model_card(*, repo_id: str, recipe_path: str | Path, teacher: str, student: str | None = None,
               scores: dict[str, Any] | None = None, datasets: list[str] | None = None) -> str:
    recipe_path = Path(recipe_path)
    recipe = yaml.safe_load(recipe_path.read_text())
    student = student or recipe.get("base_model", "unknown")
    method = "SODA (warmup SFT, then DPO against q0's own answers)" if recipe.get("rl") else "SeqKD (SFT on teacher answers)"
    lines = [
        _front_matter(student, datasets or []),
        f"# {repo_id.split('/')[-1]}\n",
        f"{student} distilled from the black-box teacher {teacher} with {method}, trained with "
        "Axolotl and the `soda_plugin` (SODA: Semi On-policy Distillation with Alignment, arXiv 2604.03873).\n",
        f"- Teacher: {teacher}",
        f"- Student (base): {student}",
        f"- Recipe: `{RECIPE_DIR}/{recipe_path.name}`" + (
            f" with `{RECIPE_DIR}/{recipe['deepspeed']}`" if isinstance(recipe.get("deepspeed"), str) else ""),
        *_settings(recipe),
        "",
    ]
    if scores:
        lines += _scores_section(scores)
    lines += [
        "## Reproduce\n", "```bash", "pip install soda-plugin  # the soda Axolotl plugin",
        f"huggingface-cli download {repo_id} --include '{RECIPE_DIR}/*' --local-dir .",
        f"accelerate launch --multi_gpu --num_processes 8 -m axolotl.cli.train {RECIPE_DIR}/{recipe_path.name}",
        "```", "",
    ]
    return "\n".join(lines)
