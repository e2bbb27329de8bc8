"""Turn the miniature's measurements into `summary.json`, `report.md` and a printed summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..format.fileio import atomic_write_text
from ..judge.grid import headline
from .report import JUDGE_FIGURES, judge_figures_table, metric_table, timing_table
from .settings import MiniatureSettings

MAIN = {"base": "Base (SmolLM2-135M-Instruct)", "seqkd": "SeqKD", "soda": "SODA"}
ABLATION = {"soda": "q0 negatives (SODA)", "soda-sibling": "cross-student negatives",
            "soda-degraded": "degraded-teacher negatives"}
GOAL_RATIO = 2.5


def _group(name: str) -> str:
    return name.split("/")[0]


def _seed(name: str) -> str:
    """`soda/s1` -> `s1`; `base` (untrained, deterministic) -> `-`."""
    return name.split("/")[1] if "/" in name else "-"


def collect_metrics(matches: Mapping[str, Mapping[str, bool]], judged: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """group -> {"exact_match": {seed: %}, "judge": {seed: score}, and the judge's figures
    (`report.JUDGE_FIGURES`) when its results have them}; judge figures are the headline
    (paired) ones."""
    judge_by_model = {r["model"]: headline(r) for r in judged["results"]}
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for name, by_prompt in matches.items():
        group = metrics.setdefault(_group(name), {"exact_match": {}, "judge": {}})
        group["exact_match"][_seed(name)] = 100.0 * sum(by_prompt.values()) / len(by_prompt)
        record = judge_by_model.get(name.replace("/", "_"))
        if record is None or record["score"] is None:
            raise ValueError(f"the judge has no score for `{name}`; see logs/judge.log")
        group["judge"][_seed(name)] = record["score"]
        for metric, (key, scale) in JUDGE_FIGURES.items():
            if record.get(key) is not None:
                group.setdefault(metric, {})[_seed(name)] = scale * record[key]
    return metrics


def only_seeds(metrics: Mapping[str, Mapping[str, Mapping[str, float]]], seeds: Sequence[int]) -> dict:
    """The same metrics restricted to `seeds` (so ablation rows compare like with like)."""
    keep = {f"s{seed}" for seed in seeds}
    return {group: {metric: {s: v for s, v in values.items() if s in keep} for metric, values in by_metric.items()}
            for group, by_metric in metrics.items()}


def stage_ratio(seconds: Mapping[str, float], n_seeds: int) -> float | None:
    """(q0 snapshot + SODA warmup and DPO) / SeqKD, in wall time per seed."""
    seqkd = seconds.get("SeqKD train", 0.0) / n_seeds
    if not seqkd:
        return None
    return (seconds.get("q0 snapshot", 0.0) + seconds.get("SODA train (warmup + DPO)", 0.0) / n_seeds) / seqkd


def _representation_table(analysis_file: Path) -> str:
    if not analysis_file.is_file():
        return "(not run)"
    from ..analysis.representations import ModelAnalysis, format_table

    return format_table([ModelAnalysis(**m) for m in json.loads(analysis_file.read_text())["models"]])


def pair_filter_lines(counts: Mapping[str, Mapping[str, int]]) -> str:
    """One line per pairs set: what the teacher-vs-q0 judge filter kept and dropped."""
    if not counts:
        return "(not run)"
    return "\n".join(f"- {name}: judged {c['judged']}, kept {c['kept']}, dropped {c['dropped']} (teacher not better: "
                     f"{c['teacher_not_better']}), unjudged {c['unjudged_unparsable'] + c['unjudged_failed']}"
                     for name, c in counts.items())


def write_report(settings: MiniatureSettings, seconds: Mapping[str, float], runtimes: Mapping[str, Sequence[float]],
                 matches: Mapping[str, Mapping[str, bool]], judged: Mapping[str, Any],
                 files: Mapping[str, Path],
                 pair_filter: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, Any]:
    out = settings.out_dir
    prompt_sets = {name: sorted(by_prompt) for name, by_prompt in matches.items()}
    same_prompts = len({tuple(ids) for ids in prompt_sets.values()}) == 1
    metrics = collect_metrics(matches, judged)
    ratio = stage_ratio(seconds, len(settings.seeds))
    summary = {
        "settings": settings.to_dict(), "stage_seconds": dict(seconds), "trainer_runtimes": dict(runtimes),
        "ratio_snapshot_soda_over_seqkd": ratio, "metrics": metrics, "same_test_prompts_for_all_models": same_prompts,
        "n_test_prompts": len(next(iter(prompt_sets.values()))), "judge_calls": judged.get("calls"),
        "judge_protocol": judged.get("protocol"), "pair_filter": dict(pair_filter or {}),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    main = metric_table(metrics, MAIN)
    judge_figures = judge_figures_table(metrics, MAIN)
    ablation = (metric_table(only_seeds(metrics, settings.ablation_seeds), ABLATION) if "soda-sibling" in metrics
                else "(not run)")
    ratio_line = (f"(q0 snapshot + SODA warmup + DPO) / SeqKD wall time per seed: **{ratio:.2f}** "
                  f"(goal <= {GOAL_RATIO})" if ratio is not None else "")
    text = f"""# SODA in miniature: SmolLM2-135M-Instruct distilled from a program teacher

