"""Build SODA preference pairs: teacher answers (chosen) x student snapshot answers (rejected).

    # q0 negatives, no length check
    soda pairs --teacher data/teacher.jsonl --snapshot outputs/snapshots/q0 \
        --out outputs/pairs/q0

    # length check with the recipe's student and sequence_len, then publish
    soda pairs --teacher data/teacher.parquet --snapshot outputs/snapshots/q0 \
        --recipe recipes/smollm2_cpu_soda.yml --out outputs/pairs/q0 --push-to-hub me/soda-pairs

    # ablation: cross-student and degraded negatives (degraded answers are truncated by design)
    soda pairs --teacher data/teacher.jsonl \
        --snapshot outputs/snapshots/other=cross:Qwen2.5-7B --snapshot outputs/snapshots/degraded \
        --truncated teacher_only --out outputs/pairs/ablation

    # check that the teacher really beats q0: a judge sees each pair in both orders (cached,
    # key from $OPENAI_API_KEY); pairs the teacher does not win are dropped (or `--judge-filter-action flag`)
    soda pairs --teacher data/teacher.jsonl --snapshot outputs/snapshots/q0 \
        --out outputs/pairs/q0 --judge-filter --judge-base-url https://api.openai.com/v1 --judge-model gpt-4o

    # the same through the provider's batch API (about half the price, answers within 24 h;
    # journaled in the cache folder: a re-run resumes the open batches and pays nothing twice)
    soda pairs --teacher data/teacher.jsonl --snapshot outputs/snapshots/q0 --out outputs/pairs/q0 \
        --judge-filter --judge-base-url https://api.openai.com/v1 --judge-model gpt-4o --batch \
        --judge-price-in 2.5 --judge-price-out 10

The output folder reads in a recipe as `path: <out>/data`, `ds_type: parquet`, `type: soda`.
`--push-to-hub` reads the token from `$HF_TOKEN` only (never the cached `huggingface-cli login`),
and checks it is set before building anything.
"""

import argparse

from soda_plugin.cli import stage_parser
from soda_plugin.client.batch_options import add_batch_options
from soda_plugin.client.options import add_client_options


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    data = parser.add_argument_group("data")
    data.add_argument("--teacher", nargs="+", required=True, metavar="FILE",
                      help="teacher .jsonl/.parquet files (`content` messages + `teacher_response`)")
    data.add_argument("--snapshot", action="append", required=True, metavar="DIR_OR_FILE[=SOURCE_LABEL]",
                      help="a snapshot directory or .jsonl/.parquet file; repeat for several sources")
    data.add_argument("--out", required=True, metavar="DIR", help="output folder (data/, README.md, build_report.json)")
    data.add_argument("--overwrite", action="store_true", help="replace the pairs already in --out")
    data.add_argument("--field-messages", default="content")
    data.add_argument("--field-teacher", default="teacher_response")
    data.add_argument("--field-prompt-id", default="prompt_id")
    data.add_argument("--field-finish-reason", default="finish_reason")
    filters = parser.add_argument_group("filters")
    filters.add_argument("--truncated", choices=["drop", "keep", "teacher_only"], default="drop",
                         help="answers with finish_reason `length`: drop the pair if either is truncated "
                              "(default), keep all, or drop only truncated teacher answers")
    filters.add_argument("--first-sample-only", action="store_true", help="one pair per prompt and snapshot")
    filters.add_argument("--tokenizer", metavar="PATH", help="student tokenizer for the length check")
    filters.add_argument("--sequence-len", type=int, metavar="N", help="drop pairs longer than N tokens")
    filters.add_argument("--recipe", metavar="RECIPE.yml",
                         help="take `base_model`, `sequence_len` and `chat_template` from an Axolotl recipe")
    _add_judge_filter(parser)
    card = parser.add_argument_group("card and upload")
    card.add_argument("--teacher-name", help="teacher model shown on the dataset card")
    card.add_argument("--student-name", help="student model shown on the card (default: snapshot manifest)")
    card.add_argument("--push-to-hub", metavar="REPO", help="upload the folder as this Hub dataset")
    card.add_argument("--private", action="store_true", help="create the Hub dataset as private")
    return parser


