"""Keep evaluation prompts out of the training data (`--exclude-eval NAME[=PATH]`).

A training prompt is dropped when it matches a prompt of a named evaluation set either
exactly (same `prompt_id`: same messages after whitespace normalization) or after
`evalsets.normalize_prompt_text` of its user turns (spacing and case ignored, system
prompt ignored). Drops are counted per benchmark and per kind of match.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from ..evalsets import get_spec, load_eval_set, normalize_prompt_text, prompt_text
from ..log import get_logger

LOG = get_logger(__name__)

EXACT = "exact"
NORMALIZED = "normalized"


@dataclass(frozen=True)
class EvalSetRef:
    name: str
    path: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "EvalSetRef":
        """`NAME` (from the Hub) or `NAME=PATH` (a local file), as given on the command line."""
        name, sep, path = spec.partition("=")
        if sep and not path:
            raise ValueError(f"`--exclude-eval {spec}` has an empty path; write `NAME=PATH` or just `NAME`.")
        get_spec(name, path or None)  # fails early, listing the known names
        return cls(name, path or None)


@dataclass
class EvalExclusion:
    """The prompt ids and normalized texts of the evaluation sets, and what matched them."""

    by_id: dict[str, str] = field(default_factory=dict)  # prompt_id -> benchmark
    by_text: dict[str, str] = field(default_factory=dict)  # normalized user text -> benchmark
    sizes: dict[str, int] = field(default_factory=dict)
    excluded: Counter = field(default_factory=Counter)  # (benchmark, kind) -> prompts dropped

    @classmethod
    def load(cls, refs: Sequence[EvalSetRef]) -> "EvalExclusion":
        exclusion = cls()
        for ref in refs:
            prompts = load_eval_set(ref.name, ref.path)
            exclusion.sizes[ref.name] = len(prompts)
            for prompt in prompts:
                exclusion.by_id.setdefault(prompt.prompt_id, ref.name)
                exclusion.by_text.setdefault(normalize_prompt_text(prompt_text(prompt.messages)), ref.name)
        return exclusion

    def match(self, pid: str, messages: Sequence[dict]) -> tuple[str, str] | None:
        """`(benchmark, kind)` of the first match, else None; a match is counted."""
        if pid in self.by_id:
            found = (self.by_id[pid], EXACT)
        else:
            benchmark = self.by_text.get(normalize_prompt_text(prompt_text(messages))) if self.by_text else None
            found = (benchmark, NORMALIZED) if benchmark else None
        if found:
            self.excluded[found] += 1
        return found

    def report(self) -> str:
        if not self.sizes:
            return "no evaluation sets excluded"
        parts = [f"{name} ({size} prompts): {self.excluded[(name, EXACT)]} exact + "
                 f"{self.excluded[(name, NORMALIZED)]} normalized matches dropped" for name, size in self.sizes.items()]
        return "; ".join(parts)

    def total(self) -> int:
        return sum(self.excluded.values())
