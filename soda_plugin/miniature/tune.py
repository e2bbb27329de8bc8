"""Tune the miniature on its validation split, the same number of runs for SeqKD and for SODA.

    python -m soda_plugin.miniature.tune              # both grids, seed 0
    python -m soda_plugin.miniature.tune --seed 1
    python -m soda_plugin.miniature.tune --gad        # phase 3 only: GAD's knobs
    python tools/tune_miniature.py ...                # the same, in a clone

Uses the full budget's prompts (the same train set as `soda demo`), evaluates on the
validation prompts only (never the test prompts) and prints one table with both methods
(also `<out>/sweep.md` and `sweep.json`), the same number of validation runs for each method.
Re-running continues a killed sweep.

Phase 1, SeqKD's knobs: each SFT variant (rate, schedule) is one SFT run from q0 of W + D
steps; its end is a SeqKD model, answered on validation. The best by exact match is SeqKD's
pick (ties: the earlier variant, the recipe first).

Phase 2, SODA's knobs: each DPO variant (rate, beta, W/D split) starts from the picked SFT
run's save at its step W (SODA's warmup is that run's first W steps, so SODA inherits the
SFT values SeqKD chose) and spends the remaining steps on DPO. The best is SODA's pick.

Phase 3, GAD's knobs (`run_gad_sweep`): each GAD variant (its policy's and its
discriminator's rates) runs GAD's warmup (SFT at the SFT values SeqKD picked, D on live
rollouts) and GAD stage from q0; variants with the same warmup share it. The best is GAD's pick.

All grids hold the same number of variants. Shared work (teacher answers, snapshot, pairs,
runs, answers) is reused, so a killed sweep continues.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from dataclasses import dataclass, replace
from functools import reduce
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..format.fileio import atomic_write_text
from ..judge.grid import headline
from ..log import get_logger
from .pipeline import (KEY_ENV, RECIPES, StageClock, answer_prompts, build_pairs, collect_teacher, dpo_config,
                       exact_match_by_prompt, gad_config, in_groups, judge_models, sft_config, snapshot,
                       train_concurrently, warmup_checkpoint, write_task_files)
from .report import markdown_table
from .settings import MiniatureSettings

LOG = get_logger(__name__)


@dataclass(frozen=True)
class SftVariant:
    """SeqKD's knobs for one sweep point (the one SFT run per seed); None keeps the recipe's value."""

    name: str
    sft_learning_rate: float | None = None
    sft_scheduler: str | None = None

    def apply(self, settings: MiniatureSettings) -> MiniatureSettings:
        return replace(settings, **_knobs(self))


@dataclass(frozen=True)
class DpoVariant:
    """SODA's knobs for one sweep point; None keeps the full budget's value. W + D stays the same."""

    name: str
    warmup_steps: int | None = None
    beta: float | None = None
    dpo_learning_rate: float | None = None

    def apply(self, settings: MiniatureSettings) -> MiniatureSettings:
        knobs = _knobs(self)
        if "warmup_steps" in knobs:
            knobs["dpo_steps"] = settings.total_steps - knobs["warmup_steps"]
        return replace(settings, **knobs)


@dataclass(frozen=True)
class GadVariant:
    """GAD's knobs for one sweep point; None keeps the recipe's value."""

    name: str
    gad_learning_rate: float | None = None
    discriminator_learning_rate: float | None = None

    def apply(self, settings: MiniatureSettings) -> MiniatureSettings:
        return replace(settings, **_knobs(self))

    def warmup_key(self) -> str:
        """Variants with the same key train the same warmup (D's rate is the only knob it reads)."""
        rate = self.discriminator_learning_rate
        return "recipe" if rate is None else f"d-lr-{rate:g}"


def _knobs(variant: SftVariant | DpoVariant | GadVariant) -> dict[str, Any]:
    return {k: v for k, v in vars(variant).items() if k != "name" and v is not None}


# Four validation runs per method. SeqKD: its rate around the recipe's, and the schedule that
# anneals to the end (cosine over W + D, still one run with no restart). SODA: its DPO rate,
# beta, and the W/D split. The 2026-12-06 sweep (docs/miniature.md) ran this grid around the
# recipe values of then (SFT 1e-4, W 16 + D 8); its picks are the recipe values now.
SFT_GRID = (
    SftVariant("recipe"),
    SftVariant("sft-lr-2.5e-5", sft_learning_rate=2.5e-5),
    SftVariant("sft-lr-1e-4", sft_learning_rate=1e-4),
    SftVariant("sft-cosine", sft_scheduler="cosine"),
)
DPO_GRID = (
    DpoVariant("recipe"),
    DpoVariant("dpo-lr-2e-5", dpo_learning_rate=2e-5),
    DpoVariant("beta-0.3", beta=0.3),
    DpoVariant("warmup-16-dpo-8", warmup_steps=16),
)


# GAD: its policy's rate in the GAD stage around the recipe's (as SODA's DPO rate), and its
# discriminator's rate (GAD uses one rate for both; D learns in both stages).
GAD_GRID = (
    GadVariant("recipe"),
    GadVariant("gad-lr-3e-5", gad_learning_rate=3e-5),
    GadVariant("gad-lr-3e-6", gad_learning_rate=3e-6),
    GadVariant("d-lr-1e-4", discriminator_learning_rate=1e-4),
)


def _tag(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe(variant: SftVariant | DpoVariant | GadVariant) -> str:
    return ", ".join(f"{k}={_tag(v)}" for k, v in _knobs(variant).items()) or "recipe values"


def save_every(settings: MiniatureSettings, variants: Sequence[DpoVariant]) -> int:
    """One checkpoint interval that lands on every W the DPO variants start from."""
    return reduce(math.gcd, [v.apply(settings).warmup_steps for v in variants])


def prune_checkpoints(sft_dir: Path, keep: set[int]) -> None:
    """Remove the SFT run's step saves no DPO variant starts from (each is a full model)."""
    for folder in sft_dir.glob("checkpoint-*"):
        if folder.name.split("-")[-1].isdigit() and int(folder.name.split("-")[-1]) not in keep:
            shutil.rmtree(folder)


def pick(names: Sequence[str], matches: Mapping[str, Mapping[str, bool]]) -> str:
    """The run with the highest validation exact match; ties go to the earlier one."""
    return max(names, key=lambda n: (sum(matches[n].values()), -names.index(n)))


def run_sweep(settings: MiniatureSettings, sft_variants: Sequence[SftVariant] = SFT_GRID,
              dpo_variants: Sequence[DpoVariant] = DPO_GRID) -> dict[str, Any]:
    """Both phases on the validation prompts (seed `settings.seeds[0]`); writes sweep.md and sweep.json."""
    import os

    from ..smollm2 import convert_smollm2
    from .teacher_server import running_teacher

    if len(sft_variants) != len(dpo_variants):
        raise ValueError(f"tuning parity: {len(sft_variants)} SeqKD variants but {len(dpo_variants)} SODA variants")
    out, logs = settings.out_dir, settings.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(KEY_ENV, "local-teacher-needs-no-key")
    clock = StageClock()
    recipe = yaml.safe_load((RECIPES / "smollm2_cpu_soda.yml").read_text())
    convert_smollm2(settings.model_dir)
    files = write_task_files(settings, out / "data")
    val = files["val"]
    seed = settings.seeds[0]
    every = save_every(settings, dpo_variants)
    starts = {v.apply(settings).warmup_steps for v in dpo_variants}
    with running_teacher(logs / "teacher_server.log") as url:
        with clock.stage("teacher answers"):
            teacher = collect_teacher(url, files["train"], out / "data" / "teacher.jsonl", 0.0, files["test"],
                                      logs / "teacher.log")
        with clock.stage("q0 snapshot and pairs"):
            snap = snapshot(settings.model_dir, files["train"], out / "snapshots" / settings.q0_name,
                            recipe["soda"]["snapshot"], settings, logs / "snapshot_q0.log")
            pairs = build_pairs(teacher, str(snap), out / "pairs" / settings.q0_name, logs / "pairs.log", judge_url=url)
        sft_dirs = {v.name: out / "runs" / f"sft-{v.name}" / f"seed{seed}" for v in sft_variants}
        with clock.stage("SeqKD: SFT runs"):  # `concurrent_runs` at a time: tuning reads no runtime
            for batch in in_groups(sft_variants, settings.concurrent_runs):
                train_concurrently({f"sft-{v.name}_s{seed}": sft_config(v.apply(settings), seed, teacher, sft_dirs[v.name],
                                                                        save_every=every) for v in batch}, settings)
                for v in batch:
                    prune_checkpoints(sft_dirs[v.name], starts)
        models = {"base": settings.model_dir, **{f"seqkd.{v.name}": sft_dirs[v.name] for v in sft_variants}}
        with clock.stage("validation answers"):
            answers = answer_prompts(models, val, settings)
        matches = {n: exact_match_by_prompt(p, val) for n, p in answers.items()}
        chosen_sft = pick([f"seqkd.{v.name}" for v in sft_variants], matches).split(".", 1)[1]
        LOG.info("sweep: SeqKD picks `%s` on validation", chosen_sft)
        chosen_dir = sft_dirs[chosen_sft]
        warmups = {f"qw.{w}": warmup_checkpoint(chosen_dir, w) for w in sorted(starts)}
        dpo_dirs = {v.name: out / "runs" / f"soda-{v.name}-from-{chosen_sft}" / f"seed{seed}" for v in dpo_variants}
        with clock.stage("SODA: DPO runs"):
            for batch in in_groups(dpo_variants, settings.concurrent_runs):
                train_concurrently({f"soda-{v.name}-from-{chosen_sft}_s{seed}": dpo_config(
                    v.apply(settings), seed, pairs, dpo_dirs[v.name],
                    warmup_checkpoint(chosen_dir, v.apply(settings).warmup_steps)) for v in batch}, settings)
        more = {**warmups, **{f"soda.{v.name}": dpo_dirs[v.name] for v in dpo_variants}}
        with clock.stage("validation answers"):
            answers.update(answer_prompts(more, val, settings))
        matches.update({n: exact_match_by_prompt(answers[n], val) for n in more})
        chosen_dpo = pick([f"soda.{v.name}" for v in dpo_variants], matches).split(".", 1)[1]
        with clock.stage("judge"):
            judged = judge_models(answers, val, url, settings)
    return write_sweep_report(settings, sft_variants, dpo_variants, chosen_sft, chosen_dpo, matches, judged,
                              clock.seconds)


def write_sweep_report(settings: MiniatureSettings, sft_variants: Sequence[SftVariant],
                       dpo_variants: Sequence[DpoVariant], chosen_sft: str, chosen_dpo: str,
                       matches: Mapping[str, Mapping[str, bool]], judged: Mapping[str, Any],
                       seconds: Mapping[str, float]) -> dict[str, Any]:
    """sweep.md / sweep.json: one table with both methods' runs on validation, the picks, and
    picked SODA - picked SeqKD paired over prompts."""
    import numpy as np

    from . import stats
    from .summary import rate_interval

    judge = {r["model"]: headline(r)["score"] for r in judged["results"]}
    prompt_ids = list(matches["base"])

    def exact(name: str) -> np.ndarray:
        return np.array([[float(matches[name][pid]) for pid in prompt_ids]])

    rows, results = [], {}
    for method, prefix, variants, chosen in (("SeqKD", "seqkd", sft_variants, chosen_sft),
                                             ("SODA", "soda", dpo_variants, chosen_dpo)):
        for v in variants:
            name = f"{prefix}.{v.name}"
            em = rate_interval(exact(name))
            results[name] = {"method": method, "variant": vars(v), "exact_match": em.to_dict(), "judge": judge[name],
                             "chosen": v.name == chosen}
            start = f"from SeqKD's `{chosen_sft}` run; " if prefix == "soda" else ""
            rows.append([method, v.name, start + describe(v), em.format(), f"{judge[name]:.1f}",
                         "**picked**" if v.name == chosen else ""])
    for name in sorted(n for n in matches if n.startswith("qw.")):
        em = rate_interval(exact(name))
        results[name] = {"method": "q_w", "exact_match": em.to_dict(), "judge": judge[name]}
        rows.append(["q_w", f"step {name.split('.', 1)[1]}", f"SeqKD's `{chosen_sft}` run at that step", em.format(),
                     f"{judge[name]:.1f}", "reference"])
    base = rate_interval(exact("base"))
    rows.append(["Base", "q0", "untrained", base.format(), f"{judge['base']:.1f}", "reference"])
    delta = stats.paired_difference(exact(f"soda.{chosen_dpo}"), exact(f"seqkd.{chosen_sft}"))
    text = (f"# Validation sweep ({len(prompt_ids)} validation prompts; seed {settings.seeds[0]}; "
            f"W + D = {settings.total_steps} steps)\n\n"
            f"{len(sft_variants)} validation runs for SeqKD's knobs, {len(dpo_variants)} for SODA's.\n\n"
            + markdown_table(["method", "variant", "knobs", "exact match % (95 % CI)", "judge", ""], rows)
            + f"\n\nPicked SODA - picked SeqKD on validation (paired over prompts): "
              f"{delta.mean:+.1f} [{delta.low:+.1f}, {delta.high:+.1f}] points.\n"
              "The test prompts were not used.\n")
    out = settings.out_dir
    summary = {"settings": settings.to_dict(), "results": results, "chosen": {"seqkd": chosen_sft, "soda": chosen_dpo},
               "picked_soda_minus_seqkd": delta.to_dict(), "stage_seconds": dict(seconds), "split": "val",
               "n_prompts": len(prompt_ids)}
    atomic_write_text(out / "sweep.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "sweep.md", text)
    return {"table": text, "report": str(out / "sweep.md"), **summary}


def gad_batches(variants: Sequence[GadVariant], size: int) -> list[list[GadVariant]]:
    """Groups of at most `size` variants to train at once, where no two in a group share a
    warmup that is not trained yet (they would both train it, in the same folder)."""
    firsts, rest, seen = [], [], set()
    for v in variants:
        (rest if v.warmup_key() in seen else firsts).append(v)
        seen.add(v.warmup_key())
    return [list(g) for g in in_groups(firsts, size)] + [list(g) for g in in_groups(rest, size)]


def run_gad_sweep(settings: MiniatureSettings, gad_variants: Sequence[GadVariant] = GAD_GRID) -> dict[str, Any]:
    """Phase 3 on the validation prompts (seed `settings.seeds[0]`), with the SFT values the
    recipes hold (SeqKD's pick, `sweep.json`); writes sweep_gad.md and sweep_gad.json."""
    import os

    from ..smollm2 import convert_smollm2
    from .teacher_server import running_teacher

    earlier = settings.out_dir / "sweep.json"
    if earlier.is_file():
        n_earlier = sum(1 for r in json.loads(earlier.read_text())["results"].values() if r["method"] == "SeqKD")
        if n_earlier != len(gad_variants):
            raise ValueError(f"tuning parity: {n_earlier} SeqKD variants but {len(gad_variants)} GAD variants")
    out, logs = settings.out_dir, settings.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(KEY_ENV, "local-teacher-needs-no-key")
    clock = StageClock()
    convert_smollm2(settings.model_dir)
    files = write_task_files(settings, out / "data")
    val, seed = files["val"], settings.seeds[0]
    dirs = {v.name: out / "runs" / f"gad-{v.name}" / f"seed{seed}" for v in gad_variants}
    warmups = {v.name: out / "runs" / f"gad-warmup-{v.warmup_key()}" / f"seed{seed}" for v in gad_variants}
    with running_teacher(logs / "teacher_server.log") as url:
        with clock.stage("teacher answers"):
            teacher = collect_teacher(url, files["train"], out / "data" / "teacher.jsonl", 0.0, files["test"],
                                      logs / "teacher.log")
        with clock.stage("GAD: warmup and GAD stage runs"):
            for batch in gad_batches(gad_variants, settings.concurrent_runs):
                train_concurrently({f"gad-{v.name}_s{seed}": gad_config(v.apply(settings), seed, teacher, dirs[v.name],
                                                                       warmup_dir=warmups[v.name]) for v in batch},
                                   settings)
        models = {"base": settings.model_dir, **{f"gad.{v.name}": dirs[v.name] for v in gad_variants}}
        with clock.stage("validation answers"):
            answers = answer_prompts(models, val, settings)
        matches = {n: exact_match_by_prompt(p, val) for n, p in answers.items()}
        chosen = pick([f"gad.{v.name}" for v in gad_variants], matches).split(".", 1)[1]
        with clock.stage("judge"):
            judged = judge_models(answers, val, url, settings)
    return write_gad_sweep_report(settings, gad_variants, chosen, matches, judged, clock.seconds)


def write_gad_sweep_report(settings: MiniatureSettings, variants: Sequence[GadVariant], chosen: str,
                           matches: Mapping[str, Mapping[str, bool]], judged: Mapping[str, Any],
                           seconds: Mapping[str, float]) -> dict[str, Any]:
    import numpy as np

    from .summary import rate_interval

    judge = {r["model"]: headline(r)["score"] for r in judged["results"]}
    prompt_ids = list(matches["base"])
    rows, results = [], {}
    for v in variants:
        name = f"gad.{v.name}"
        em = rate_interval(np.array([[float(matches[name][pid]) for pid in prompt_ids]]))
        results[name] = {"method": "GAD", "variant": vars(v), "exact_match": em.to_dict(), "judge": judge[name],
                         "chosen": v.name == chosen}
        rows.append(["GAD", v.name, describe(v), em.format(), f"{judge[name]:.1f}", "**picked**" if v.name == chosen else ""])
    text = (f"# Validation sweep, GAD ({len(prompt_ids)} validation prompts; seed {settings.seeds[0]}; warmup W = "
            f"{settings.warmup_steps} + GAD stage D = {settings.dpo_steps} steps)\n\n"
            f"{len(variants)} validation runs for GAD's knobs, as many as SeqKD's and SODA's (sweep.md); the warmup "
            "uses the SFT values SeqKD picked.\n\n"
            + markdown_table(["method", "variant", "knobs", "exact match % (95 % CI)", "judge", ""], rows)
            + "\n\nThe test prompts were not used.\n")
    summary = {"settings": settings.to_dict(), "results": results, "chosen": {"gad": chosen},
               "stage_seconds": dict(seconds), "split": "val", "n_prompts": len(prompt_ids)}
    atomic_write_text(settings.out_dir / "sweep_gad.json", json.dumps(summary, indent=2))
    atomic_write_text(settings.out_dir / "sweep_gad.md", text)
    return {"table": text, "report": str(settings.out_dir / "sweep_gad.md"), **summary}


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/miniature-tune"),
                        help="default: ./outputs/miniature-tune in the current directory")
    parser.add_argument("--model-dir", type=Path, help="SmolLM2-135M-Instruct as an HF folder (as `soda demo`)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every run")
    parser.add_argument("--gad", action="store_true", help="phase 3 only: GAD's knobs (sweep_gad.md)")
    return parser


def main(args: argparse.Namespace) -> None:
    from .settings import mode_settings

    settings = mode_settings(False, args.out, seeds=(args.seed,), model_dir=args.model_dir, ablation=False,
                             gad_seeds=(args.seed,))
    summary = run_gad_sweep(settings) if args.gad else run_sweep(settings)
    print("\n" + summary["table"])
    print(f"Full results: {summary['report']}")


if __name__ == "__main__":
    main(make_parser().parse_args())
