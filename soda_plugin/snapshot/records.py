"""The row schema of a q0 snapshot (one row per prompt and sample) and its run manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SNAPSHOT_SCHEMA_VERSION = 1
# How sampled answers are seeded (`engine.prompt_seed`); recorded so that a folder sampled
# under another scheme is not resumed into a mix of the two. Greedy runs record none.
SEEDING = "per-prompt-sha256-v1"


@dataclass(frozen=True)
class SnapshotRow:
    prompt_id: str
    sample_index: int  # 0..n-1 when several answers are sampled per prompt
    prompt: list[dict[str, str]]
    response: str
    finish_reason: str  # "stop" or "length" (truncated)
    prompt_tokens: int
    response_tokens: int
    source: str  # which model/run produced the answer, e.g. "q0:HuggingFaceTB/SmolLM2-135M-Instruct"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SNAPSHOT_COLUMNS = tuple(SnapshotRow.__dataclass_fields__)
