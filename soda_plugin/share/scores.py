"""The card's judge table: this model beside Base (q0) and SeqKD only, on the same prompts.

A judge run (`soda judge score`) scores every model it is given, often every seed and every
ablation; its `results.json` holds one aggregate per model and benchmark, and
`prompt_scores.jsonl` beside it one score per scored prompt. The card keeps three rows and
recomputes each score over the prompts all three were scored on (the paired set); without
per-prompt scores that match `results.json`, it shows the aggregates and says whether they
cover the same prompts.

Examples:
    Models `base, soda_s0, soda_s1, seqkd_s0, seqkd_s1, soda-sibling_s0` with
    `--model-name soda_s1` give the rows `soda_s1`, `base`, `seqkd_s1` (SeqKD of the same seed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

BASE_NAMES = ("base", "q0")  # the untrained student, q0, as `soda judge score --models` names it
SEQKD_PREFIX = "seqkd"
_SEED = re.compile(r"[_/-](s\d+)$")


def _seed(name: str) -> str | None:
    found = _SEED.search(name)
    return found.group(1) if found else None


def _is_baseline(name: str) -> bool:
    return name.lower() in BASE_NAMES or name.lower().startswith(SEQKD_PREFIX)


@dataclass(frozen=True)
class CardRows:
    """Which `results.json` model is this model, and which are its baselines (None: absent)."""

    model: str
    base: str | None
    seqkd: str | None

    def labelled(self) -> list[tuple[str, str]]:
        """(row label, results name) in table order, each model once."""
        rows = [(f"{self.model} (this model)", self.model)]
        for label, name in (("Base (q0)", self.base), ("SeqKD", self.seqkd)):
            if name is not None and name != self.model:
                rows.append((f"{label}: {name}", name))
        return rows


def choose_rows(models: Sequence[str], model_name: str | None = None, base_name: str | None = None,
                seqkd_name: str | None = None) -> CardRows:
    """This model's row and its baselines among a results document's `models`.

    Without `model_name`, the one model that is neither Base nor SeqKD. Without
    `seqkd_name`, the SeqKD model of this model's seed (`seqkd_s1` for `soda_s1`), else the
    only one.

    Raises:
        ValueError: a given name is not among `models`, or the choice is ambiguous (the
            message lists the models and the flag to pass).
    """
    listed = ", ".join(f"`{m}`" for m in models)
    for flag, name in (("--model-name", model_name), ("--base-name", base_name), ("--seqkd-name", seqkd_name)):
        if name is not None and name not in models:
            raise ValueError(f"`{flag} {name}` is not a model of the judge results; they hold {listed}.")
    if model_name is None:
        candidates = [m for m in models if not _is_baseline(m)]
        if len(candidates) != 1:
            raise ValueError(f"the judge results hold {listed}: pass `--model-name` to say which row is this "
                             "model (the card shows it beside Base and SeqKD only).")
        model_name = candidates[0]
    if base_name is None:
        base_name = next((m for m in models if m.lower() in BASE_NAMES), None)
    if seqkd_name is None:
        seqkd = [m for m in models if m.lower().startswith(SEQKD_PREFIX)]
        same_seed = [m for m in seqkd if _seed(m) is not None and _seed(m) == _seed(model_name)]
        if model_name in seqkd or len(seqkd) <= 1:
            seqkd_name = model_name if model_name in seqkd else next(iter(seqkd), None)
        elif len(same_seed) == 1:
            seqkd_name = same_seed[0]
        else:
            raise ValueError(f"the judge results hold several SeqKD models ({', '.join(seqkd)}) and none of "
                             f"`{model_name}`'s seed: pass `--seqkd-name`.")
    return CardRows(model_name, base_name, seqkd_name)


def read_prompt_scores(path: str | Path) -> list[dict[str, Any]] | None:
    """The rows of a `prompt_scores.jsonl`, or None when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _per_prompt(rows: Iterable[dict[str, Any]], benchmark: str) -> dict[str, dict[str, float]]:
    """model -> prompt_id -> score, in file order (the judge writes them in evaluation-set order)."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["benchmark"] == benchmark:
            out.setdefault(row["model"], {})[row["prompt_id"]] = row["score"]
    return out


def _records(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["model"], r["benchmark"]): r for r in document["results"]}


def _paired_stale(document: dict[str, Any], names: Sequence[str], prompt_scores: Sequence[dict[str, Any]]) -> str | None:
    """Why the per-prompt scores cannot be paired for these models (None: they can)."""
    records = _records(document)
    for benchmark in document["benchmarks"]:
        per_prompt = _per_prompt(prompt_scores, benchmark)
        for name in names:
            record = records.get((name, benchmark))
            expected = record["n_scored"] if record else 0
            if len(per_prompt.get(name, {})) != expected:
                return (f"its per-prompt scores do not match `results.json` (`{name}` / {benchmark}: "
                        f"{len(per_prompt.get(name, {}))} rows, {expected} scored)")
    return None


def judge_table(document: dict[str, Any], rows: CardRows, prompt_scores: Sequence[dict[str, Any]] | None) -> str:
    """Markdown: the three rows' scores, paired over the prompts all of them were scored on
    when per-prompt scores are given and match the document; else the aggregates, with a
    note saying whether they cover the same prompts."""
    from ..judge.report import markdown_table
    from ..verdict.scoring import benchmark_score

    labelled = rows.labelled()
    names = [name for _, name in labelled]
    protocol = document["protocol"]
    records = _records(document)
    stale = None if prompt_scores is None else _paired_stale(document, names, prompt_scores)
    paired = prompt_scores is not None and stale is None
    results, notes = [], []
    for benchmark in document["benchmarks"]:
        if paired:
            per_prompt = _per_prompt(prompt_scores, benchmark)
            own = per_prompt.get(rows.model, {})
            shared = [pid for pid in own if all(pid in per_prompt.get(name, {}) for name in names)]
            n_prompts = max((records[(n, benchmark)]["n_prompts"] for n in names if (n, benchmark) in records),
                            default=0)
            for label, name in labelled:
                s = benchmark_score([per_prompt[name][pid] for pid in shared], protocol["bootstrap_resamples"],
                                    protocol["seed"])
                results.append({"model": label, "benchmark": benchmark, "score": s.score, "ci_low": s.ci_low,
                                "ci_high": s.ci_high, "n_prompts": n_prompts, "n_scored": s.n_scored, "excluded": {}})
            notes.append(f"- {benchmark}: the same {len(shared)} of {n_prompts} prompts for every row (those all "
                         "of them were scored on).")
            continue
        for label, name in labelled:
            record = records.get((name, benchmark))
            results.append({**(record or {"score": None, "n_prompts": 0, "n_scored": 0}), "model": label,
                            "benchmark": benchmark, "excluded": {}})
        counts = [(name, records[(name, benchmark)]["n_scored"] if (name, benchmark) in records else 0,
                   records[(name, benchmark)]["n_prompts"] if (name, benchmark) in records else 0)
                  for _, name in labelled]
        if len({(c[1], c[2]) for c in counts}) == 1 and counts[0][1] == counts[0][2]:
            notes.append(f"- {benchmark}: all {counts[0][2]} prompts scored for every row (the same prompts).")
        else:
            why = stale or "no per-prompt scores (`prompt_scores.jsonl`, written beside `results.json`) were found"
            notes.append(f"- {benchmark}: **not on the same prompts**: "
                         + ", ".join(f"`{n}` {s} of {p}" for n, s, p in counts)
                         + f" scored; {why}, so these are each model's own aggregate, not a paired comparison.")
    table = markdown_table({"protocol": protocol, "benchmarks": document["benchmarks"],
                            "models": [label for label, _ in labelled], "results": results})
    missing = [label for label, name in (("Base", rows.base), ("SeqKD", rows.seqkd)) if name is None]
    if missing:
        notes.append(f"- The judge results hold no {' or '.join(missing)} row (`--base-name` / `--seqkd-name`).")
    others = [m for m in document["models"] if m not in names]
    if others:
        notes.append(f"- Left out: the run's other models ({', '.join(f'`{m}`' for m in others)}).")
    return table + "\nPrompts:\n" + "\n".join(notes) + "\n"
