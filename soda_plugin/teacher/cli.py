"""Resolve `soda teacher` arguments into one collection (or a dry run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..client import client_settings
from ..client.batch_core import EXIT_BATCHES_OPEN
from ..format.rows import TeacherFields
from .collect import CollectionSummary, TeacherRequest, dry_run, run_collection
from .exclude import EvalExclusion, EvalSetRef

EXIT_SOME_FAILED = 3  # some prompts still have no answer; re-running retries them


def load_prompts(args: argparse.Namespace) -> list[list[dict[str, str]]]:
    from ..format.prompts import prompts_from_file, prompts_from_recipe

    if args.prompts:
        return prompts_from_file(args.prompts, args.field_messages)
    if args.recipe:
        import yaml

        return prompts_from_recipe(yaml.safe_load(Path(args.recipe).read_text()))
    raise ValueError("no prompts: pass `--prompts FILE` or a `--recipe` with `type: soda` datasets.")


def _exclusion(args: argparse.Namespace) -> EvalExclusion | None:
    refs = [EvalSetRef.parse(spec) for spec in args.exclude_eval or []]
    return EvalExclusion.load(refs) if refs else None


def _tokenizer(name: str | None) -> Any:
    if not name:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def run_from_args(args: argparse.Namespace) -> tuple[str, int]:
    """The report to print and the exit code."""
    prompts = load_prompts(args)
    fields = TeacherFields(messages=args.out_field_messages, teacher=args.out_field_teacher)
    request = TeacherRequest(args.model, args.system_prompt, args.temperature, args.top_p, args.max_tokens)
    exclusion = _exclusion(args)
    prices = {"price_in": args.price_in, "price_out": args.price_out}
    if args.dry_run:
        if args.batch:
            prices = {name: price * args.batch_discount for name, price in prices.items()}
        plan, estimate = dry_run(prompts, args.out, request=request, fields=fields, exclusion=exclusion,
                                 tokenizer=_tokenizer(args.tokenizer), tokenizer_name=args.tokenizer, **prices)
        report = (f"{plan.prompts_read} prompts read, {plan.duplicates} duplicates, {plan.excluded} evaluation "
                  f"prompts dropped ({exclusion.report() if exclusion else 'none requested'}), "
                  f"{plan.done_before} already answered\n{estimate.report()}")
        if args.batch:
            report += f" at batch prices (x{args.batch_discount:g} of --price-in/--price-out)"
        return report, 0
    if not args.base_url:
        raise ValueError("`--base-url` is required (the teacher's OpenAI-compatible endpoint), except with `--dry-run`.")
    settings = client_settings(args, base_url=args.base_url, model=args.model)
    if args.batch:
        return _run_batch(args, prompts, settings, request, fields, exclusion, prices)
    summary: CollectionSummary = run_collection(prompts, args.out, settings=settings, request=request, fields=fields,
                                                exclusion=exclusion, progress=not args.no_progress, **prices)
    return summary.report(), EXIT_SOME_FAILED if summary.failed else 0


def _run_batch(args, prompts, settings, request, fields, exclusion, prices) -> tuple[str, int]:
    from ..client.batch_options import batch_options
    from .batch import BatchWaitError, run_batch_collection

    options = batch_options(args)
    try:
        summary = run_batch_collection(prompts, args.out, settings=settings, request=request, fields=fields,
                                       exclusion=exclusion, options=options, progress=not args.no_progress, **prices)
    except BatchWaitError as error:
        return f"teacher (batch): {error}", EXIT_BATCHES_OPEN
    return summary.report(), EXIT_SOME_FAILED if summary.failed else 0
