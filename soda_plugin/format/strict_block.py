"""The base of every recipe block soda validates (`soda:`, `soda.warmup`, `soda.snapshot`,
`gad:` ...): unknown keys are refused with the closest valid one, never dropped."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def reject_unknown_keys(model: type[BaseModel], data: Any, where: str) -> None:
    if not isinstance(data, dict):
        return
    known = set(model.model_fields)
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), sorted(known), n=1)
        hint = f"did you mean `{where}.{close[0]}`? " if close else ""
        raise ValueError(
            f"unknown key `{where}.{key}`: {hint}valid keys under `{where}` are "
            f"{', '.join(sorted(known))}."
        )


class StrictBlock(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)
    _where = "soda"

    @model_validator(mode="before")
    @classmethod
    def check_known_keys(cls, data: Any) -> Any:
        reject_unknown_keys(cls, data, cls._where.default)  # type: ignore[attr-defined]
        return data
