"""The recipe-key tables of docs/recipe_keys.md, generated from the pydantic schemas.

Each table lists every key of one recipe block (`soda:`, `gad:`) with its type, default
and description, read from the schema itself: `model_fields`, their annotations and their
`description` (`Field(description=...)` or `json_schema_extra={"description": ...}`).
Nested blocks are walked through their annotations, never through the module they live
in, and appear as dotted keys (`warmup.learning_rate`, `snapshot.backend`).

    python -m soda_plugin.train.config_table                              # print the `soda:` table
    python -m soda_plugin.train.config_table --block gad                  # print the `gad:` table
    python -m soda_plugin.train.config_table --write docs/recipe_keys.md  # regenerate every table in the file
    python -m soda_plugin.train.config_table --check docs/recipe_keys.md  # exit 1 when the file is stale

A file holds a table between `<!-- <block>-table:start -->` and `<!-- <block>-table:end -->`.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# block name -> "module:Class" of its schema. Resolved by name on use, so that this module
# does not import the stages that come after training (the GAD plugin imports `train.args`).
BLOCKS: dict[str, str] = {
    "soda": "soda_plugin.train.args:SodaConfig",
    "gad": "soda_plugin.gad.args:GADConfig",
}


def block_model(block: str) -> type[BaseModel]:
    """The schema class of a recipe block (`soda`, `gad`)."""
    module, _, name = BLOCKS[block].partition(":")
    return getattr(importlib.import_module(module), name)


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    inner = _strip_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _choices(values: list[Any]) -> str:
    return " \\| ".join(f"`{_yaml(v)}`" for v in values)


def _type_name(annotation: Any) -> str:
    inner = _strip_optional(annotation)
    origin = typing.get_origin(inner)
    if _nested_model(inner) is not None:
        return "block"
    if isinstance(inner, type) and issubclass(inner, Enum):
        return _choices([member.value for member in inner])
    if origin is Literal:
        return _choices(list(typing.get_args(inner)))
    if origin in (list, tuple, set):
        (item,) = typing.get_args(inner)[:1] or (Any,)
        return "list of blocks" if _nested_model(item) is not None else "list"
    if origin is dict:
        return "mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(inner) if a is not type(None))
    return getattr(inner, "__name__", str(inner))


def _yaml(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "`[]`" if value == [] else ("defaults below" if isinstance(value, BaseModel) else f"`{value}`")
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return "unset"
    return f"`{_yaml(field.default)}`"


def _description(model: type[BaseModel], name: str, field: Any) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    text = field.description or extra.get("description")
    if not text:
        raise ValueError(
            f"`{model.__name__}.{name}` has no description: give it `Field(json_schema_extra="
            "{\"description\": ...})` (one line, for users) so the recipe-key table can show it.")
    return " ".join(text.split()).replace("|", "\\|")


def config_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every field, nested blocks as dotted keys, in order."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        rows.append((f"`{key}`", _type_name(field.annotation), _default(field), _description(model, name, field)))
        nested = _nested_model(field.annotation)
        if nested is not None:
            rows.extend(config_rows(nested, f"{key}."))
    return rows


def config_table_markdown(model: type[BaseModel] | None = None) -> str:
    """The markdown table of a recipe block's keys; default: the `soda:` block (`SodaConfig`)."""
    model = model or block_model("soda")
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in config_rows(model)]
    return "\n".join(lines) + "\n"


def _markers(block: str) -> tuple[str, str]:
    return f"<!-- {block}-table:start -->", f"<!-- {block}-table:end -->"


def replace_tables(text: str, tables: dict[str, str]) -> str:
    """`text` with every marked table replaced by the given one; a block without markers is skipped."""
    for block, table in tables.items():
        start, end = _markers(block)
        pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _: f"{start}\n{table}{end}", text)
    return text


def marked_blocks(text: str) -> list[str]:
    """The blocks whose table markers `text` holds."""
    return [block for block in BLOCKS if all(marker in text for marker in _markers(block))]


def current_tables(text: str) -> dict[str, str]:
    """The generated table of every block marked in `text`."""
    return {block: config_table_markdown(block_model(block)) for block in marked_blocks(text)}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m soda_plugin.train.config_table", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--block", choices=list(BLOCKS), default="soda", help="the table to print")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="FILE", help="regenerate every marked table in FILE")
    action.add_argument("--check", type=Path, metavar="FILE", help="exit 1 when FILE's tables differ from the schema")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    path = args.write or args.check
    if path is None:
        sys.stdout.write(config_table_markdown(block_model(args.block)))
        return 0
    text = path.read_text(encoding="utf-8")
    if not marked_blocks(text):
        print(f"{path}: no `<!-- <block>-table:start -->` markers (blocks: {', '.join(BLOCKS)})", file=sys.stderr)
        return 2
    fresh = replace_tables(text, current_tables(text))
    if args.check:
        if fresh != text:
            print(f"{path}: the recipe-key tables differ from the schema; run "
                  f"`python -m soda_plugin.train.config_table --write {path}`", file=sys.stderr)
            return 1
        return 0
    if fresh != text:
        path.write_text(fresh, encoding="utf-8")
    print(f"{path}: {', '.join(marked_blocks(text))} table(s) {'rewritten' if fresh != text else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
