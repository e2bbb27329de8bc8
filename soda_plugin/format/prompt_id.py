"""Stable prompt identity shared by the snapshot, the teacher tool and the pair builder."""

from __future__ import annotations

import hashlib
import json
from typing import Mapping, Sequence


def normalize_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Roles lower-cased, content with Windows line ends made Unix ones and surrounding
    whitespace stripped; other message keys ignored.

    Whitespace inside the content is kept: code prompts that differ only in indentation
    are different prompts. (Spacing-insensitive matching, for keeping evaluation prompts
    out of training, is `evalsets.normalize_prompt_text`.)
    """
    return [
        {"role": str(m["role"]).strip().lower(), "content": str(m["content"]).replace("\r\n", "\n").strip()}
        for m in messages
    ]


def prompt_id(messages: Sequence[Mapping[str, str]]) -> str:
    """16 hex chars of SHA-256 over the normalized messages; equal prompts, equal ids."""
    blob = json.dumps(normalize_messages(messages), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