def _add_judge_filter(parser: argparse.ArgumentParser) -> None:
    judge = parser.add_argument_group("judge filter (does the teacher beat q0? docs/pairs.md)")
    judge.add_argument("--judge-filter", action="store_true",
                       help="ask a judge, in both orders, whether each pair's teacher answer beats its q0 answer")
    judge.add_argument("--judge-base-url", help="any OpenAI-compatible server (required with --judge-filter)")
    judge.add_argument("--judge-model", help="judge model, e.g. gpt-4o (required with --judge-filter)")
    judge.add_argument("--judge-filter-action", choices=["drop", "flag"], default="drop",
                       help="pairs the teacher does not win: drop them (default) or keep them flagged "
                            "(`judge_verdict` column = teacher_not_better)")
    judge.add_argument("--judge-filter-margin", type=float, default=0.0, metavar="M",
                       help="the teacher wins when its mean T/(T+Q) over both orders > 0.5 + M (default 0)")
    judge.add_argument("--judge-filter-unjudged", choices=["keep", "fail"], default="keep",
                       help="pairs without both verdicts (unparsable, failed request): keep them marked "
                            "`unjudged_*` (default) or fail the build, writing nothing")
    judge.add_argument("--judge-cache-dir", metavar="DIR",
                       help="verdict cache (default: <out>/judge_cache); may be shared with `soda judge score`")
    judge.add_argument("--judge-template", default="pairwise_v1", help="soda_plugin/verdict/templates/<name>.txt")
    judge.add_argument("--judge-temperature", type=float, default=0.0)
    judge.add_argument("--judge-verdict-max-tokens", type=int, default=512)
    judge.add_argument("--judge-parse-attempts", type=int, default=3,
                       help="requests per verdict before it counts as unparsable")
    add_client_options(judge, prefix="judge-")
    judge.add_argument("--judge-price-in", type=float, metavar="USD",
                       help="USD per million prompt tokens, online price (reports the judge's cost)")
    judge.add_argument("--judge-price-out", type=float, metavar="USD", help="USD per million completion tokens")
    judge.add_argument("--no-progress", action="store_true", help="no progress bar for the judge's calls")
    add_batch_options(parser.add_argument_group("judge filter in batch mode (docs/pairs.md)"), "the judge's verdicts")


def _judge_filter(args: argparse.Namespace):
    """The `JudgeFilterConfig` of --judge-filter, or None; judge options without it are an error."""
    if not args.judge_filter:
        options = (("--judge-base-url", args.judge_base_url), ("--judge-model", args.judge_model),
                   ("--judge-cache-dir", args.judge_cache_dir), ("--batch", args.batch))
        given = [flag for flag, value in options if value]
        if given:
            raise SystemExit(f"{', '.join(given)} given without --judge-filter; add --judge-filter to judge the pairs.")
        return None
    missing = [flag for flag, value in (("--judge-base-url", args.judge_base_url), ("--judge-model", args.judge_model))
               if not value]
    if missing:
        raise SystemExit(f"--judge-filter needs {' and '.join(missing)} (an OpenAI-compatible judge server and model).")
    from soda_plugin.client import client_settings, warn_if_key_missing
    from soda_plugin.client.batch_options import batch_options
    from soda_plugin.pairs import JudgeFilterConfig
    from soda_plugin.verdict import JudgeSettings, load_template

    client = client_settings(args, base_url=args.judge_base_url, model=args.judge_model, prefix="judge-")
    warn_if_key_missing(client, "the judge", "--judge-api-key-env")
    if (args.judge_price_in is None) != (args.judge_price_out is None):
        raise SystemExit("give both --judge-price-in and --judge-price-out (online prices), or neither.")
    prices = (args.judge_price_in, args.judge_price_out) if args.judge_price_in is not None else None
    try:
        return JudgeFilterConfig(
            client=client,
            judge=JudgeSettings(args.judge_model, load_template(args.judge_template),
                                temperature=args.judge_temperature, verdict_max_tokens=args.judge_verdict_max_tokens,
                                parse_attempts=args.judge_parse_attempts),
            action=args.judge_filter_action, margin=args.judge_filter_margin, unjudged=args.judge_filter_unjudged,
            cache_dir=args.judge_cache_dir, progress=not args.no_progress, batch=batch_options(args),
            prices=prices)
    except ValueError as error:
        raise SystemExit(str(error).replace("`judge_filter_margin`", "`--judge-filter-margin`")) from None


