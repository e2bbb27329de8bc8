"""Compare the cost of finished runs: wall time, optimizer steps, GPU-hours, peak memory.

    soda cost outputs/qwen7b_seqkd outputs/qwen7b_soda
    soda cost outputs/qwen7b_seqkd outputs/qwen7b_soda evals/answers/soda

Every stage writes `cost.json` into its output folder when it ends: training (`warmup`,
`sft`, `dpo`) from a Trainer callback, `soda reference` beside its store, `soda snapshot`
in its answers folder. A RUN_DIR's cost is every `cost.json` in it and its sub-folders (a
SODA run: `warmup/cost.json` + its DPO `cost.json`), summed; peaks are the highest over
stages and ranks. The table is markdown, one row per RUN_DIR, with ratios to the first.
"""

from __future__ import annotations

import argparse

from soda_plugin.cli import stage_parser


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run folders (an output_dir); the first is the one the ratios divide by")
    return parser


def main(args: argparse.Namespace) -> int:
    from soda_plugin.cost.table import CostFileError, format_table, read_run

    try:
        runs = [read_run(path) for path in args.runs]
    except CostFileError as err:
        raise SystemExit(f"soda cost: {err}") from None
    print(format_table(runs))
    return 0
