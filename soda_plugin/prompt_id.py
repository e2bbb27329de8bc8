"""Stable prompt identity shared by the snapshot, the teacher tool and the pair builder."""

from __future__ import annotations

import hashlib
import json
from typing import Mapping, Sequence


def normalize_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Roles lower-cased, content with surrounding whitespace stripped and runs of
    whitespace collapsed; other message keys ignored."""
    return [
        {"role": str(m["role"]).strip().lower(), "content": " ".join(str(m["content"]).split())}
        for m in messages
    ]


def prompt_id(messages: Sequence[Mapping[str, str]]) -> str:
    """16 hex chars of SHA-256 over the normalized messages; equal prompts, equal ids."""
    blob = json.dumps(normalize_messages(messages), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