def _load_tokenizer(args: argparse.Namespace):
    """(tokenizer, sequence_len, student_name) from --recipe or --tokenizer/--sequence-len."""
    if not (args.recipe or args.tokenizer or args.sequence_len):
        return None, None, args.student_name
    from transformers import AutoTokenizer

    if args.recipe:
        import yaml

        with open(args.recipe, encoding="utf-8") as handle:
            cfg = yaml.safe_load(handle) or {}
        for key in ("base_model", "sequence_len"):
            if not cfg.get(key):
                raise SystemExit(f"recipe `{args.recipe}` has no `{key}`; set it or pass --tokenizer/--sequence-len.")
        tokenizer = AutoTokenizer.from_pretrained(cfg.get("tokenizer_config") or cfg["base_model"])
        if cfg.get("chat_template"):
            from axolotl.utils.chat_templates import get_chat_template_from_config

            tokenizer.chat_template = get_chat_template_from_config(cfg, tokenizer=tokenizer)
        return tokenizer, int(args.sequence_len or cfg["sequence_len"]), args.student_name or cfg["base_model"]
    if not (args.tokenizer and args.sequence_len):
        raise SystemExit("the length check needs both --tokenizer and --sequence-len (or --recipe).")
    return AutoTokenizer.from_pretrained(args.tokenizer), args.sequence_len, args.student_name


def main(args: argparse.Namespace) -> int:
    from soda_plugin.client.batch_core import EXIT_BATCHES_OPEN, BatchWaitError
    from soda_plugin.client.hub_token import hub_token
    from soda_plugin.pairs import SnapshotInput, TeacherFields, build_pairs, push_to_hub

    if args.push_to_hub:
        try:  # before the build: a missing token should not cost a build
            hub_token()
        except PermissionError as err:
            raise SystemExit(f"soda pairs: {err}") from None
    judge_filter = _judge_filter(args)
    tokenizer, sequence_len, student_name = _load_tokenizer(args)
    fields = TeacherFields(messages=args.field_messages, teacher=args.field_teacher,
                           prompt_id=args.field_prompt_id, finish_reason=args.field_finish_reason)
    try:
        report = build_pairs(
            args.teacher, [SnapshotInput.parse(s) for s in args.snapshot], args.out, fields=fields,
            truncated=args.truncated, first_sample_only=args.first_sample_only, tokenizer=tokenizer,
            sequence_len=sequence_len, teacher_name=args.teacher_name, student_name=student_name,
            overwrite=args.overwrite, judge_filter=judge_filter,
        )
    except BatchWaitError as error:  # nothing written; the verdicts received are cached, the batches journaled
        print(f"soda pairs: judge filter (batch): {error}", flush=True)
        return EXIT_BATCHES_OPEN
    print(report.table())
    if report.judge_filter:
        calls, usage = report.judge_filter["calls"], report.judge_filter["usage"]
        print(f"judge verdicts: {calls['verdicts_new']} new, {calls['verdicts_cached']} cached, "
              f"{calls['verdicts_unparsable']} unparsable, failed {calls['verdicts_failed'] or 0}"
              + (f"; cost {usage['cost']:.4f}" if "cost" in usage else ""))
        if "batch" in usage:
            batch = usage["batch"]
            print(f"judge batches: {batch['batches_created']} created, {batch['batches_resumed']} resumed; items "
                  f"submitted {batch['items_submitted']} (resubmitted {batch['items_resubmitted']})")
    print(f"kept by rejected_source: {report.kept_by_source}")
    print(f"wrote {args.out}/data ({len(report.files)} files), README.md, build_report.json")
    if args.push_to_hub:
        print(push_to_hub(args.out, args.push_to_hub, private=args.private))
    return 0
