"""Tuning the miniature on its validation split only (never the test prompts).

Each variant changes a few of SODA's knobs (warmup length, DPO steps, beta, learning
rates, number of q0 negatives) and is trained on the same seeds as a SeqKD run with the
same total optimizer steps and SFT learning rate; every model answers the validation
prompts and is scored by exact match and by the judge, as in the main run. Shared work
(teacher answers, snapshots, pairs, warmups, SeqKD runs, answers) is keyed by the settings
that produce it, so variants reuse it and a killed sweep continues.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..format.fileio import atomic_write_text
from ..judge.grid import headline
from ..log import get_logger
from .pipeline import (KEY_ENV, RECIPES, StageClock, answer_prompts, build_pairs, collect_teacher,
                       exact_match_by_prompt, judge_models, q0_name, seqkd_config, snapshot, soda_config, train_once,
                       write_task_files)
from .report import markdown_table
from .settings import MiniatureSettings

LOG = get_logger(__name__)


@dataclass(frozen=True)
class Variant:
    """SODA's knobs for one sweep point; None keeps the full mode's value."""

    name: str
    warmup_steps: int | None = None
    dpo_steps: int | None = None
    beta: float | None = None
    dpo_learning_rate: float | None = None
    warmup_learning_rate: float | None = None
    negatives: int | None = None

    def apply(self, settings: MiniatureSettings) -> MiniatureSettings:
        knobs = {k: v for k, v in vars(self).items() if k != "name" and v is not None}
        return replace(settings, **knobs)


# Each point changes one knob against the full budget's recipe values. SODA and its SeqKD
# always start from the same warmup and spend the same D steps.
GRID = (
    Variant("recipe"),
    Variant("dpo-lr-5e-6", dpo_learning_rate=5e-6),
    Variant("dpo-lr-2e-5", dpo_learning_rate=2e-5),
    Variant("beta-0.3", beta=0.3),
    Variant("warmup-20-dpo-4", warmup_steps=20, dpo_steps=4),
    Variant("warmup-12-dpo-12", warmup_steps=12, dpo_steps=12),
    Variant("sft-lr-5e-5", warmup_learning_rate=5e-5),
    Variant("sft-lr-2e-4", warmup_learning_rate=2e-4),
)


def _tag(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def warmup_key(s: MiniatureSettings) -> str:
    return f"warmup-{s.warmup_steps}-lr{_tag(s.warmup_learning_rate or _recipe_warmup_lr())}"


def seqkd_key(s: MiniatureSettings) -> str:
    """SeqKD continues the warmup for D SFT steps: one per (warmup, D)."""
    return f"seqkd-{warmup_key(s)}-plus{s.dpo_steps}"


def _recipe_warmup_lr() -> float:
    return float(yaml.safe_load((RECIPES / "smollm2_cpu_soda.yml").read_text())["soda"]["warmup"]["learning_rate"])


def _exact_match(answers_dir: Path, prompts: Path) -> float:
    by_prompt = exact_match_by_prompt(answers_dir, prompts)
    return round(100.0 * sum(by_prompt.values()) / len(by_prompt), 1)


def run_sweep(settings: MiniatureSettings, variants: Sequence[Variant]) -> dict[str, Any]:
    """Train and evaluate every variant (and its matched SeqKD) on the validation prompts."""
    from ..smollm2 import convert_smollm2
    from .teacher_server import running_teacher

    out, logs = settings.out_dir, settings.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    import os

    os.environ.setdefault(KEY_ENV, "local-teacher-needs-no-key")
    clock = StageClock()
    recipe = yaml.safe_load((RECIPES / "smollm2_cpu_soda.yml").read_text())
    convert_smollm2(settings.model_dir)
    files = write_task_files(settings, out / "data")
    val = files["val"]
    models: dict[str, Path] = {"base": settings.model_dir}
    rows: dict[str, dict[str, list[str]]] = {}
    answers: dict[str, Path] = {}
    with running_teacher(logs / "teacher_server.log") as url:
        with clock.stage("teacher answers"):
            teacher = collect_teacher(url, files["train"], out / "data" / "teacher.jsonl", 0.0, files["test"],
                                      logs / "teacher.log")
        pairs: dict[str, Path] = {}
        for variant in variants:
            s = variant.apply(settings)
            for name, k in {"q0": 1, q0_name(s): s.negatives}.items():
                if name not in pairs:
                    with clock.stage("q0 snapshot"):
                        snap = snapshot(s.model_dir, files["train"], out / "snapshots" / name, recipe["soda"]["snapshot"],
                                        s, logs / f"snapshot_{name}.log", samples=k)
                    pairs[name] = build_pairs(teacher, str(snap), out / "pairs" / name, logs / "pairs.log",
                                              judge_url=url)  # the same filtered pairs as the pipeline
            rows[variant.name] = {"soda": [], "seqkd": []}
            for seed in s.seeds:
                soda_name = f"{variant.name}/s{seed}"
                seqkd_name = f"{seqkd_key(s)}/s{seed}"
                with clock.stage("SODA train"):
                    models[soda_name] = train_once(f"{variant.name}_s{seed}", soda_config(
                        s, seed, pairs[q0_name(s)], pairs["q0"], out / "runs" / variant.name / f"seed{seed}",
                        out / "runs" / warmup_key(s) / f"seed{seed}"), s)
                with clock.stage("SeqKD train"):
                    models[seqkd_name] = train_once(f"{seqkd_key(s)}_s{seed}", seqkd_config(
                        s, seed, teacher, out / "runs" / seqkd_key(s) / f"seed{seed}",
                        out / "runs" / warmup_key(s) / f"seed{seed}"), s)
                rows[variant.name]["soda"].append(soda_name)
                rows[variant.name]["seqkd"].append(seqkd_name)
            with clock.stage("validation answers"):  # per variant, so a partial sweep can be read
                answers.update(answer_prompts({n: m for n, m in models.items() if n not in answers}, val, settings))
            LOG.info("sweep: %s exact match on validation: SODA %s, SeqKD %s", variant.name,
                     [_exact_match(answers[n], val) for n in rows[variant.name]["soda"]],
                     [_exact_match(answers[n], val) for n in rows[variant.name]["seqkd"]])
        with clock.stage("judge"):
            judged = judge_models({n.replace("/", "_"): p for n, p in answers.items()}, val, url, settings)
    matches = {name: exact_match_by_prompt(path, val) for name, path in answers.items()}
    return write_sweep_report(settings, variants, rows, matches, judged, clock.seconds)


def write_sweep_report(settings: MiniatureSettings, variants: Sequence[Variant], rows: Mapping[str, Mapping[str, list[str]]],
                       matches: Mapping[str, Mapping[str, bool]], judged: Mapping[str, Any],
                       seconds: Mapping[str, float]) -> dict[str, Any]:
    """sweep.md / sweep.json: per variant, SODA and its SeqKD on validation, and SODA - SeqKD paired."""
    from . import stats
    from .summary import rate_interval

    judge = {r["model"]: headline(r)["score"] for r in judged["results"]}
    prompt_ids = list(matches["base"])

    def exact(names: Sequence[str]):
        import numpy as np

        return np.array([[float(matches[n][pid]) for pid in prompt_ids] for n in names])

    def rate(names: Sequence[str]) -> stats.Interval:
        return rate_interval(exact(names))

    base = rate(["base"])
    results: dict[str, Any] = {"base": {"exact_match": base.to_dict(), "judge": judge["base"]}}
    table = []
    for variant in variants:
        soda, seqkd = rows[variant.name]["soda"], rows[variant.name]["seqkd"]
        delta = stats.paired_difference(exact(soda), exact(seqkd))
        figures = {"soda": rate(soda), "seqkd": rate(seqkd)}
        results[variant.name] = {"variant": vars(variant), "soda_minus_seqkd": delta.to_dict(),
                                 **{k: {"exact_match": v.to_dict(),
                                        "judge_per_seed": [judge[n.replace("/", "_")] for n in rows[variant.name][k]]}
                                    for k, v in figures.items()}}
        changes = ", ".join(f"{k}={_tag(v)}" for k, v in vars(variant).items() if k != "name" and v is not None)
        table.append([variant.name, changes or "recipe values", figures["soda"].format(), figures["seqkd"].format(),
                      f"{delta.mean:+.1f} [{delta.low:+.1f}, {delta.high:+.1f}]"])
    text = (f"# Validation sweep ({len(prompt_ids)} validation prompts; seeds {list(settings.seeds)})\n\n"
            f"Base: exact match {base.format()} %, judge {judge['base']:.1f}.\n\n"
            + markdown_table(["variant", "changes", "SODA exact match %", "SeqKD (same warmup, same steps) exact match %",
                              "SODA - SeqKD (paired)"], table)
            + "\n\nJudge scores and per-seed values: sweep.json. The test prompts were not used.\n")
    out = settings.out_dir
    summary = {"settings": settings.to_dict(), "results": results, "stage_seconds": dict(seconds),
               "split": "val", "n_prompts": len(prompt_ids)}
    atomic_write_text(out / "sweep.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "sweep.md", text)
    return {"table": text, "report": str(out / "sweep.md"), **summary}
