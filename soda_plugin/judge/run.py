"""Score students against the judge's reference answers: plan the calls, pay only for
the uncached ones, and turn verdicts into one GPT-4o Score per model and benchmark.

A prompt is scored for a model only when it has the student's answer, a reference and a
parsed verdict in both orders; every other prompt is excluded and counted by reason. A
model's figures are given twice: on its own scored prompts, and on the prompts scored for
every model of the run (the paired set the tables lead with), so models compare on the
same prompts.
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
from .answers import PromptFormat, answers_by_eval_prompt, answers_format
from ..verdict.batch import BatchChat
from ..verdict.calls import JudgeCalls, JudgeSettings, VerdictRequest, verdict_key
from .figures import PromptVerdicts, SubsetScore, subset_score
from .lengths import counter_name, token_counter
from ..verdict.scoring import Order, student_and_reference
from ..verdict.template import question_text

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
    models: dict[str, Path]  # name -> answers folder written by `soda judge answer`
    benchmarks: list[str]
    out_dir: Path
    judge: JudgeSettings
    eval_files: dict[str, str] = field(default_factory=dict)  # benchmark -> local file (overrides the Hub)
    cache_dir: Path | None = None  # default: <out_dir>/cache; share it between runs to share the calls
    resamples: int = 1000
    seed: int = 0
    progress: bool = True
    length_tokenizer: str | None = None  # Hugging Face tokenizer for the lengths; None: the regex count
    length_controlled: bool = False  # also report the score at equal length (figures.length_regression)


@dataclass
class ModelResult:
    """One model on one benchmark. `own`: every prompt scored for this model; `paired`: the
    prompts scored for every model of the run on this benchmark (the headline)."""

    model: str
    benchmark: str
    n_prompts: int
    own: SubsetScore
    paired: SubsetScore
    excluded: dict[str, int]
    clamped_verdicts: int  # verdicts of scored prompts with a score moved into the scale
    truncated_answers: int  # scored as they are; reported because they hit `max_tokens`
    prompt_format: str = PromptFormat.CHAT.value

    def to_dict(self) -> dict[str, Any]:
        """The `results.json` record: the own-subset figures at the top level (`n_scored`
        prompts, as before), the paired ones under `paired`."""
        own = asdict(self.own)
        n_scored = own.pop("n")
        return {"model": self.model, "benchmark": self.benchmark, **own, "n_prompts": self.n_prompts,
                "n_scored": n_scored, "excluded": self.excluded, "clamped_verdicts": self.clamped_verdicts,
                "truncated_answers": self.truncated_answers, "prompt_format": self.prompt_format,
                "paired": asdict(self.paired)}


@dataclass
class _Pair:
    """One (model, benchmark, prompt) to score, and its two verdict keys."""

    model: str
    benchmark: str
    prompt_id: str
    keys: dict[Order, str] = field(default_factory=dict)
    model_tokens: int = 0
    reference_tokens: int = 0


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


def paired_prompts(scored: Mapping[tuple[str, str], Mapping[str, PromptVerdicts]], models: Sequence[str],
                   benchmark: str) -> set[str]:
    """The prompts of `benchmark` scored for every one of `models` (empty when one has none)."""
    sets = [set(scored.get((model, benchmark), {})) for model in models]
    return set.intersection(*sets) if sets else set()


async def score_models(config: ScoreConfig, calls: JudgeCalls) -> list[ModelResult]:
    """Fetch what is missing from the judge, then score every model on every benchmark;
    writes `prompt_scores.jsonl` (one row per scored prompt)."""
    count_tokens = token_counter(config.length_tokenizer)
    eval_sets = {name: load_eval_set(name, config.eval_files.get(name)) for name in config.benchmarks}
    answers, formats = {}, {}
    for model, folder in config.models.items():
        for name, prompts in eval_sets.items():
            formats[(model, name)] = answers_format(folder, name)
            answers[(model, name)] = answers_by_eval_prompt(folder, name, prompts)
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
                response, reference = rows[prompt.prompt_id]["response"], references[prompt.prompt_id]
                by_order = _verdict_requests(config.judge, prompt, response, reference)
                pairs.append(_Pair(model, name, prompt.prompt_id, {o: r.key for o, r in by_order.items()},
                                   count_tokens(response), count_tokens(reference)))
                requests.extend(by_order.values())
    verdicts = await calls.fetch_verdicts(requests)

    scored: dict[tuple[str, str], dict[str, PromptVerdicts]] = {key: {} for key in answers}
    clamped: Counter = Counter()
    lines = []
    for pair in pairs:
        reason = _exclusion(pair, verdicts, calls)
        if reason:
            exclusions[(pair.model, pair.benchmark)][reason] += 1
            continue
        n_clamped = sum(key in calls.clamped_verdicts for key in pair.keys.values())
        clamped[(pair.model, pair.benchmark)] += n_clamped
        prompt = PromptVerdicts(pair.prompt_id, *(student_and_reference(o, verdicts[pair.keys[o]]) for o in Order),
                                pair.model_tokens, pair.reference_tokens)
        scored[(pair.model, pair.benchmark)][pair.prompt_id] = prompt
        lines.append(json.dumps({"model": pair.model, "benchmark": pair.benchmark, "prompt_id": pair.prompt_id,
                                 "score": prompt.score,
                                 **{o.value: list(verdicts[k]) for o, k in pair.keys.items()},
                                 "clamped_verdicts": n_clamped, "model_tokens": pair.model_tokens,
                                 "reference_tokens": pair.reference_tokens}) + "\n")
    atomic_write_text(config.out_dir / PROMPT_SCORES_FILE, "".join(lines))

    def figures(prompts: list[PromptVerdicts]) -> SubsetScore:
        return subset_score(prompts, config.resamples, config.seed, config.length_controlled)

    shared = {name: paired_prompts(scored, list(config.models), name) for name in eval_sets}
    results = []
    for (model, name), by_prompt in scored.items():
        own = list(by_prompt.values())  # evaluation-set order
        truncated = sum(row["finish_reason"] == "length" for row in answers[(model, name)].values())
        results.append(ModelResult(model, name, len(eval_sets[name]), figures(own),
                                   figures([p for p in own if p.prompt_id in shared[name]]),
                                   dict(exclusions[(model, name)]), clamped[(model, name)], truncated,
                                   formats[(model, name)].value))
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
    paid and cached, retries by kind (in batch mode, the batch counts, and the cost at the
    batch prices the caller passes). Holds no credential."""
    usage = calls.client.usage
    batch = calls.client.stats.to_dict() if isinstance(calls.client, BatchChat) else None
    return {
        "protocol": {**config.judge.protocol(), "bootstrap_resamples": config.resamples, "seed": config.seed,
                     "ci_level": 0.95, "score_scale": list(config.judge.template.scale),
                     "length_tokenizer": counter_name(config.length_tokenizer),
                     "length_controlled": config.length_controlled},
        "models": list(config.models), "benchmarks": list(config.benchmarks),
        "results": [r.to_dict() for r in results],
        "calls": calls.stats.to_dict(),
        "usage": {"requests": usage.requests, "prompt_tokens": usage.prompt_tokens,
                  "completion_tokens": usage.completion_tokens, "retries": dict(usage.retries),
                  "failures": usage.failures, "mode": "batch" if batch else "online",
                  **({"cost": usage.cost(*price_per_m)} if price_per_m else {}), **({"batch": batch} if batch else {})},
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
        p = r["paired"]
        score = "n/a" if p["score"] is None else f"{p['score']:.1f} [{p['ci_low']:.1f}, {p['ci_high']:.1f}]"
        orders = ("" if p["score"] is None else
                  f" (orders {p['student_first']:.1f} / {p['reference_first']:.1f}, disagree "
                  f"{100 * p['order_disagreement']:.0f} %; tokens {p['model_tokens']:.0f} vs reference "
                  f"{p['reference_tokens']:.0f})")
        own = ("" if r["score"] is None or r["n_scored"] == p["n"]
               else f"; own {r['n_scored']} prompts: {r['score']:.1f}")
        excluded = ", ".join(f"{k} {v}" for k, v in sorted(r["excluded"].items())) or "none"
        lines.append(f"{r['model']:>12} {r['benchmark']:<9} {score}{orders} on {p['n']} paired prompts{own}; "
                     f"scored {r['n_scored']}/{r['n_prompts']}; excluded: {excluded}; clamped verdicts: "
                     f"{r['clamped_verdicts']}; truncated answers: {r['truncated_answers']}")
    c, u = document["calls"], document["usage"]
    lines.append(f"references: {c['references_new']} new, {c['references_cached']} cached, missing "
                 f"{c['references_missing'] or 0}; verdicts: {c['verdicts_new']} new, {c['verdicts_cached']} cached, "
                 f"{c['unparsable_retried']} unparsable asked again, {c['verdicts_unparsable']} still unparsable, "
                 f"failed {c['verdicts_failed'] or 0}")
    cost = f", cost {u['cost']:.4f}" if "cost" in u else ""
    lines.append(f"judge usage: {u['requests']} requests, {u['prompt_tokens']} prompt + {u['completion_tokens']} "
                 f"completion tokens{cost}; retries by kind {u['retries'] or 0}; failed requests {u['failures']}")
    if "batch" in u:
        b = u["batch"]
        lines.append(f"judge batches: {b['batches_created']} created, {b['batches_resumed']} resumed, closed "
                     f"{b['statuses'] or 0}; items submitted {b['items_submitted']} (resubmitted "
                     f"{b['items_resubmitted']}), unreadable result lines {b['unreadable_lines']}, API retries "
                     f"{b['api_retries'] or 0}")
    return "\n".join(lines)
