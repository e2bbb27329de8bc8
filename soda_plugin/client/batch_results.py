"""One line of a batch's output or error file -> the prompt it answers and its result, or
the failure kind it counts as. The kinds are the online client's (`rate_limit`,
`server_error`, `bad_request`, `malformed`) plus the batch's own (`expired`: the batch
ended before the item ran; `missing`: a finished batch has no line for it;
`batch_failed`: the whole batch failed). `bad_request` is not resubmitted (the same
request would be refused again), every other kind is, within `--batch-rounds`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .core import ChatResult, MalformedResponseError
from .core import _parse

EXPIRED = "expired"
MISSING = "missing"
BATCH_FAILED = "batch_failed"
BAD_REQUEST = "bad_request"
MALFORMED = "malformed"
NOT_RESUBMITTED = {BAD_REQUEST}

# Per-item error codes of the batch API (`error.code` in the error file).
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"([^"\\]+)"')
_CODE_KINDS = {"batch_expired": EXPIRED, "rate_limit_exceeded": "rate_limit", "invalid_request": BAD_REQUEST}


@dataclass(frozen=True)
class ItemResult:
    prompt_id: str | None  # None: the line does not say which prompt it answers
    result: ChatResult | None = None
    kind: str | None = None  # the failure kind when `result` is None
    detail: str = ""
    unreadable: bool = False  # not a JSON result line (counted as a malformed line)


def _status_kind(status: int) -> str:
    if status == 429:
        return "rate_limit"
    if status >= 500:
        return "server_error"
    if status in (400, 413, 422):
        return BAD_REQUEST
    return f"http_{status}"


def parse_item(line: bytes, expected: set[str]) -> ItemResult:
    """Parse one result line of a batch that carried the prompt ids `expected`."""
    try:
        item = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        # A cut line may still name its prompt: that prompt is the one retried as malformed.
        found = _CUSTOM_ID.search(line)
        named = found.group(1).decode("utf-8", "replace") if found else None
        return ItemResult(named if named in expected else None, kind=MALFORMED, detail=f"not a JSON line: {error}",
                          unreadable=True)
    pid = item.get("custom_id") if isinstance(item, dict) else None
    if not isinstance(pid, str) or pid not in expected:
        return ItemResult(None, kind=MALFORMED, detail=f"`custom_id` {pid!r} is not a prompt of this batch")
    error = item.get("error")
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        return ItemResult(pid, kind=_CODE_KINDS.get(code, "server_error"), detail=f"{code}: {str(message)[:200]}")
    response = item.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    if type(status) is not int:
        return ItemResult(pid, kind=MALFORMED, detail="no `response.status_code`")
    if status != 200:
        return ItemResult(pid, kind=_status_kind(status), detail=f"HTTP {status}: {str(response.get('body'))[:200]}")
    try:
        return ItemResult(pid, result=_parse(json.dumps(response.get("body")).encode()))
    except (MalformedResponseError, ValueError, AttributeError) as error:
        return ItemResult(pid, kind=MALFORMED, detail=f"{type(error).__name__}: {str(error)[:200]}")


__all__ = ["BAD_REQUEST", "BATCH_FAILED", "EXPIRED", "ItemResult", "MALFORMED", "MISSING", "NOT_RESUBMITTED",
           "parse_item"]
