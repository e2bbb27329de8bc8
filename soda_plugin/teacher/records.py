"""One output row: exactly the teacher schema the pair builder reads (`pairs.sources`).

    {"prompt_id": "3deb4c8a71e518a6",
     "content": [{"role": "user", "content": "..."}],   # the prompt as in the input data
     "teacher_response": "...", "finish_reason": "stop", "flags": [],
     "prompt_tokens": 12, "completion_tokens": 80, "teacher_model": "gpt-5-chat"}

The prompt is stored as read (without `--system-prompt`), so `prompt_id` is the one the
q0 snapshot computes for the same prompt and the builder joins the two.
"""

from __future__ import annotations

from typing import Any

from ..client import ChatResult
from ..format.rows import TeacherFields
from ..format.flags import answer_flags

PROMPT_TOKENS = "prompt_tokens"
COMPLETION_TOKENS = "completion_tokens"
TEACHER_MODEL = "teacher_model"


def teacher_row(fields: TeacherFields, pid: str, messages: list[dict[str, str]], result: ChatResult,
                model: str) -> dict[str, Any]:
    return {
        fields.prompt_id: pid,
        fields.messages: messages,
        fields.teacher: result.text,
        fields.finish_reason: result.finish_reason,
        fields.flags: answer_flags(result.text, result.finish_reason),
        PROMPT_TOKENS: result.prompt_tokens,
        COMPLETION_TOKENS: result.completion_tokens,
        TEACHER_MODEL: model,
    }
