"""Score students against the judge's reference answers: plan the calls, pay only for
the uncached ones, and turn verdicts into one GPT-4o Score per model and benchmark.

A prompt is scored for a model only when it has the student's answer, a reference and a
parsed verdict in both orders; every other prompt is excluded and counted by reason.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..evalsets import EvalPrompt, load_eval_set
from ..format.fileio import atomic_write_text
from ..log import get_logger
from .answers import read_answers
from .calls import JudgeCalls, JudgeSettings, VerdictRequest, verdict_key
from .scoring import Order, benchmark_score, prompt_score
from .template import question_text

LOG = get_logger(__name__)

RESULTS_FILE = "results.json"
PROMPT_SCORES_FILE = "prompt_scores.jsonl"


class Excluded:
    """Why a prompt has no score for a model (the counts are reported per reason)."""

    NO_ANSWER = "no_student_answer"
    NO_REFERENCE = "no_reference"
    UNPARSABLE = "unparsable_verdict"
    FAILED = "judge_request_failed"


@dataclass
class ScoreConfig:
    models: dict[str, Path]  # name -> answers folder written by `tools/judge.py answer`
    benchmarks: list[str]
    out_dir: Path
    judge: JudgeSettings
    eval_files: dict[str, str] = field(default_factory=dict)  # benchmark -> local file (overrides the Hub)
    cache_dir: Path | None = None  # default: <out_dir>/cache; share it between runs to share the calls
    resamples: int = 1000
    seed: int = 0
    progress: bool = True


@dataclass
class ModelResult:
    model: str
    benchmark: str
    score: float | None
    ci_low: float | None
    ci_high: float | None
    n_prompts: int
    n_scored: int
    excluded: dict[str, int]
    truncated_answers: int  # scored as they are; reported because they hit `max_tokens`


@dataclass
class _Pair:
    """One (model, benchmark, prompt) to score, and its two verdict keys."""

    model: str
    benchmark: str
    prompt_id: str
    keys: dict[Order, str] = field(default_factory=dict)


def _verdict_requests(settings: JudgeSettings, prompt: EvalPrompt, student: str,
                      reference: str) -> dict[Order, VerdictRequest]:
    question = question_text(prompt.messages)
    requests = {}
    for order in Order:
        first, second = (student, reference) if order is Order.STUDENT_FIRST else (reference, student)
        key = verdict_key(settings, question, first, second, order)
        requests[order] = VerdictRequest(key, settings.template.render(question, first, second))
    return requests


def _exclusion(pair: _Pair, verdicts: Mapping[str, tuple[float, float]], calls: JudgeCalls) -> str | None:
    missing = [key for key in pair.keys.values() if key not in verdicts]
    if not missing:
        return None
    return Excluded.UNPARSABLE if any(key in calls.unparsable_verdicts for key in missing) else Excluded.FAILED


async def score_models(config: ScoreConfig, calls: JudgeCalls) -> list[ModelResult]:
    """Fetch what is missing from the judge, then score every model on every benchmark;
    writes `prompt_scores.jsonl` (one row per scored prompt)."""
    eval_sets = {name: load_eval_set(name, config.eval_files.get(name)) for name in config.benchmarks}
    answers = {(model, name): read_answers(folder, name)
               for model, folder in config.models.items() for name in eval_sets}
    for (model, name), rows in answers.items():
        if not rows:
            LOG.warning("model `%s` has no answers for `%s` in %s", model, name, config.models[model] / name)

    answered = {p.prompt_id: p.messages for name, prompts in eval_sets.items() for p in prompts
                if any(p.prompt_id in answers[(model, name)] for model in config.models)}
    references = await calls.fetch_references(answered)

    pairs: list[_Pair] = []
    requests: list[VerdictRequest] = []
    exclusions: dict[tuple[str, str], Counter] = {key: Counter() for key in answers}
    for (model, name), rows in answers.items():
        for prompt in eval_sets[name]:
            if prompt.prompt_id not in rows:
                exclusions[(model, name)][Excluded.NO_ANSWER] += 1
            elif prompt.prompt_id not in references:
                exclusions[(model, name)][Excluded.NO_REFERENCE] += 1
            else:
                by_order = _verdict_requests(config.judge, prompt, rows[prompt.prompt_id]["response"],
                                             references[prompt.prompt_id])
                pairs.append(_Pair(model, name, prompt.prompt_id, {o: r.key for o, r in by_order.items()}))
                requests.extend(by_order.values())
    verdicts = await calls.fetch_verdicts(requests)

    scored: dict[tuple[str, str], list[float]] = {key: [] for key in answers}
    lines = []
    for pair in pairs:
        reason = _exclusion(pair, verdicts, calls)
        if reason:
            exclusions[(pair.model, pair.benchmark)][reason] += 1
            continue
        value = prompt_score(verdicts[pair.keys[Order.STUDENT_FIRST]], verdicts[pair.keys[Order.REFERENCE_FIRST]])
        scored[(pair.model, pair.benchmark)].append(value)
        lines.append(json.dumps({"model": pair.model, "benchmark": pair.benchmark, "prompt_id": pair.prompt_id,
                                 "score": value,
                                 **{o.value: list(verdicts[k]) for o, k in pair.keys.items()}}) + "\n")
    atomic_write_text(config.out_dir / PROMPT_SCORES_FILE, "".join(lines))

    results = []
    for (model, name), values in scored.items():
        summary = benchmark_score(values, config.resamples, config.seed)
        truncated = sum(row["finish_reason"] == "length" for row in answers[(model, name)].values())
        results.append(ModelResult(model, name, summary.score, summary.ci_low, summary.ci_high, len(eval_sets[name]),
                                   summary.n_scored, dict(exclusions[(model, name)]), truncated))
    return results


def score_models_sync(config: ScoreConfig, calls: JudgeCalls) -> list[ModelResult]:
    """`score_models` in a fresh event loop; the client and the cache are closed after."""
    import asyncio

    async def go():
        try:
            return await score_models(config, calls)
        finally:
            await calls.client.close()

    try:
        return asyncio.run(go())
    finally:
        calls.close()


def results_document(config: ScoreConfig, results: Sequence[ModelResult], calls: JudgeCalls,
                     price_per_m: tuple[float, float] | None = None) -> dict[str, Any]:
    """The `results.json` document: protocol, one record per model and benchmark, calls
    paid and cached, retries by kind. Holds no credential."""
    usage = calls.client.usage
    return {
        "protocol": {**config.judge.protocol(), "bootstrap_resamples": config.resamples, "seed": config.seed,
                     "ci_level": 0.95},
        "models": list(config.models), "benchmarks": list(config.benchmarks),
        "results": [asdict(r) for r in results],
        "calls": calls.stats.to_dict(),
        "usage": {"requests": usage.requests, "prompt_tokens": usage.prompt_tokens,
                  "completion_tokens": usage.completion_tokens, "retries": dict(usage.retries),
                  "failures": usage.failures,
                  **({"cost": usage.cost(*price_per_m)} if price_per_m else {})},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(out_dir: Path, document: dict[str, Any]) -> Path:
    path = Path(out_dir) / RESULTS_FILE
    atomic_write_text(path, json.dumps(document, indent=2))
    return path


def report(document: dict[str, Any]) -> str:
    """Human summary: one line per model and benchmark, then what was paid and retried."""
    lines = []
    for r in document["results"]:
        score = "n/a" if r["score"] is None else f"{r['score']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]"
        excluded = ", ".join(f"{k} {v}" for k, v in sorted(r["excluded"].items())) or "none"
        lines.append(f"{r['model']:>12} {r['benchmark']:<9} {score}  scored {r['n_scored']}/{r['n_prompts']}; "
                     f"excluded: {excluded}; truncated answers: {r['truncated_answers']}")
    c, u = document["calls"], document["usage"]
    lines.append(f"references: {c['references_new']} new, {c['references_cached']} cached, missing "
                 f"{c['references_missing'] or 0}; verdicts: {c['verdicts_new']} new, {c['verdicts_cached']} cached, "
                 f"{c['unparsable_retried']} unparsable asked again, {c['verdicts_unparsable']} still unparsable, "
                 f"failed {c['verdicts_failed'] or 0}")
    cost = f", cost {u['cost']:.4f}" if "cost" in u else ""
    lines.append(f"judge usage: {u['requests']} requests, {u['prompt_tokens']} prompt + {u['completion_tokens']} "
                 f"completion tokens{cost}; retries by kind {u['retries'] or 0}; failed requests {u['failures']}")
    return "\n".join(lines)
