"""Copy soda's recipes and their DeepSpeed JSON into a folder, as `axolotl fetch examples` does.

    soda fetch recipes              # into ./recipes
    soda fetch recipes ./r          # into ./r, then e.g.: axolotl train r/qwen7b_soda.yml

The copies come from the installed package (a wheel carries them) or from the clone. A
recipe names its DeepSpeed config relative to its own folder (`deepspeed: deepspeed/zero2.json`),
so `deepspeed/` is copied beside the recipes and a recipe loaded from the copy finds it from
any working directory. Files already there and identical are skipped; a file that differs
(one you edited) is kept and reported, unless --overwrite.
"""

import argparse

from soda_plugin.cli import stage_parser


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = stage_parser(prog, __doc__)
    parser.add_argument("what", choices=["recipes"], help="what to copy: the recipes (*.yml) and deepspeed/*.json")
    parser.add_argument("dest", nargs="?", default="recipes", metavar="DIR", help="destination folder (default: ./recipes)")
    parser.add_argument("--overwrite", action="store_true", help="replace files that differ from the shipped ones")
    return parser


def fetch_recipes(dest, *, overwrite: bool = False) -> dict[str, list[str]]:
    """Copy every shipped recipe file into `dest`; {"new"|"updated"|"unchanged"|"kept": [relative paths]}."""
    import shutil
    from pathlib import Path

    from soda_plugin.recipe_files import shipped_recipe_files, shipped_recipes_dir

    source, dest = shipped_recipes_dir(), Path(dest)
    files = shipped_recipe_files()
    if not files:
        raise SystemExit(f"soda fetch: no recipes found in {source}")
    done: dict[str, list[str]] = {"new": [], "updated": [], "unchanged": [], "kept": []}
    for relative in files:
        target = dest / relative
        if target.exists():
            if target.read_bytes() == (source / relative).read_bytes():
                done["unchanged"].append(str(relative))
                continue
            if not overwrite:
                done["kept"].append(str(relative))
                continue
            status = "updated"
        else:
            status = "new"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target)
        done[status].append(str(relative))
    return done


def main(args: argparse.Namespace) -> int:
    done = fetch_recipes(args.dest, overwrite=args.overwrite)
    for name in done["kept"]:
        print(f"kept {args.dest}/{name}: it differs from the shipped one (--overwrite replaces it)")
    print(f"{args.dest}: {len(done['new'])} new, {len(done['updated'])} updated, {len(done['unchanged'])} unchanged, "
          f"{len(done['kept'])} kept")
    return 0
