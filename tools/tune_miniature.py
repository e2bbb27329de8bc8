"""Tune the miniature on its validation split: SODA variants against SeqKD with the same steps.

    python tools/tune_miniature.py                       # every variant of the grid, seeds 0 1
    python tools/tune_miniature.py --variants recipe dpo-lr-5e-5 --seeds 0

Uses the full mode's prompts (the same train set as `tools/cpu_demo.py`), evaluates on the
validation prompts only and writes `<out>/sweep.md` and `sweep.json`. The held-out test
prompts are never answered here. Re-running continues a killed sweep.
"""

import argparse
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    from soda_plugin.miniature.tune import GRID

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/miniature-tune"))
    parser.add_argument("--model-dir", type=Path, help="SmolLM2-135M-Instruct as an HF folder (as tools/cpu_demo.py)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds of every variant")
    parser.add_argument("--variants", nargs="+", choices=[v.name for v in GRID], help="default: the whole grid")
    return parser


def main(args: argparse.Namespace) -> None:
    from soda_plugin.miniature.settings import mode_settings
    from soda_plugin.miniature.tune import GRID, run_sweep

    settings = mode_settings(False, args.out, seeds=tuple(args.seeds), model_dir=args.model_dir, ablation=False)
    variants = [v for v in GRID if args.variants is None or v.name in args.variants]
    summary = run_sweep(settings, variants)
    print("\n" + summary["table"])
    print(f"Full results: {summary['report']}")


if __name__ == "__main__":
    main(make_parser().parse_args())
