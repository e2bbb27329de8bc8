"""Publish a trained student to the Hub: model files, a model card and the recipe bundle.

    # show exactly which files and which card would be pushed (no token needed)
    python tools/share.py --model-dir outputs/qwen7b_soda --recipe recipes/qwen7b_soda.yml \\
        --repo me/qwen2.5-7b-soda --teacher gpt-5-chat --scores evals/scores/results.json --dry-run

    # push (the token is read from $HF_TOKEN only)
    HF_TOKEN=... python tools/share.py --model-dir outputs/qwen7b_soda --recipe recipes/qwen7b_soda.yml \\
        --repo me/qwen2.5-7b-soda --teacher gpt-5-chat

The recipe lands in `recipe/` with its DeepSpeed JSON beside it, so
`axolotl train recipe/<name>.yml` works from a downloaded copy.

LoRA recipes (`adapter: lora`): pass `--model-dir outputs/<run>/merged`, the full model
soda merges when DPO finishes. The adapter in `outputs/<run>` sits on the local
`outputs/<run>/warmup/merged`, so it is refused.
"""

import argparse

from soda_plugin.cli import stage_parser


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    parser.add_argument("--model-dir", required=True, help="the trained model folder (the recipe's output_dir; "
                        "<output_dir>/merged for a LoRA recipe)")
    parser.add_argument("--recipe", required=True, help="the recipe YAML it was trained with")
    parser.add_argument("--repo", required=True, help="Hub model repo, e.g. me/qwen2.5-7b-soda")
    parser.add_argument("--teacher", required=True, help="teacher model named on the card")
    parser.add_argument("--student", help="student named on the card (default: the recipe's base_model)")
    parser.add_argument("--scores", help="judge results JSON (tools/judge.py score) to show on the card")
    parser.add_argument("--dataset", action="append", default=[], help="Hub dataset id for the card; repeatable")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--dry-run", action="store_true", help="print the files and the card; push nothing")
    return parser


def main(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from soda_plugin.share import model_card, plan_bundle, publish

    files = plan_bundle(args.model_dir, args.recipe)
    scores = json.loads(Path(args.scores).read_text()) if args.scores else None
    card = model_card(repo_id=args.repo, recipe_path=args.recipe, teacher=args.teacher, student=args.student,
                      scores=scores, datasets=args.dataset)
    print(publish(args.repo, files, card, private=args.private, dry_run=args.dry_run))
