"""Build SODA preference pairs: teacher answers (chosen) x student snapshot answers (rejected).

    # q0 negatives, no length check
    python tools/build_pairs.py --teacher data/teacher.jsonl --snapshot outputs/snapshots/q0 \
        --out outputs/pairs/q0

    # length check with the recipe's student and sequence_len, then publish
    python tools/build_pairs.py --teacher data/teacher.parquet --snapshot outputs/snapshots/q0 \
        --recipe recipes/smollm2_cpu_soda.yml --out outputs/pairs/q0 --push-to-hub me/soda-pairs

    # ablation: cross-student and degraded negatives (degraded answers are truncated by design)
    python tools/build_pairs.py --teacher data/teacher.jsonl \
        --snapshot outputs/snapshots/other=cross:Qwen2.5-7B --snapshot outputs/snapshots/degraded \
        --truncated teacher_only --out outputs/pairs/ablation

The output folder reads in a recipe as `path: <out>/data`, `ds_type: parquet`, `type: soda`.
`--push-to-hub` reads the token from `HF_TOKEN` only.
"""

import argparse

from soda_plugin.cli import stage_parser


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
    card = parser.add_argument_group("card and upload")
    card.add_argument("--teacher-name", help="teacher model shown on the dataset card")
    card.add_argument("--student-name", help="student model shown on the card (default: snapshot manifest)")
    card.add_argument("--push-to-hub", metavar="REPO", help="upload the folder as this Hub dataset")
    card.add_argument("--private", action="store_true", help="create the Hub dataset as private")
    return parser


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


def main(args: argparse.Namespace) -> None:
    from soda_plugin.pairs import SnapshotInput, TeacherFields, build_pairs, push_to_hub

    tokenizer, sequence_len, student_name = _load_tokenizer(args)
    fields = TeacherFields(messages=args.field_messages, teacher=args.field_teacher,
                           prompt_id=args.field_prompt_id, finish_reason=args.field_finish_reason)
    report = build_pairs(
        args.teacher, [SnapshotInput.parse(s) for s in args.snapshot], args.out, fields=fields,
        truncated=args.truncated, first_sample_only=args.first_sample_only, tokenizer=tokenizer,
        sequence_len=sequence_len, teacher_name=args.teacher_name, student_name=student_name,
        overwrite=args.overwrite,
    )
    print(report.table())
    print(f"kept by rejected_source: {report.kept_by_source}")
    print(f"wrote {args.out}/data ({len(report.files)} files), README.md, build_report.json")
    if args.push_to_hub:
        print(push_to_hub(args.out, args.push_to_hub, private=args.private))
