"""Which model a miniature result belongs to: a method and, for a trained model, its seed.

    >>> RunId("soda-sibling", 0).label, RunId("soda-sibling", 0).folder
    ('soda-sibling/s0', 'soda-sibling_s0')
    >>> BASE.label, BASE.folder
    ('base', 'base')
    >>> RunId.parse("qw/s1") == RunId.parse("qw_s1") == RunId("qw", 1)
    True

`label` is how the report, `summary.json` and `mechanism.json` name the model; `folder` is its
answers folder and the name the judge scores it under (`prompt_scores.jsonl`). `parse` reads
either back from those files; inside the pipeline runs are `RunId`s, never strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEEDED = re.compile(r"(?P<method>[a-z][a-z0-9-]*)[/_]s(?P<seed>\d+)")
_METHOD = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class RunId:
    """One evaluated model: `method` (a report group: base, qw, seqkd, soda, soda-sibling, ...)
    and `seed` (None for Base, which is untrained and deterministic)."""

    method: str
    seed: int | None = None

    def __post_init__(self) -> None:
        if not _METHOD.fullmatch(self.method):
            raise ValueError(f"run method `{self.method}`: lower-case letters, digits and `-` only "
                             f"(`/` and `_` separate the seed in its label and folder)")

    @property
    def label(self) -> str:
        """`soda/s0`; `base` for an unseeded run."""
        return self.method if self.seed is None else f"{self.method}/s{self.seed}"

    @property
    def folder(self) -> str:
        """`soda_s0`; `base` for an unseeded run."""
        return self.method if self.seed is None else f"{self.method}_s{self.seed}"

    def on_seed(self, method: str) -> RunId:
        """The run of `method` on this run's seed (SODA's q_w: `RunId("soda", 1).on_seed("qw")`)."""
        return RunId(method, self.seed)

    @classmethod
    def parse(cls, text: str) -> RunId:
        """A label (`soda/s0`) or a folder name (`soda_s0`, `base`) read back from a file."""
        seeded = _SEEDED.fullmatch(text)
        if seeded:
            return cls(seeded["method"], int(seeded["seed"]))
        if _METHOD.fullmatch(text):
            return cls(text)
        raise ValueError(f"`{text}` is not a miniature run name: expected `<method>/s<seed>`, "
                         f"`<method>_s<seed>` or an unseeded method such as `base`")

    def __str__(self) -> str:
        return self.label


BASE = RunId("base")
