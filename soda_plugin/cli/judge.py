"""Evaluate students with the paper's GPT-4o Score (pairwise judge vs. a reference answer).

1. Student answers, greedy, resumable (one run per model; any snapshot backend):

    soda judge answer --model outputs/soda --out evals/answers/soda \\
        --benchmarks lmsys dolly selfinst vicuna --backend vllm
    soda judge answer --model outputs/models/SmolLM2-135M-Instruct --out evals/answers/base \\
        --benchmarks vicuna --eval-file vicuna=vicuna.jsonl --backend transformers --max-tokens 256

   A LoRA recipe's student is `--model outputs/<run>/merged` (its DPO adapter merged into
   q_w); the adapter folder `outputs/<run>` is refused.

2. Judge them (key from $OPENAI_API_KEY, or the variable named by --api-key-env); every
   call is cached, so re-runs and new students pay only for what is new:

    soda judge score --judge-base-url https://api.openai.com/v1 --judge-model gpt-4o \\
        --models base=evals/answers/base seqkd=evals/answers/seqkd soda=evals/answers/soda \\
        --benchmarks lmsys dolly selfinst vicuna --out evals/scores

   With `--batch` the references, then the verdicts, go through the provider's batch API
   (about half the price; `--price-in/--price-out` are the online prices, costed x
   `--batch-discount`); a re-run resumes the open batches and pays nothing twice:

    soda judge score --batch --judge-base-url https://api.openai.com/v1 --judge-model gpt-4o \\
        --models base=evals/answers/base soda=evals/answers/soda --out evals/scores \\
        --price-in 2.5 --price-out 10 --batch-poll 60

   The tables lead with every model on the same (paired) prompts and add the score from
   each order, how often the orders disagree and the answer lengths; `--length-controlled`
   adds the score at equal length, `answer --gad-wrapper` asks in GAD's evaluation wrapper.

3. Re-draw the table (markdown, CSV, JSON, PNG) of a results file:

    soda judge table --results evals/scores/results.json

Protocol and choices: docs/judge.md.
"""

import argparse

from soda_plugin.cli import stage_parser
from soda_plugin.evalsets import BENCHMARKS
from soda_plugin.client.batch_options import add_batch_options
from soda_plugin.client.options import add_client_options
from soda_plugin.snapshot.options import add_engine_options



def _add_benchmarks(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), help=f"evaluation sets (default: {' '.join(BENCHMARKS)}); another name is a set of your own, "
                        "given with --eval-file NAME=FILE")
    parser.add_argument("--eval-file", nargs="+", metavar="BENCHMARK=FILE",
                        help="local .jsonl/.json/.parquet file instead of the Hub copy")
    parser.add_argument("--no-progress", action="store_true")


def _add_answer(sub) -> None:
    parser = sub.add_parser("answer", help="generate students' greedy answers")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="student model folder or Hub id (for a LoRA recipe, <output_dir>/merged)")
    which.add_argument("--models", nargs="+", metavar="NAME=MODEL",
                       help="several students in one process, one after another; answers go to OUT/NAME")
    parser.add_argument("--out", required=True, help="answers folder (one snapshot folder per benchmark); with "
                        "--models, the folder that holds one answers folder per NAME")
    parser.add_argument("--max-tokens", type=int, default=1536, help="new tokens per answer (paper: 1536)")
    parser.add_argument("--gad-wrapper", action="store_true",
                        help="ask each instruction inside GAD's evaluation wrapper ('Below is an instruction ... "
                        "### Response:'), to compare with GAD's published tables; `score` reads it from the "
                        "answers folder and judges the bare instruction (docs/judge.md)")
    _add_benchmarks(parser)
    engine = parser.add_argument_group("engine (as soda snapshot)")
    add_engine_options(engine, backend_default="vllm")
    engine.add_argument("--shard-size", type=int, default=64, help="prompts per atomic output shard")


def _add_score(sub) -> None:
    parser = sub.add_parser("score", help="judge answers against reference answers and write the table")
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME=ANSWERS_DIR")
    parser.add_argument("--out", required=True, help="folder for results.json, prompt_scores.jsonl, tables")
    parser.add_argument("--cache-dir", help="judge call cache (default: <out>/cache); share it across runs")
    _add_benchmarks(parser)
    judge = parser.add_argument_group("judge")
    judge.add_argument("--judge-base-url", required=True)
    judge.add_argument("--judge-model", required=True, help="e.g. gpt-4o (the paper's judge)")
    judge.add_argument("--template", default="pairwise_v1", help="soda_plugin/verdict/templates/<name>.txt")
    judge.add_argument("--judge-temperature", type=float, default=0.0)
    judge.add_argument("--reference-max-tokens", type=int, default=1536)
    judge.add_argument("--verdict-max-tokens", type=int, default=512)
    judge.add_argument("--parse-attempts", type=int, default=3,
                       help="requests per verdict before it counts as unparsable")
    add_client_options(judge)
    judge.add_argument("--price-in", type=float, help="USD per million prompt tokens (reports the cost)")
    judge.add_argument("--price-out", type=float, help="USD per million completion tokens")
    add_batch_options(parser.add_argument_group("batch mode (docs/judge.md)"), "the references and the verdicts")
    stats = parser.add_argument_group("statistics")
    stats.add_argument("--bootstrap-resamples", type=int, default=1000)
    stats.add_argument("--seed", type=int, default=0)
    stats.add_argument("--length-tokenizer", help="Hugging Face tokenizer (folder or Hub id) for the answer "
                       "lengths; default: a regex count of words and punctuation marks (docs/judge.md)")
    stats.add_argument("--length-controlled", action="store_true",
                       help="also report the score at equal length: OLS of the prompt score on the log "
                       "length ratio to the reference, its intercept (docs/judge.md)")


def _add_table(sub) -> None:
    parser = sub.add_parser("table", help="re-draw markdown/CSV/JSON/PNG from a results.json")
    parser.add_argument("--results", required=True)
    parser.add_argument("--out", help="default: the results file's folder")


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_answer, _add_score, _add_table):
        add(sub)
    return parser


def main(args: argparse.Namespace) -> int:
    from soda_plugin.client.batch_core import EXIT_BATCHES_OPEN, BatchWaitError
    from soda_plugin.judge.cli import COMMANDS

    try:
        print(COMMANDS[args.command](args))
    except BatchWaitError as error:
        print(f"judge (batch): {error}", flush=True)
        return EXIT_BATCHES_OPEN
    return 0
