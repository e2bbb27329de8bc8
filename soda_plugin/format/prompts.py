"""Where the snapshot's prompts come from: a recipe's `type: soda` datasets, or files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from .dataset_path import is_missing_local_path
from .fileio import iter_jsonl
from .rows import BadRowError, SodaFields, parse_messages


def _load_rows(path: str, ds_type: str | None = None, split: str = "train") -> Iterable[Mapping[str, Any]]:
    local = Path(path)
    if local.is_file() and local.suffix in (".jsonl", ".json") and ds_type in (None, "json"):
        # Read directly: the vLLM environment has no `datasets` (its pins clash).
        if local.suffix == ".jsonl":
            return iter_jsonl(local)
        data = json.loads(local.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else [data]
    from datasets import load_dataset

    if local.is_file():
        kind = ds_type or {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(local.suffix, "json")
        return load_dataset(kind, data_files=str(local), split="train")
    if local.is_dir():
        return load_dataset(str(local), split=split)
    return load_dataset(path, split=split)


def prompts_from_file(path: str, field: str = "content", ds_type: str | None = None) -> list[list[dict[str, str]]]:
    """Prompt messages from a jsonl/json/parquet file, a dataset folder or a Hub id.

    Raises:
        BadRowError: naming the row when its messages are malformed; a snapshot of a
            malformed prompt would only produce an unusable pair later.
    """
    prompts = []
    for index, row in enumerate(_load_rows(path, ds_type)):
        prompts.append(list(parse_messages(row, field, index)))
    return prompts


def _missing_dataset_error(path: str, soda: Mapping[str, Any]) -> FileNotFoundError:
    teacher = [entry.get("path") for entry in ((soda.get("warmup") or {}).get("datasets") or [])
               if isinstance(entry, Mapping) and entry.get("path")]
    example = f"`--prompts {teacher[0]}` (this recipe's `soda.warmup.datasets`)" if teacher else \
        "`--prompts data/teacher/train.jsonl` (the teacher file)"
    return FileNotFoundError(
        f"the recipe's `type: soda` dataset `{path}` does not exist yet: in a SODA recipe it holds "
        "the pairs that `soda pairs` writes from this snapshot. Pass the prompts with "
        f"`--prompts`, e.g. {example}."
    )


def prompts_from_recipe(cfg: Mapping[str, Any]) -> list[list[dict[str, str]]]:
    """The prompts of every `type: soda` dataset of an Axolotl recipe (raw YAML dict).

    Raises:
        FileNotFoundError: a local dataset path does not exist (a SODA recipe's pairs,
            before the snapshot that builds them); the message names `--prompts`.
    """
    soda = cfg.get("soda") or {}
    prompts: list[list[dict[str, str]]] = []
    for entry in cfg.get("datasets") or []:
        if entry.get("type") not in ("soda", "soda_plugin.soda"):
            continue
        if is_missing_local_path(str(entry["path"])):
            raise _missing_dataset_error(str(entry["path"]), soda)
        fields = SodaFields.from_dataset_config(entry, soda)
        prompts.extend(prompts_from_file(entry["path"], fields.messages, entry.get("ds_type")))
    if not prompts:
        raise ValueError("the recipe has no `type: soda` dataset to take snapshot prompts from.")
    return prompts


__all__ = ["BadRowError", "prompts_from_file", "prompts_from_recipe"]
