"""Every paid call of the judge, cached: reference answers (one per prompt, shared by all
students) and pairwise verdicts (one per prompt, answer pair and order).

Both go through the shared client core (`soda_plugin.client`), online or through the batch
API (`verdict/batch.py`, `--batch`), and its append-only cache, written the moment an
answer arrives, so a kill loses at most calls in flight (in batch mode none: the journal
finds them again). Only usable answers are cached: a failed request, an empty reference
or an unparsable verdict is counted and asked again on the next run, never stored. A verdict is cached
with its scores as the judge wrote them; one outside the template's scale (a `0`) is
clamped when read (`fetch_verdicts`) and its key listed in `clamped_verdicts`.

    <cache_dir>/references.jsonl   key -> {text, finish_reason, prompt_tokens, completion_tokens}
    <cache_dir>/verdicts.jsonl     key -> {score_1, score_2, text}   (scores as written)
    <cache_dir>/unparsable.jsonl   raw unparsable verdicts, for inspection only (never read back)
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..client import ChatClient, ChatResult, JsonlCache, RequestFailedError
from ..client.cache import cache_key
from ..log import get_logger
from .batch import REFERENCES, VERDICTS, BatchChat, check_not_in_flight
from .scoring import Order
from .template import JudgeTemplate, UnparsableVerdictError, clamp_to_scale, parse_verdict

LOG = get_logger(__name__)

Messages = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge model is asked. The paper gives none of these values (docs/judge.md)."""

    model: str
    template: JudgeTemplate
    temperature: float = 0.0
    reference_max_tokens: int = 1536
    verdict_max_tokens: int = 512
    parse_attempts: int = 3  # requests per verdict before it is counted as unparsable

    def __post_init__(self) -> None:
        if self.parse_attempts < 1:
            raise ValueError(f"`parse_attempts` must be >= 1, got {self.parse_attempts}")

    def reference_params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.reference_max_tokens}

    def verdict_params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.verdict_max_tokens}

    def protocol(self) -> dict[str, Any]:
        return {"judge_model": self.model, "template": self.template.version, "template_sha": self.template.sha,
                "temperature": self.temperature, "reference_max_tokens": self.reference_max_tokens,
                "verdict_max_tokens": self.verdict_max_tokens, "parse_attempts": self.parse_attempts}


def reference_key(settings: JudgeSettings, messages: Messages) -> str:
    return cache_key({"kind": "reference", "model": settings.model, "messages": [dict(m) for m in messages],
                      "params": settings.reference_params()})


def verdict_key(settings: JudgeSettings, question: str, answer_1: str, answer_2: str, order: Order) -> str:
    return cache_key({"kind": "verdict", "model": settings.model, "template": settings.template.version,
                      "template_sha": settings.template.sha, "question": question, "answer_1": answer_1,
                      "answer_2": answer_2, "order": order.value, "params": settings.verdict_params()})


@dataclass
class CallStats:
    references_cached: int = 0
    references_new: int = 0
    references_missing: Counter = field(default_factory=Counter)  # reason -> prompts
    verdicts_cached: int = 0
    verdicts_new: int = 0
    unparsable_retried: int = 0  # bad verdicts asked again within this run
    verdicts_unparsable: int = 0  # still unparsable after `parse_attempts` requests
    verdicts_clamped: int = 0  # returned verdicts with a score moved into the template's scale
    verdicts_failed: Counter = field(default_factory=Counter)  # request failure kind -> verdicts

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "references_missing": dict(self.references_missing),
                "verdicts_failed": dict(self.verdicts_failed)}


@dataclass(frozen=True)
class VerdictRequest:
    key: str
    messages: list[dict[str, str]]


