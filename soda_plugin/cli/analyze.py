"""Representation analysis: linear CKA to the base model per layer, last-layer activation
entropy and kurtosis, on the last prompt token of held-out prompts (SODA's section on
representations).

    soda analyze --prompts heldout.jsonl --base base=outputs/models/SmolLM2-135M-Instruct \\
        --model seqkd=outputs/seqkd --model soda=outputs/soda --out outputs/analysis

Writes `analysis.json`, `cka_by_layer.png` and `last_layer_activations.png` in `--out`,
and prints a table.
"""

import argparse

from soda_plugin.cli import stage_parser
from pathlib import Path


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    parser.add_argument("--prompts", required=True, help="jsonl/json/parquet file of prompt messages")
    parser.add_argument("--field-messages", default="content", help="column holding the prompt messages")
    parser.add_argument("--limit", type=int, help="use the first N prompts (the paper uses 200)")
    parser.add_argument("--base", required=True, help="NAME=PATH of the base model")
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH, repeatable")
    parser.add_argument("--out", required=True, type=Path)
    return parser


def main(args: argparse.Namespace) -> None:
    from soda_plugin.analysis.representations import format_table, run_analysis
    from soda_plugin.judge.cli import parse_assignments
    from soda_plugin.format.prompts import prompts_from_file

    (base_name, base_path), = parse_assignments([args.base], "--base").items()
    models = {base_name: base_path, **parse_assignments(args.model, "--model")}
    prompts = prompts_from_file(args.prompts, args.field_messages)[: args.limit]
    results = run_analysis(models, base_name, prompts, args.out)
    print(format_table(results))
    print(f"plots and numbers in {args.out}")
