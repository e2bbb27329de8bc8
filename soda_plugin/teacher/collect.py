"""Collect teacher answers: dedupe prompts, drop evaluation prompts, skip those already
answered, ask the rest concurrently through the shared client, append each answer the
moment it arrives. Kill it at any point and re-run it: nothing is lost, nothing is
written twice, and no answer already received is paid for again (`output.py`)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..client import ChatClient, ChatResult, ClientSettings, RequestFailedError, Usage
from ..client.batch_api import public_url
from ..client.options import warn_if_key_missing
from ..log import get_logger
from ..format.rows import TeacherFields
from ..format.prompt_id import prompt_id as compute_prompt_id
from .estimate import CostEstimate, estimate_cost
from .exclude import EvalExclusion
from .output import TeacherOutputFile, check_and_write_manifest, finish_manifest, read_existing
from .records import teacher_row

LOG = get_logger(__name__)

TEACHER_SCHEMA_VERSION = 1
FAILURE_EXAMPLES = 3  # failed prompts named in the report (the rest are counted)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class TeacherRequest:
    """What is sent with every prompt; unset sampling values are left to the server."""

    model: str
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None

    def params(self) -> dict[str, Any]:
        values = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        return {key: value for key, value in values.items() if value is not None}

    def messages_for(self, messages: Messages) -> Messages:
        """The prompt as sent: `system_prompt` first, unless the prompt has its own."""
        if self.system_prompt and not (messages and messages[0]["role"] == "system"):
            return [{"role": "system", "content": self.system_prompt}, *messages]
        return list(messages)

    def identity(self) -> dict[str, Any]:
        return {"teacher_model": self.model, "system_prompt": self.system_prompt, "sampling": self.params(),
                "schema": TEACHER_SCHEMA_VERSION}


@dataclass
class CollectionPlan:
    todo: list[tuple[str, Messages]]
    prompts_read: int
    duplicates: int
    excluded: int
    done_before: int

    @property
    def unique(self) -> int:
        return self.prompts_read - self.duplicates


def plan_collection(prompts: Sequence[Messages], done: set[str], exclusion: EvalExclusion | None) -> CollectionPlan:
    seen: dict[str, Messages] = {}
    for messages in prompts:
        seen.setdefault(compute_prompt_id(messages), [dict(m) for m in messages])
    todo, excluded, done_before = [], 0, 0
    for pid, messages in seen.items():
        if exclusion is not None and exclusion.match(pid, messages):
            excluded += 1
        elif pid in done:
            done_before += 1
        else:
            todo.append((pid, messages))
    return CollectionPlan(todo, len(prompts), len(prompts) - len(seen), excluded, done_before)


@dataclass
class CollectionSummary:
    plan: CollectionPlan
    answered: int = 0
    flagged: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)  # per failure kind
    failed_examples: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    seconds: float = 0.0
    torn_tail_repaired: bool = False
    exclusion: str = ""
    batch: Any = None  # `batch.BatchStats` in batch mode

    def count_failure(self, pid: str, kind: str, text: str) -> None:
        """One prompt without an answer, of failure `kind`; the first few are named with `text`."""
        self.failed[kind] += 1
        if len(self.failed_examples) < FAILURE_EXAMPLES:
            self.failed_examples.append(f"{pid}: {text}")

    def report(self) -> str:
        plan, usage = self.plan, self.usage
        lines = [
            f"teacher: {plan.prompts_read} prompts read, {plan.duplicates} duplicates dropped, "
            f"{plan.excluded} evaluation prompts dropped ({self.exclusion}), {plan.done_before} already answered",
            f"  answered now {self.answered}, failed {sum(self.failed.values())} {dict(self.failed) or ''}".rstrip()
            + (f" e.g. {'; '.join(self.failed_examples)}" if self.failed_examples else ""),
            f"  flagged {dict(self.flagged) or 0}; requests {usage.requests}, retries {dict(usage.retries) or 0}",
            f"  tokens in {usage.prompt_tokens}, out {usage.completion_tokens}, cost ${self.cost:.4f}, "
            f"{self.seconds:.1f} s" + ("; a half-written last line was cut off first" if self.torn_tail_repaired else ""),
        ]
        if self.batch is not None:
            lines.append(self.batch.report())
        if self.failed:
            lines.append(f"  {sum(self.failed.values())} prompts have no answer: re-run the same command to retry them")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompts_read": self.plan.prompts_read, "duplicates": self.plan.duplicates,
            "excluded": self.plan.excluded, "done_before": self.plan.done_before, "answered": self.answered,
            "failed": dict(self.failed), "flagged": dict(self.flagged), "requests": self.usage.requests,
            "retries": dict(self.usage.retries), "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens, "cost": round(self.cost, 6),
            "seconds": round(self.seconds, 3), **({"batch": self.batch.to_dict()} if self.batch is not None else {}),
        }


def start_collection(prompts: Sequence[Messages], out: str | os.PathLike, *, settings: ClientSettings,
                     request: TeacherRequest, fields: TeacherFields, exclusion: EvalExclusion | None,
                     manifest_extra: dict[str, Any], summary_extra: dict[str, Any] | None = None,
                     fsync_interval_s: float = 1.0) -> tuple[TeacherOutputFile, dict[str, Any], CollectionSummary]:
    """Open (or resume) `out`, plan what is left to ask, write the running manifest; the
    start both modes share. `manifest_extra` names the mode; `summary_extra` adds fields."""
    warn_if_key_missing(settings, "the teacher", "--api-key-env")
    output = TeacherOutputFile(out, fields, fsync_interval_s=fsync_interval_s)
    plan = plan_collection(prompts, output.existing.done, exclusion)
    manifest = check_and_write_manifest(out, request.identity(), {
        "base_url": public_url(settings.base_url), "api_key_env": settings.api_key_env, "status": "running",
        **manifest_extra, "prompts_total": plan.unique - plan.excluded})
    summary = CollectionSummary(plan, torn_tail_repaired=output.existing.torn_tail_bytes > 0,
                                exclusion=exclusion.report() if exclusion else "none requested", **(summary_extra or {}))
    return output, manifest, summary


def write_answer(output: TeacherOutputFile, fields: TeacherFields, summary: CollectionSummary, pid: str,
                 messages: Messages, result: ChatResult, teacher_model: str) -> None:
    row = teacher_row(fields, pid, messages, result, teacher_model)
    output.append(row)
    summary.answered += 1
    summary.flagged.update(row[fields.flags])


class _Collector:
    """Turns each result into an output row (or a counted failure) and keeps the bar."""

    def __init__(self, output: TeacherOutputFile, request: TeacherRequest, fields: TeacherFields,
                 summary: CollectionSummary, client: ChatClient, prices: tuple[float, float], bar):
        self.output, self.request, self.fields = output, request, fields
        self.summary, self.client, self.prices, self.bar = summary, client, prices, bar
        self._shown = 0.0  # when the bar's usage figures were last set

    def on_result(self, key: tuple[str, Messages], result: ChatResult | RequestFailedError) -> None:
        pid, messages = key
        if isinstance(result, RequestFailedError):
            self.summary.count_failure(pid, result.kind, result.last_error[:120])
        else:
            write_answer(self.output, self.fields, self.summary, pid, messages, result, self.request.model)
        self.bar.update(1)
        # The figures are formatted at most as often as the bar redraws (not per row:
        # at concurrency 64 that was a visible share of the client's CPU); `show_usage`
        # sets the final ones before the bar closes.
        if not self.bar.disable and time.monotonic() - self._shown >= self.bar.mininterval:
            self.show_usage()

    def show_usage(self) -> None:
        usage = self.client.usage
        self.bar.set_postfix(tok_in=usage.prompt_tokens, tok_out=usage.completion_tokens,
                             cost=f"${usage.cost(*self.prices):.4f}", retries=sum(usage.retries.values()),
                             failed=sum(self.summary.failed.values()), refresh=False)
        self._shown = time.monotonic()


async def _ask_all(client: ChatClient, plan: CollectionPlan, request: TeacherRequest, collector: _Collector) -> None:
    params = request.params()
    jobs = (((pid, messages), request.messages_for(messages), params) for pid, messages in plan.todo)
    try:
        await client.map(jobs, collector.on_result)
    finally:
        await client.close()


def run_collection(prompts: Sequence[Messages], out: str | os.PathLike, *, settings: ClientSettings,
                   request: TeacherRequest, fields: TeacherFields = TeacherFields(),
                   exclusion: EvalExclusion | None = None, price_in: float = 0.0, price_out: float = 0.0,
                   progress: bool = True, fsync_interval_s: float = 1.0) -> CollectionSummary:
    """Ask the teacher (`settings.base_url`, `request.model`) every prompt not yet in `out`.

    Args:
        prompts: prompt message lists (duplicates are asked once).
        out: the `.jsonl` output; created, or resumed when it exists.
        exclusion: evaluation prompts to leave out (`exclude.EvalExclusion`).
        price_in, price_out: USD per 1M prompt / completion tokens, for the cost shown.

    Returns:
        The counts; prompts that failed after every retry have no row and are counted
        in `failed` per kind (a re-run asks them again).
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    output, manifest, summary = start_collection(prompts, out, settings=settings, request=request, fields=fields,
                                                 exclusion=exclusion, manifest_extra={"mode": "online"},
                                                 fsync_interval_s=fsync_interval_s)
    plan = summary.plan
    client = ChatClient(settings)
    bar = tqdm(total=len(plan.todo) + plan.done_before, initial=plan.done_before, desc="teacher", unit="prompt",
               disable=not progress)
    collector = _Collector(output, request, fields, summary, client, (price_in, price_out), bar)
    try:
        asyncio.run(_ask_all(client, plan, request, collector))
    finally:
        if not bar.disable:
            collector.show_usage()
        bar.close()
        output.close()
        summary.usage, summary.seconds = client.usage, time.perf_counter() - started
        summary.cost = client.usage.cost(price_in, price_out)
    finish_manifest(out, {**manifest, "status": "incomplete" if summary.failed else "complete"}, summary.to_dict())
    LOG.info("%s", summary.report())
    return summary


def dry_run(prompts: Sequence[Messages], out: str | os.PathLike, *, request: TeacherRequest,
            fields: TeacherFields = TeacherFields(), exclusion: EvalExclusion | None = None,
            price_in: float = 0.0, price_out: float = 0.0, tokenizer: Any = None,
            tokenizer_name: str | None = None) -> tuple[CollectionPlan, CostEstimate]:
    """What `run_collection` would send and cost; reads `out` but writes nothing."""
    existing = read_existing(out, fields) if Path(out).exists() else None
    plan = plan_collection(prompts, existing.done if existing else set(), exclusion)
    estimate = estimate_cost([request.messages_for(m) for _, m in plan.todo], max_tokens=request.max_tokens,
                             observed_mean_completion=existing.mean_completion_tokens if existing else None,
                             price_in=price_in, price_out=price_out, tokenizer=tokenizer, tokenizer_name=tokenizer_name)
    return plan, estimate


__all__ = ["CollectionPlan", "CollectionSummary", "TeacherRequest", "dry_run", "plan_collection",
           "public_url", "run_collection"]
