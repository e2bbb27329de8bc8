"""Check that the teacher's answer really beats q0's: a judge sees each candidate pair in
both orders, and pairs the teacher does not win are dropped or flagged.

SODA assumes teacher > q0 on every pair; public preference sets built by a strong model
turned out to hold many pairs whose "chosen" was not better. The judge is any
OpenAI-compatible server, asked with soda's own judge template (`judge/template.py`).

Rule: the teacher's score is the paper's S/(S+R) arithmetic (`verdict.scoring.prompt_score`)
with the teacher in the reference's seat: the mean over both orders of T/(T+Q). The
teacher wins when that mean exceeds 0.5 + `margin`; a tie is not a win. A pair whose two
verdicts are not both parsed (still unparsable after `parse_attempts` requests, or a
failed request) is "unjudged": kept and marked (`unjudged="keep"`, the default: no
evidence against it) or the build fails with nothing written (`unjudged="fail"`); both
ways it is counted.

Every parsed verdict is cached in `<cache_dir>/verdicts.jsonl` under the judge's own
request key (`verdict.calls.verdict_key`) as it arrives, so a re-run after a kill pays only
for what was never answered, and a cache shared with `soda judge score` shares the calls.
With `batch` the verdicts go through the provider's batch API (`verdict/batch.py`), on the
same cache and keys.

Examples:
    >>> teacher_score(teacher_first=(9, 3), q0_first=(6, 5))  # (9/12 + 5/11) / 2
    0.6022727272727273
    >>> decide((8, 6), (8, 6), margin=0.0)  # each order favours Assistant 1: a tie
    <Mark.TEACHER_NOT_BETTER: 'teacher_not_better'>
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

from ..client import ChatClient, ClientSettings
from ..client.batch_api import public_url
from ..client.batch_core import BatchOptions
from ..verdict.batch import BatchChat
from ..verdict.calls import JudgeCalls, JudgeSettings, VerdictRequest, verdict_key
from ..verdict.scoring import Order, prompt_score

CACHE_DIR = "judge_cache"  # under the output folder by default: `--overwrite` keeps it
TIE_TOLERANCE = 1e-9  # (6/14 + 8/14) / 2 is not exactly 0.5 in floating point
EXCERPT_CHARS = 160
# The teacher plays the reference of the judge's protocol and q0 the student, so a verdict
# key here is the same request `soda judge score` would make for that answer pair.
TEACHER_FIRST, Q0_FIRST = Order.REFERENCE_FIRST, Order.STUDENT_FIRST


class FilterAction(str, Enum):
    """What happens to a pair the teacher does not win."""

    DROP = "drop"  # counted under the drop reason `teacher_not_better`
    FLAG = "flag"  # kept, its `judge_verdict` column says `teacher_not_better`


class UnjudgedPolicy(str, Enum):
    """What happens to a pair without both verdicts."""

    KEEP = "keep"  # kept, marked `unjudged_unparsable` / `unjudged_failed`
    FAIL = "fail"  # the build raises `UnjudgedPairsError`; nothing is written


class Mark(str, Enum):
    """The `judge_verdict` column of a pair built with the filter."""

    TEACHER_WON = "teacher_won"
    TEACHER_NOT_BETTER = "teacher_not_better"
    UNPARSABLE = "unjudged_unparsable"
    FAILED = "unjudged_failed"

    @property
    def unjudged(self) -> bool:
        return self in (Mark.UNPARSABLE, Mark.FAILED)


class UnjudgedPairsError(RuntimeError):
    """Pairs lack a verdict and the policy is `unjudged="fail"`."""


@dataclass(frozen=True)
class JudgeFilterConfig:
    """How the judge is reached and what its verdicts do. `client.model` is the judge model
    (`judge.model` must name the same one: it is part of every cache key)."""

    client: ClientSettings
    judge: JudgeSettings
    action: FilterAction = FilterAction.DROP
    margin: float = 0.0  # the teacher wins when its mean T/(T+Q) > 0.5 + margin
    unjudged: UnjudgedPolicy = UnjudgedPolicy.KEEP
    cache_dir: Path | None = None  # default: <out_dir>/judge_cache
    examples: int = 3  # pairs shown on the dataset card per mark
    progress: bool = False
    batch: BatchOptions | None = None  # through the provider's batch API (`--batch`); None: online
    prices: tuple[float, float] | None = None  # online USD per million prompt / completion tokens: reports the cost

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", FilterAction(self.action))
        object.__setattr__(self, "unjudged", UnjudgedPolicy(self.unjudged))
        if not 0.0 <= self.margin < 0.5:
            raise ValueError(f"`judge_filter_margin` must be in [0, 0.5), got {self.margin}; the teacher's score "
                             "is a mean of T/(T+Q), so 0.5 + margin must stay below 1.")
        if self.client.model != self.judge.model:
            raise ValueError(f"the client's model `{self.client.model}` differs from the judge's `{self.judge.model}`.")
        if self.examples < 0:
            raise ValueError(f"`examples` must be >= 0, got {self.examples}")
        if self.batch is not None:
            self.batch.check()

    def describe(self) -> dict[str, Any]:
        """The settings shown on the card and in `build_report.json` (no credential)."""
        return {"action": self.action.value, "margin": self.margin, "unjudged": self.unjudged.value,
                "base_url": public_url(self.client.base_url), "api_key_env": self.client.api_key_env,
                "mode": "batch" if self.batch else "online", **self.judge.protocol()}

    def cost(self, usage) -> float | None:
        """What `usage` cost at `prices` (times the batch discount in batch mode), or None."""
        if self.prices is None:
            return None
        return usage.cost(*(self.batch.prices(*self.prices) if self.batch else self.prices))


def teacher_score(teacher_first: tuple[float, float], q0_first: tuple[float, float]) -> float:
    """The teacher's mean T/(T+Q) over both orders (each verdict as (Assistant 1, Assistant 2))."""
    return 1.0 - prompt_score(student_first=q0_first, reference_first=teacher_first)


