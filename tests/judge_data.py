"""Evaluation files and ready-made student answers for the judge tests."""

from __future__ import annotations

import json

from soda_plugin.judge.answers import PromptFormat, answer_settings, student_messages
from soda_plugin.snapshot.engine import Completion, EngineInfo, FinishReason, SnapshotEngine
from soda_plugin.snapshot.runner import run_snapshot


class FixedEngine(SnapshotEngine):
    """Answers each prompt (by its last message) with a given text: the student under test."""

    backend = "fixed"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def info(self):
        return EngineInfo("fixed", "fixed-student", "1")

    def generate(self, prompts, settings, prompt_ids=None):
        return [[Completion(self.answers[p[-1]["content"]], FinishReason.STOP, 3, 5)] for p in prompts]


def write_eval_file(path, prompts):
    """A local evaluation file in the `messages` form `soda_plugin.evalsets` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": p}]}) + "\n" for p in prompts))
    return path


def write_answers(folder, answers: dict[str, str], benchmark: str = "vicuna",
                  prompt_format: PromptFormat = PromptFormat.CHAT):
    """`folder/<benchmark>` laid out exactly as `tools/judge.py answer` writes it (with
    `prompt_format`, the student was asked each prompt in that format)."""
    prompts = [student_messages([{"role": "user", "content": p}], prompt_format) for p in answers]
    engine = FixedEngine({asked[-1]["content"]: answers[p] for asked, p in zip(prompts, answers)})
    run_snapshot(engine, prompts, folder / benchmark, answer_settings(),
                 source=f"{prompt_format.source_prefix}fixed", progress=False)
    return folder
