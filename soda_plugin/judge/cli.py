"""Resolve `soda judge` arguments into runs: `answer`, `score`, `table`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..evalsets import BENCHMARKS, load_eval_set
from ..log import get_logger

LOG = get_logger(__name__)


def parse_assignments(values: list[str] | None, what: str) -> dict[str, str]:
    """`["base=out/a", "soda=out/b"]` -> `{"base": "out/a", "soda": "out/b"}`.

    Raises:
        ValueError: an item without `=`, or a name given twice.
    """
    parsed: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"`{what}` takes NAME=PATH items, got {item!r}.")
        if name in parsed:
            raise ValueError(f"`{what}` names `{name}` twice.")
        parsed[name] = value
    return parsed


def resolve_benchmarks(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    files = parse_assignments(args.eval_file, "--eval-file")
    # A set of your own (any other name) is fine when it comes with its file.
    unknown = sorted(set(args.benchmarks) - set(BENCHMARKS) - set(files) | set(files) - set(args.benchmarks))
    if unknown:
        raise ValueError(f"`--benchmarks`/`--eval-file`: unknown or unselected benchmark(s) {unknown}; "
                         f"choose among {sorted(BENCHMARKS)} (or name a set of your own and give its file with "
                         "`--eval-file NAME=FILE`), and give files only for selected ones.")
    return list(args.benchmarks), files


def run_answer(args: argparse.Namespace) -> str:
    """Student answers (greedy) to every selected set; returns the report."""
    from ..snapshot.config import SnapshotConfig
    from ..snapshot.options import data_parallel_size, engine_options, installed_version
    from .answers import PromptFormat, check_student, generate_answers

    benchmarks, files = resolve_benchmarks(args)
    config = SnapshotConfig.model_validate({k: getattr(args, k) for k in ("backend", "dtype", "tensor_parallel_size",
                                                                         "base_url") if getattr(args, k) is not None})
    students = ({"": args.model} if args.model else parse_assignments(args.models, "--models"))
    for model in students.values():  # every student before the first answer, not hours later
        check_student(config.backend.value, model)
    eval_sets = {name: load_eval_set(name, files.get(name)) for name in benchmarks}
    ranks = data_parallel_size(config, args.data_parallel_size)
    reports = []
    for student, model in students.items():
        summaries = generate_answers(config.backend.value, model, engine_options(config, args), eval_sets,
                                     Path(args.out) / student, max_tokens=args.max_tokens, shard_size=args.shard_size,
                                     progress=not args.no_progress, data_parallel_size=ranks,
                                     engine_version=installed_version(config.backend.value),
                                     prompt_format=PromptFormat.GAD if args.gad_wrapper else PromptFormat.CHAT)
        reports += [f"{student + ' ' if student else ''}{name}: {summary.report()}" for name, summary in summaries.items()]
    return "\n".join(reports)


def run_score(args: argparse.Namespace) -> str:
    """Judge every model's answers; writes results.json, prompt_scores.jsonl and the tables."""
    from ..client import ChatClient, client_settings, warn_if_key_missing
    from ..client.batch_options import batch_options
    from ..verdict.batch import BatchChat
    from ..verdict.calls import JudgeCalls, JudgeSettings
    from .report import write_tables
    from .run import ScoreConfig, report, results_document, score_models_sync, write_results
    from ..verdict.template import load_template

    benchmarks, files = resolve_benchmarks(args)
    models = {name: Path(folder) for name, folder in parse_assignments(args.models, "--models").items()}
    if not models:
        raise ValueError("`--models` needs at least one NAME=ANSWERS_DIR.")
    judge = JudgeSettings(args.judge_model, load_template(args.template), temperature=args.judge_temperature,
                          reference_max_tokens=args.reference_max_tokens, verdict_max_tokens=args.verdict_max_tokens,
                          parse_attempts=args.parse_attempts)
    out = Path(args.out)
    config = ScoreConfig(models, benchmarks, out, judge, files, Path(args.cache_dir) if args.cache_dir else None,
                         args.bootstrap_resamples, args.seed, progress=not args.no_progress,
                         length_tokenizer=args.length_tokenizer, length_controlled=args.length_controlled)
    settings = client_settings(args, base_url=args.judge_base_url, model=args.judge_model)
    warn_if_key_missing(settings, "the judge", "--api-key-env")
    cache_dir = config.cache_dir or out / "cache"
    batch = batch_options(args)
    client = BatchChat(settings, cache_dir, batch) if batch else ChatClient(settings)
    calls = JudgeCalls(client, judge, cache_dir, progress=config.progress)

    results = score_models_sync(config, calls)  # BatchWaitError: `soda judge` exits 4, a re-run resumes
    prices = (args.price_in, args.price_out) if args.price_in is not None and args.price_out is not None else None
    if prices and batch:
        prices = batch.prices(*prices)
    document = results_document(config, results, calls, prices)
    write_results(out, document)
    paths = write_tables(document, out)
    return report(document) + f"\ntables: {', '.join(str(p) for p in paths.values())}"


def run_table(args: argparse.Namespace) -> str:
    """Re-draw the tables of a `results.json` (e.g. after editing model names)."""
    from .report import write_tables

    document = json.loads(Path(args.results).read_text(encoding="utf-8"))
    paths = write_tables(document, args.out or Path(args.results).parent)
    return "tables: " + ", ".join(str(p) for p in paths.values())


COMMANDS = {"answer": run_answer, "score": run_score, "table": run_table}