def decide(teacher_first: tuple[float, float], q0_first: tuple[float, float], margin: float) -> Mark:
    won = teacher_score(teacher_first, q0_first) > 0.5 + margin + TIE_TOLERANCE
    return Mark.TEACHER_WON if won else Mark.TEACHER_NOT_BETTER


@dataclass(frozen=True)
class PairVerdict:
    mark: Mark
    teacher_score: float | None = None
    teacher_first: tuple[float, float] | None = None
    q0_first: tuple[float, float] | None = None


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS - 1] + "…"


@dataclass
class FilterCounts:
    judged: int = 0  # pairs sent to the filter
    marks: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class JudgeFilter:
    """The filter during one build: one event loop, one client and one verdict cache.

    `judge()` is called once per builder block (`builder.BATCH_PAIRS` pairs); the loop
    lives as long as the build so the client's connections are reused across blocks. In
    batch mode each block's verdicts are one batch run (its journal is in the cache folder,
    so a killed build re-run resumes the open batches and pays for nothing twice)."""

    def __init__(self, config: JudgeFilterConfig, out_dir: Path):
        self.config = config
        self.cache_dir = Path(config.cache_dir) if config.cache_dir else Path(out_dir) / CACHE_DIR
        self._loop = asyncio.new_event_loop()
        self.client = (BatchChat(config.client, self.cache_dir, config.batch) if config.batch
                       else ChatClient(config.client))
        self.calls = JudgeCalls(self.client, config.judge, self.cache_dir, progress=config.progress)
        self.counts = FilterCounts()

    def _requests(self, question: str, teacher: str, q0: str) -> dict[Order, VerdictRequest]:
        settings, requests = self.config.judge, {}
        for order, (first, second) in ((TEACHER_FIRST, (teacher, q0)), (Q0_FIRST, (q0, teacher))):
            requests[order] = VerdictRequest(verdict_key(settings, question, first, second, order),
                                             settings.template.render(question, first, second))
        return requests

    def judge(self, questions: Sequence[str], teachers: Sequence[str], students: Sequence[str]) -> list[PairVerdict]:
        """One verdict per pair (both orders asked, cached ones not), counted and sampled
        for the card."""
        per_pair = [self._requests(q, t, s) for q, t, s in zip(questions, teachers, students)]
        verdicts = self._loop.run_until_complete(
            self.calls.fetch_verdicts(r for requests in per_pair for r in requests.values()))
        results = []
        for i, requests in enumerate(per_pair):
            keys = {order: request.key for order, request in requests.items()}
            result = self._verdict(keys, verdicts)
            self._count(result, questions[i], teachers[i], students[i])
            results.append(result)
        return results

    def _verdict(self, keys: dict[Order, str], verdicts: dict[str, tuple[float, float]]) -> PairVerdict:
        missing = [key for key in keys.values() if key not in verdicts]
        if missing:
            unparsable = any(key in self.calls.unparsable_verdicts for key in missing)
            return PairVerdict(Mark.UNPARSABLE if unparsable else Mark.FAILED,
                               teacher_first=verdicts.get(keys[TEACHER_FIRST]), q0_first=verdicts.get(keys[Q0_FIRST]))
        first, second = verdicts[keys[TEACHER_FIRST]], verdicts[keys[Q0_FIRST]]
        return PairVerdict(decide(first, second, self.config.margin), teacher_score(first, second), first, second)

    def _count(self, result: PairVerdict, question: str, teacher: str, q0: str) -> None:
        counts = self.counts
        counts.judged += 1
        counts.marks[result.mark] += 1
        shown = counts.examples.setdefault(result.mark.value, [])
        if result.mark is not Mark.TEACHER_WON and len(shown) < self.config.examples:
            shown.append({"prompt": _excerpt(question), "teacher": _excerpt(teacher), "q0": _excerpt(q0),
                          "teacher_first": list(result.teacher_first) if result.teacher_first else None,
                          "q0_first": list(result.q0_first) if result.q0_first else None,
                          "teacher_score": result.teacher_score})

    @property
    def unjudged(self) -> int:
        return sum(n for mark, n in self.counts.marks.items() if mark.unjudged)

    def summary(self, dropped: int) -> dict[str, Any]:
        """The `judge_filter` block of `build_report.json` and the card."""
        marks, usage = self.counts.marks, self.client.usage
        return {
            "settings": {**self.config.describe(), "cache_dir": str(self.cache_dir)},
            "counts": {"judged": self.counts.judged, **{m.value: marks.get(m, 0) for m in Mark},
                       "dropped": dropped, "kept": self.counts.judged - dropped},
            "calls": self.calls.stats.to_dict(),
            "usage": {"requests": usage.requests, "prompt_tokens": usage.prompt_tokens,
                      "completion_tokens": usage.completion_tokens, "retries": dict(usage.retries),
                      "failures": usage.failures,
                      **({"cost": self.config.cost(usage)} if self.config.prices else {}),
                      **({"batch": self.client.stats.to_dict()} if self.config.batch else {})},
            "examples": {m.value: self.counts.examples.get(m.value, []) for m in Mark if m is not Mark.TEACHER_WON},
        }

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self.client.close())
        finally:
            self.calls.close()
            pending = asyncio.all_tasks(self._loop)  # left running by an error mid-batch
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(_drain(pending))
            self._loop.close()


async def _drain(tasks) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
