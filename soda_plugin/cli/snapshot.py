"""Snapshot the untouched student q0: sample its answers to every training prompt, once.

From a recipe (student = `base_model`, settings from `soda.snapshot`; command-line flags
override). The prompts come from `--prompts`: a SODA recipe's `type: soda` datasets are
the pairs this snapshot is for, so they do not exist yet (without `--prompts` the tool
reads them, and says so when they are missing):

    soda snapshot --recipe recipes/qwen7b_soda.yml --prompts data/teacher/train.jsonl

From plain arguments:

    soda snapshot --model outputs/models/SmolLM2-135M-Instruct \\
        --prompts prompts.jsonl --out snapshots/q0 --backend transformers --temperature 0
    soda snapshot --model Qwen/Qwen2.5-7B-Instruct --prompts prompts.jsonl \\
        --out snapshots/q0 --backend openai --base-url http://gpu-box:8000/v1

On a Ray cluster (one engine per Ray worker; `ray[data]` installed; docs/snapshot.md):

    soda snapshot --recipe recipes/qwen7b_soda.yml --prompts data/teacher/train.jsonl --ray-address auto

Re-running the same command after an interruption (even SIGKILL) finishes the job: done
prompts are skipped, nothing is duplicated.
"""

import argparse

from soda_plugin.cli import stage_parser
from soda_plugin.snapshot.options import add_engine_options, add_sampling_options


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    source = parser.add_argument_group("student and prompts")
    source.add_argument("--recipe", help="Axolotl recipe YAML with the soda plugin")
    source.add_argument("--model", help="student model (path or Hub id); default: the recipe's base_model")
    source.add_argument("--revision", help="model revision recorded in the output")
    source.add_argument("--prompts", help="jsonl/json/parquet file or dataset with prompt messages")
    source.add_argument("--field-messages", default="content", help="column holding the prompt messages")
    source.add_argument("--out", help="output folder; default: soda.snapshot.output_dir or <output_dir>/snapshot_q0")
    source.add_argument("--source", help="label of these answers in the pairs; default q0:<model>")
    add_engine_options(parser.add_argument_group("engine"))
    add_sampling_options(parser.add_argument_group("sampling (defaults: soda_plugin.snapshot.engine.SamplingSettings)"))
    ray = parser.add_argument_group("Ray (docs/snapshot.md)")
    ray.add_argument("--ray-address", help="run the engines as Ray workers: local (a one-node cluster soda starts), "
                     "auto (the cluster `ray start` joined) or HOST:PORT; --data-parallel-size sets the workers")
    parser.add_argument("--shard-size", type=int)
    parser.add_argument("--shard-timeout-s", type=float,
                        help="with several engines (--data-parallel-size, --ray-address): longest wait for the next "
                        "shard; default soda.snapshot.shard_timeout_s")
    parser.add_argument("--max-prompt-tokens", type=int,
                        help="leave out (and list in too_long.jsonl) longer prompts; default: the recipe's sequence_len - 1")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(args: argparse.Namespace) -> None:
    from soda_plugin.snapshot.cli import run_from_args

    summary = run_from_args(args)
    print(summary.report())
