"""Tune the miniature on its validation split, the same number of runs for SeqKD and for SODA.

    python tools/tune_miniature.py                 # both grids, seed 0
    python tools/tune_miniature.py --seed 1
    python tools/tune_miniature.py --gad           # phase 3 only: GAD's knobs

Phase 1 tries SeqKD's knobs (the SFT run's rate and schedule) and picks the best SeqKD on
validation; phase 2 tries SODA's knobs (DPO rate, beta, W/D split) from that SFT run's step-W
save. Uses the full budget's prompts (the same train set as `tools/cpu_demo.py`), evaluates
on the validation prompts only and prints one table with both methods (also `<out>/sweep.md`
and `sweep.json`). The held-out test prompts are never answered here. Re-running continues a
killed sweep. `--gad` runs phase 3: GAD's knobs (its policy's and discriminator's rates), as
many runs, its warmup at the SFT values the recipes hold (SeqKD's pick); `<out>/sweep_gad.md`.
"""

import argparse
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/miniature-tune"))
    parser.add_argument("--model-dir", type=Path, help="SmolLM2-135M-Instruct as an HF folder (as tools/cpu_demo.py)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every run")
    parser.add_argument("--gad", action="store_true", help="phase 3 only: GAD's knobs (sweep_gad.md)")
    return parser


def main(args: argparse.Namespace) -> None:
    from soda_plugin.miniature.settings import mode_settings
    from soda_plugin.miniature.tune import run_gad_sweep, run_sweep

    settings = mode_settings(False, args.out, seeds=(args.seed,), model_dir=args.model_dir, ablation=False,
                             gad_seeds=(args.seed,))
    summary = run_gad_sweep(settings) if args.gad else run_sweep(settings)
    print("\n" + summary["table"])
    print(f"Full results: {summary['report']}")


if __name__ == "__main__":
    main(make_parser().parse_args())