class JudgeCalls:
    """The judge's calls, online (`client` a `ChatClient`) or through the batch API (a
    `verdict.batch.BatchChat`): the same cache, keys and counts either way."""

    def __init__(self, client: ChatClient | BatchChat, settings: JudgeSettings, cache_dir: str | Path,
                 progress: bool = True):
        self.client = client
        self.settings = settings
        self.progress = progress
        self.cache_dir = Path(cache_dir)
        self.references = JsonlCache(self.cache_dir / "references.jsonl")
        self.verdicts = JsonlCache(self.cache_dir / "verdicts.jsonl")
        self.stats = CallStats()
        self.failed_verdicts: dict[str, str] = {}  # key -> failure kind, this run
        self.unparsable_verdicts: set[str] = set()
        self.clamped_verdicts: set[str] = set()  # keys whose returned scores were clamped

    def close(self) -> None:
        self.references.close()
        self.verdicts.close()

    async def fetch_references(self, prompts: Mapping[str, Messages]) -> dict[str, str]:
        """`prompt_id -> reference text` for every prompt that has one (cached or new);
        the others are counted in `stats.references_missing` by reason."""
        keys = {pid: reference_key(self.settings, messages) for pid, messages in prompts.items()}
        todo = {key: list(prompts[pid]) for pid, key in keys.items() if key not in self.references}
        self.stats.references_cached += sum(key in self.references for key in keys.values())
        bar = self._bar(len(todo), "judge references")

        def on_result(key: str, result: ChatResult | RequestFailedError) -> None:
            asked = key in todo  # else a reference a killed batch run asked for: paid, so cached
            bar.update(asked)
            if isinstance(result, RequestFailedError):
                self.stats.references_missing[f"request_failed:{result.kind}"] += asked
            elif not result.text.strip():
                self.stats.references_missing["empty_reference"] += asked
            else:
                self.references.put(key, {"text": result.text, "finish_reason": result.finish_reason,
                                          "prompt_tokens": result.prompt_tokens,
                                          "completion_tokens": result.completion_tokens})
                self.stats.references_new += asked

        params = self.settings.reference_params()
        await self._ask(REFERENCES, {key: (messages, params) for key, messages in todo.items()}, on_result,
                        self.references)
        bar.close()
        return {pid: self.references.get(key)["text"] for pid, key in keys.items() if key in self.references}

    async def fetch_verdicts(self, requests: Iterable[VerdictRequest]) -> dict[str, tuple[float, float]]:
        """`key -> (score_1, score_2)` for every request with a parsed verdict, each score
        within the template's scale (clamped, the key added to `clamped_verdicts`). An
        unparsable verdict is asked again (a new request) up to `parse_attempts` times in
        all; what is still unparsable, or failed, is counted and left out."""
        unique = {request.key: request.messages for request in requests}
        todo = {key: messages for key, messages in unique.items() if key not in self.verdicts}
        self.stats.verdicts_cached += len(unique) - len(todo)
        bar = self._bar(len(todo), "judge verdicts")
        for attempt in range(self.settings.parse_attempts):
            if not todo:
                break
            if attempt:
                self.stats.unparsable_retried += len(todo)
                LOG.warning("asking the judge again for %d unparsable verdicts (attempt %d of %d)", len(todo),
                            attempt + 1, self.settings.parse_attempts)
            todo = await self._verdict_round(todo, bar)
        bar.close()
        self.unparsable_verdicts = set(todo)
        self.stats.verdicts_unparsable += len(todo)
        scale = self.settings.template.scale
        parsed = {}
        for key in unique:
            if key in self.verdicts:
                value = self.verdicts.get(key)
                parsed[key], clamped = clamp_to_scale((value["score_1"], value["score_2"]), scale)
                if clamped:
                    self.clamped_verdicts.add(key)
        self.stats.verdicts_clamped += sum(key in self.clamped_verdicts for key in parsed)
        return parsed

    async def _verdict_round(self, todo: dict[str, list[dict[str, str]]], bar) -> dict[str, list[dict[str, str]]]:
        """One request per verdict in `todo`; returns those whose answer did not parse."""
        unparsable: dict[str, list[dict[str, str]]] = {}

        def on_result(key: str, result: ChatResult | RequestFailedError) -> None:
            asked = key in todo  # else a verdict a killed batch run asked for: paid, so cached if it parses
            if isinstance(result, RequestFailedError):
                if asked:
                    self.failed_verdicts[key] = result.kind
                    self.stats.verdicts_failed[result.kind] += 1
                    bar.update(1)
                return
            try:
                score_1, score_2 = parse_verdict(result.text)
            except UnparsableVerdictError as error:
                self._record_unparsable(key, result.text, str(error))
                if asked:
                    unparsable[key] = todo[key]
                return
            self.verdicts.put(key, {"score_1": score_1, "score_2": score_2, "text": result.text})
            self.stats.verdicts_new += asked
            bar.update(asked)

        params = self.settings.verdict_params()
        await self._ask(VERDICTS, {key: (messages, params) for key, messages in todo.items()}, on_result,
                        self.verdicts)
        return unparsable

    async def _ask(self, phase: str, jobs: dict[str, tuple[list[dict[str, str]], dict[str, Any]]],
                   on_result: Callable[[str, ChatResult | RequestFailedError], None], cache: JsonlCache) -> None:
        """`jobs` (cache key -> messages, params) through the online client or the batch API."""
        items = ((key, messages, params) for key, (messages, params) in jobs.items())
        if isinstance(self.client, BatchChat):
            await self.client.map(items, on_result, phase=phase, done=cache.entries.keys())
            return
        check_not_in_flight(self.cache_dir, phase, jobs)
        await self.client.map(items, on_result)

    def _record_unparsable(self, key: str, text: str, reason: str) -> None:
        with (self.cache_dir / "unparsable.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "reason": reason, "text": text}, ensure_ascii=False) + "\n")

    def _bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="call", disable=not self.progress)