Mode: {"quick" if settings.quick else "full"}; seeds {list(settings.seeds)}; {settings.n_train} training,
{settings.n_val} validation and {settings.n_test} held-out test prompts (disjoint, data seed {settings.data_seed}).
Every model is evaluated on the same {summary["n_test_prompts"]} held-out prompts
({"checked" if same_prompts else "NOT the same: a bug"}). Intervals are 95 % Student-t intervals over
training seeds; Base is deterministic (greedy decoding of an untrained model), so it has one value.
SODA's settings were chosen on the validation prompts only (`tools/tune_miniature.py`, docs/miniature.md).

## Base / SeqKD / SODA

{main}

Exact match: the answer's final value (after its last `Answer:`, else its last line) equals the task's.
Judge score: the paper's GPT-4o Score protocol (`tools/judge.py`, template and choices in docs/judge.md)
with the local teacher as judge; 50 means "as good as the judge's own reference answer".

The judge on the same prompts: the score from each presentation order, how often the two orders
disagree (% of prompts), and mean answer length in tokens beside the reference's (docs/judge.md).

{judge_figures}

## Pairs the judge filter kept

{pair_filter_lines(pair_filter or {})}

The local teacher judged every candidate pair in both orders (`soda pairs --judge-filter`, docs/pairs.md);
a pair is dropped when the teacher's answer does not beat the rejected one (a tie included).

## Rejection-source ablation

{ablation}

Seeds {list(settings.ablation_seeds)} (the q0 row is SODA on the same seeds). The same warmup model q_w per seed; DPO
differs only in the rejected answers: q0's own answers,
a cross-student's (a sibling: SmolLM2 with seeded weight noise, std {settings.sibling_noise} x each
tensor's std), or a careless teacher's (temperature {settings.hot_teacher_temperature}: wrong final values)
cut to at most {int(settings.degrade_keep_fraction * 100)} % of their words.

## Representations (seed {settings.seeds[0]}, {settings.analysis_prompts} held-out prompts)

{_representation_table(out / "analysis" / "analysis.json")}

![CKA by layer](analysis/cka_by_layer.png) ![activations](analysis/last_layer_activations.png)

## Wall time per stage

{timing_table(seconds)}

{ratio_line}

Trainer-internal runtimes (s, per seed): warmup {list(runtimes.get("warmup", []))}, DPO {list(runtimes.get("dpo", []))},
SeqKD {list(runtimes.get("seqkd", []))}.

## Settings

```json
{json.dumps(settings.to_dict(), indent=2)}
```
"""
    atomic_write_text(out / "report.md", text)
    summary["report"] = str(out / "report.md")
    summary["screen"] = "\n\n".join([main, judge_figures, ablation, timing_table(seconds), ratio_line])
    return summary
