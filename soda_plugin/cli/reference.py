"""Score a recipe's DPO pairs under q_w once, and store the reference log-probs for every DPO run.

    soda reference recipes/llama8b_soda.yml                 # runs the warmup first if it is not finished
    soda reference recipes/llama8b_soda.yml --batch-size 8  # pairs per no-grad forward
    accelerate launch -m soda_plugin.cli reference recipes/llama8b_soda.yml   # each rank scores a slice

`axolotl train` runs the same pass itself, right after the warmup, for the pairs the store
lacks; this command does it ahead of time (for example before a beta sweep with
`soda.reference_logps: require`). The values go to `<q_w>/reference_logps/` (or
`soda.reference_logps_dir`): a manifest naming the reference, and part files written batch
by batch, so running the command again after a kill scores only the pairs still missing.
See docs/memory.md.
"""

import argparse

from soda_plugin.cli import stage_parser


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    parser.add_argument("config", help="a soda DPO recipe (YAML)")
    parser.add_argument("--batch-size", type=int,
                        help="pairs per forward (default: the recipe's soda.precompute_ref_batch_size, else "
                             "micro_batch_size)")
    return parser


def main(args: argparse.Namespace) -> int:
    from soda_plugin.train.reference_pass import run_reference_pass

    summary = run_reference_pass(args.config, batch_size=args.batch_size)
    print(summary)
    return 0
