"""Publish a trained student to the Hub: model files, a model card and the recipe bundle.

    # show exactly which files and which card would be pushed (no token needed)
    soda share --model-dir outputs/qwen7b_soda --recipe recipes/qwen7b_soda.yml \\
        --repo me/qwen2.5-7b-soda --teacher gpt-5-chat --scores evals/scores/results.json --model-name soda --dry-run

    # push (the token is read from $HF_TOKEN only)
    HF_TOKEN=... soda share --model-dir outputs/qwen7b_soda --recipe recipes/qwen7b_soda.yml \\
        --repo me/qwen2.5-7b-soda --teacher gpt-5-chat

The recipe lands in `recipe/` with its DeepSpeed JSON beside it, so
`axolotl train recipe/<name>.yml` works from a downloaded copy.

The card states only what is recorded: `base_model` is a Hub id (`--base-model-id`, the
recipe's, or what the local base folder's config.json records; else left out), the judge
table is this model (`--model-name`) beside Base and SeqKD on the prompts all three were
scored on (from `prompt_scores.jsonl` beside `--scores`), the install line names the
repository (`--source-url`, or pyproject.toml's [project.urls]) or the wheel, and the
launch command is the recipe header's own.

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
    parser.add_argument("--student", help="student named on the card (default: the base model's Hub id, else the "
                        "recipe's base_model)")
    parser.add_argument("--base-model-id", help="the base model's Hub id for the card's `base_model` metadata (default: "
                        "the recipe's base_model if it is one, else what the local base folder's config.json records; "
                        "the key is left out when nothing does, never a local path)")
    parser.add_argument("--scores", help="judge results JSON (results.json of `soda judge score`) to show on the "
                        "card; its prompt_scores.jsonl beside it gives the paired comparison")
    parser.add_argument("--model-name", help="this model's name in the judge results (default: the one model that is "
                        "neither `base`/`q0` nor `seqkd*`); the card shows it beside Base and SeqKD only")
    parser.add_argument("--base-name", help="the Base (q0) model's name in the judge results (default: base or q0)")
    parser.add_argument("--seqkd-name", help="the SeqKD model's name in the judge results (default: the seqkd* model "
                        "of this model's seed, e.g. seqkd_s1 for soda_s1, else the only one)")
    parser.add_argument("--source-url", help="soda's repository URL for the card's install line (`pip install "
                        "\"git+URL\"`; default: pyproject.toml's [project.urls], else the wheel file)")
    parser.add_argument("--dataset", action="append", default=[], help="Hub dataset id for the card; repeatable")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--dry-run", action="store_true", help="print the files and the card; push nothing")
    return parser


def main(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from soda_plugin.client.hub_token import hub_token
    from soda_plugin.share import model_card, plan_bundle, publish

    if not args.dry_run:
        try:  # before the bundle and the card are built
            hub_token()
        except PermissionError as err:
            raise SystemExit(f"soda share: {err}") from None

    import sys

    from soda_plugin.share.card import source_url
    from soda_plugin.share.scores import read_prompt_scores

    files = plan_bundle(args.model_dir, args.recipe)
    scores = json.loads(Path(args.scores).read_text()) if args.scores else None
    prompt_scores = read_prompt_scores(Path(args.scores).parent / "prompt_scores.jsonl") if args.scores else None
    try:
        card = model_card(repo_id=args.repo, recipe_path=args.recipe, teacher=args.teacher, student=args.student,
                          scores=scores, datasets=args.dataset, prompt_scores=prompt_scores,
                          model_name=args.model_name, base_name=args.base_name, seqkd_name=args.seqkd_name,
                          base_model_id=args.base_model_id, model_dir=args.model_dir, source_repo_url=args.source_url)
    except ValueError as err:
        raise SystemExit(f"soda share: {err}") from None
    if source_url(args.source_url) is None:
        print("soda share: no repository URL known (pyproject.toml has no [project.urls]); the card's install line "
              "names the wheel file. Pass --source-url to name the repository.", file=sys.stderr)
    print(publish(args.repo, files, card, private=args.private, dry_run=args.dry_run))
