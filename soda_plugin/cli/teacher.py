"""Collect a black-box teacher's answers to the training prompts, in the pair builder's schema.

From a prompts file (any OpenAI-compatible server; the key is read from $OPENAI_API_KEY):

    soda teacher --prompts prompts.jsonl --out teacher.jsonl \\
        --base-url https://api.openai.com/v1 --model gpt-5-chat-latest \\
        --max-tokens 1536 --price-in 1.25 --price-out 10 \\
        --exclude-eval lmsys --exclude-eval dolly=data/dolly_eval.jsonl

From a recipe's `type: soda` datasets, estimating first:

    soda teacher --recipe recipes/smollm2_cpu_soda.yml --out teacher.jsonl \\
        --model gpt-5-chat-latest --max-tokens 1536 --price-in 1.25 --price-out 10 --dry-run

Re-running the same command after an interruption (even SIGKILL) finishes the job: answers
already written are kept and never asked again, a half-written last line is cut off, and
prompts that failed after every retry are asked again. Exit code 3: some prompts still
have no answer. Then: `soda pairs --teacher teacher.jsonl ...`.

Batch mode (`--batch`: the provider's batch API, about half the price, answers within 24 h;
same rows, same output file):

    soda teacher --prompts prompts.jsonl --out teacher.jsonl --batch \\
        --base-url https://api.openai.com/v1 --model gpt-5-chat-latest --max-tokens 1536 \\
        --price-in 1.25 --price-out 10 --batch-discount 0.5 --batch-poll 60

It uploads request files (at most --batch-max-requests lines and --batch-max-bytes bytes
each), creates one batch per file, polls them, and writes each answer as the result files
are read. Failed, expired, malformed or missing items are sent again in a new batch (at
most --batch-rounds batches per prompt); `bad_request` items are not. Every upload and
batch id is journaled (fsynced) in `<out stem>.batches.jsonl` before the next step: re-run
the same command after any interruption (SIGKILL included) and it resumes polling its
batches; no prompt is sent again while a batch carrying it is open, or once it has a row.
Cost: tokens x --price-in/--price-out x --batch-discount (pass the online prices; set
--batch-discount 1 if you pass batch prices). Exit code 4: batches still unfinished after
--batch-max-wait seconds (re-run to resume them).
"""

import argparse

from soda_plugin.cli import stage_parser
from soda_plugin.evalsets import BENCHMARKS
from soda_plugin.client.batch_options import add_batch_options
from soda_plugin.client.options import add_client_options


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    data = parser.add_argument_group("prompts and output")
    data.add_argument("--prompts", help="jsonl/json/parquet file (or dataset) with prompt messages")
    data.add_argument("--recipe", help="Axolotl recipe YAML: prompts from its `type: soda` datasets")
    data.add_argument("--field-messages", default="content", help="input column holding the prompt messages")
    data.add_argument("--out", required=True, help="output .jsonl (resumed when it exists)")
    data.add_argument("--out-field-messages", default="content", help="output column for the prompt messages")
    data.add_argument("--out-field-teacher", default="teacher_response", help="output column for the answer")
    data.add_argument("--exclude-eval", action="append", metavar="NAME[=PATH]",
                      help=f"drop prompts of this evaluation set ({', '.join(BENCHMARKS)}; PATH: local "
                           "file instead of the Hub); repeat for several")
    teacher = parser.add_argument_group("teacher")
    teacher.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    teacher.add_argument("--model", required=True, help="teacher model name")
    teacher.add_argument("--system-prompt", help="system message for prompts that have none")
    teacher.add_argument("--temperature", type=float)
    teacher.add_argument("--top-p", type=float)
    teacher.add_argument("--max-tokens", type=int)
    client = parser.add_argument_group("client")
    add_client_options(client, aliases={"timeout_s": "--timeout"})
    cost = parser.add_argument_group("cost")
    cost.add_argument("--price-in", type=float, default=0.0, help="USD per 1M prompt tokens")
    cost.add_argument("--price-out", type=float, default=0.0, help="USD per 1M completion tokens")
    cost.add_argument("--dry-run", action="store_true", help="estimate tokens and cost; send nothing")
    cost.add_argument("--tokenizer", help="dry run: count prompt tokens with this local HF tokenizer")
    add_batch_options(parser.add_argument_group("batch mode"), "the prompts")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(args: argparse.Namespace) -> int:
    from soda_plugin.teacher.cli import run_from_args

    report, code = run_from_args(args)
    print(report, flush=True)
    return code
