"""Turn the miniature's measurements into `summary.json`, `report.md` and a printed summary.

Every figure is computed from per-prompt artifacts (answers, judge scores, log-probs), on
one fixed prompt order, so paired statistics pair the same prompts for every model. The
metric definitions are in docs/miniature.md ("What is measured").
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..format.fileio import atomic_write_text, iter_jsonl
from ..format.prompt_id import prompt_id
from ..judge.grid import headline
from . import metrics as text_metrics
from . import stats
from .machine import machine_facts, machine_line
from .report import markdown_table, spread, timing_table
from .runs import BASE, RunId
from .settings import MiniatureSettings

MAIN = {"base": "Base (q0: SmolLM2-135M-Instruct)", "qw": "q_w (the SFT run at step W)",
        "seqkd": "SeqKD (the same SFT run at W + D)", "gad": "GAD (its warmup W + GAD stage D, from q0)",
        "soda": "SODA (q_w + D DPO steps)"}
# The paired comparisons the report gives, headline first: (model, against). A comparison
# pairs the seeds both ran (GAD may run on fewer seeds than the others).
COMPARISONS = (("soda", "seqkd"), ("soda", "gad"), ("soda", "qw"), ("seqkd", "qw"), ("gad", "qw"))
SHORT = {"soda": "SODA", "seqkd": "SeqKD", "gad": "GAD", "qw": "q_w", "base": "Base"}
ABLATION = {"soda": "q0's own answers (SODA)",
            "soda-sibling": "perturbed sibling (SmolLM2 + seeded weight noise: not another model)",
            "soda-degraded": "careless teacher (wrong final value)"}
LABELS = {**MAIN, **{k: v for k, v in ABLATION.items() if k != "soda"}}
GOAL_RATIO = 2.5
RESAMPLES = 10_000


def runs_by_group(runs: Sequence[RunId]) -> dict[str, list[RunId]]:
    """method -> its runs, ordered by seed."""
    groups: dict[str, list[RunId]] = defaultdict(list)
    for run in runs:
        groups[run.method].append(run)
    return {g: sorted(members, key=lambda r: r.seed or 0) for g, members in groups.items()}


class Evidence:
    """Per-prompt results of every model on the test prompts, in the test file's order."""

    def __init__(self, test_file: Path, matches: Mapping[RunId, Mapping[str, bool]],
                 answers: Mapping[RunId, Mapping[str, dict]], judge_scores: Mapping[RunId, Mapping[str, float]]):
        tests = list(iter_jsonl(test_file))
        self.prompt_ids = [prompt_id(row["content"]) for row in tests]
        self.questions = {pid: row["content"][-1]["content"] for pid, row in zip(self.prompt_ids, tests)}
        self.families = {pid: row["family"] for pid, row in zip(self.prompt_ids, tests)}
        self.matches, self.answers, self.judge_scores = matches, answers, judge_scores
        for name in matches:
            for source, table in (("exact match", matches), ("answers", answers), ("judge scores", judge_scores)):
                missing = [pid for pid in self.prompt_ids if pid not in table.get(name, {})]
                if missing:
                    raise ValueError(f"{source} of `{name}` lack {len(missing)} test prompts (first: {missing[0]})")
        self.groups = runs_by_group(list(matches))

    def exact(self, runs: Sequence[RunId]) -> np.ndarray:
        """0/1 matrix seeds x prompts."""
        return np.array([[float(self.matches[n][pid]) for pid in self.prompt_ids] for n in runs])

    def judge(self, runs: Sequence[RunId]) -> np.ndarray:
        """The judge's per-prompt score, a fraction (x 100 is the paper's GPT-4o Score)."""
        return np.array([[self.judge_scores[n][pid] for pid in self.prompt_ids] for n in runs])

    def on_seeds(self, group: str, seeds: Sequence[int]) -> list[RunId]:
        return [r for r in self.groups.get(group, []) if r.seed in set(seeds)]


def rate_interval(values: np.ndarray) -> stats.Interval:
    """Exact match of one group: Wilson over prompts for a single run, else the two-level bootstrap."""
    if values.shape[0] == 1:
        return stats.percent_interval(values[0])
    return stats.bootstrap_mean(values, resamples=RESAMPLES)


def judge_prompt_scores(judge_dir: Path, runs: Sequence[RunId]) -> dict[RunId, dict[str, float]]:
    """run (judged under its folder name, `soda_s0`) -> prompt_id -> the judge's score, mean S/(S+R)
    over both orders (`prompt_scores.jsonl`); the judge's other models are left out."""
    wanted = set(runs)
    scores: dict[RunId, dict[str, float]] = defaultdict(dict)
    for row in iter_jsonl(judge_dir / "prompt_scores.jsonl"):
        run = RunId.parse(row["model"])
        if run in wanted:
            scores[run][row["prompt_id"]] = row["score"]
    return dict(scores)


# Sections ------------------------------------------------------------------------------

def headline_block(ev: Evidence, a: str = "soda", b: str = "seqkd") -> dict[str, Any]:
    """`a` - `b` (SODA - SeqKD by default), paired over seeds and prompts: exact match (points) and judge score."""
    seeds = [r.seed for r in ev.groups[a] if r.on_seed(b) in ev.matches]
    runs_a, runs_b = [RunId(a, s) for s in seeds], [RunId(b, s) for s in seeds]
    ea, eb = ev.exact(runs_a), ev.exact(runs_b)
    return {
        "a": a, "b": b, "seeds": seeds, "n_prompts": len(ev.prompt_ids),
        "exact_match": stats.paired_difference(ea, eb, resamples=RESAMPLES).to_dict(),
        "judge": stats.paired_difference(ev.judge(runs_a), ev.judge(runs_b), resamples=RESAMPLES).to_dict(),
        "per_seed": [{"seed": s, **i.to_dict()} for s, i in
                     zip(seeds, stats.per_seed_differences(ea, eb, resamples=RESAMPLES, seed=0, scale=100.0))],
        "discordant": stats.discordant(ea, eb),
    }


def verdict(block: Mapping[str, Any]) -> str:
    """What the exact-match interval of `a` - `b` says, in words."""
    em, a, b = block["exact_match"], SHORT[block.get("a", "soda")], SHORT[block.get("b", "seqkd")]
    if em["low"] > 0:
        return f"{a} beats {b} on this budget (the interval is above 0)"
    if em["high"] < 0:
        return f"{b} beats {a} on this budget (the interval is below 0)"
    return f"no measurable difference between {a} and {b} on this budget (the interval includes 0)"


def headline_lines(block: Mapping[str, Any]) -> str:
    em, judge = block["exact_match"], block["judge"]
    d = block["discordant"]
    a, b = SHORT[block.get("a", "soda")], SHORT[block.get("b", "seqkd")]
    lines = [f"- **Exact match, {a} - {b}: {em['mean']:+.1f} points [{em['low']:+.1f}, {em['high']:+.1f}]**: "
             f"{verdict(block)} (95 % {em['method']}, {em['resamples']} resamples, {em['n_seeds']} seeds x "
             f"{em['n_prompts']} prompts)",
             f"- Judge score, {a} - {b}: {judge['mean']:+.1f} [{judge['low']:+.1f}, {judge['high']:+.1f}]",
             f"- Prompt-seed cases where only {a} is right: {d['a_only']}; only {b}: {d['b_only']}; "
             f"both: {d['both']}; neither: {d['neither']}",
             "- Per seed: " + "; ".join(f"seed {s['seed']} {s['mean']:+.1f} [{s['low']:+.1f}, {s['high']:+.1f}]"
                                        for s in block["per_seed"]) + f" ({block['per_seed'][0]['method']})"]
    return "\n".join(lines)


def comparison_table(blocks: Sequence[Mapping[str, Any]]) -> str:
    """One row per paired comparison: exact match and judge differences and each seed's."""
    def fmt(i: Mapping[str, Any]) -> str:
        return f"{i['mean']:+.1f} [{i['low']:+.1f}, {i['high']:+.1f}]"

    return markdown_table(["comparison", "exact match points (95 % CI)", "judge (95 % CI)", "per seed (exact match)"],
                          [[f"{SHORT[b['a']]} - {SHORT[b['b']]}", fmt(b["exact_match"]), fmt(b["judge"]),
                            ", ".join(f"{s['mean']:+.1f}" for s in b["per_seed"])] for b in blocks])


def main_rows(ev: Evidence, labels: Mapping[str, str], seeds: Sequence[int] | None = None) -> tuple[list, dict]:
    """Exact match and judge per group (+ exact match by family); rows and their figures."""
    rows, figures = [], {}
    for group, label in labels.items():
        runs = ev.groups.get(group, []) if seeds is None or group == "base" else ev.on_seeds(group, seeds)
        if not runs:
            continue
        exact = ev.exact(runs)
        em = rate_interval(exact)
        judge = stats.bootstrap_mean(ev.judge(runs), resamples=RESAMPLES)
        by_family = {}
        for family in dict.fromkeys(ev.families.values()):
            cols = [i for i, pid in enumerate(ev.prompt_ids) if ev.families[pid] == family]
            by_family[family] = 100.0 * float(exact[:, cols].mean())
        figures[group] = {"runs": [r.label for r in runs], "exact_match": em.to_dict(), "judge": judge.to_dict(), "by_family": by_family}
        rows.append([label, str(len(runs)), em.format(), judge.format()])
    return rows, figures


def family_table(figures: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    families = list(next(iter(figures.values()))["by_family"])
    return markdown_table(["model", *families],
                          [[labels[g], *[f"{f['by_family'][fam]:.1f}" for fam in families]] for g, f in figures.items()])


def teacher_token_counts(model_dir: Path, ev: Evidence) -> dict[str, int]:
    """prompt_id -> tokens of the teacher's answer, in the student's tokenizer."""
    from transformers import AutoTokenizer

    from . import tasks

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return {pid: len(tokenizer(tasks.teacher_answer(q), add_special_tokens=False)["input_ids"])
            for pid, q in ev.questions.items()}


def text_figures(ev: Evidence, teacher_tokens: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """group -> mean over its runs of every `metrics.AnswerMetrics` figure, plus the teacher's."""
    from . import tasks

    teacher_rows = {pid: {"prompt_id": pid, "response": tasks.teacher_answer(q), "finish_reason": "stop",
                          "response_tokens": teacher_tokens[pid]} for pid, q in ev.questions.items()}
    out = {"teacher": text_metrics.answer_metrics(teacher_rows, ev.questions, teacher_tokens).to_dict()}
    for group, runs in ev.groups.items():
        per_run = [text_metrics.answer_metrics(ev.answers[n], ev.questions, teacher_tokens).to_dict() for n in runs]
        out[group] = {k: float(np.mean([r[k] for r in per_run])) for k in per_run[0]}
    return out


TEXT_COLUMNS = {"stop_rate": "stop %", "truncation_rate": "truncated %", "mean_tokens": "tokens",
                "length_ratio": "x teacher length", "over_2x_teacher_rate": "> 2x teacher %",
                "format_rate": "teacher format %", "answer_line_rate": "has `Answer:` %",
                "ramble_rate": "rambles past answer %", "restate_rate": "restates question %"}


def text_table(figures: Mapping[str, Mapping[str, float]], labels: Mapping[str, str]) -> str:
    rows = [[labels.get(g, "Teacher (reference)" if g == "teacher" else g),
             *[f"{figures[g][k]:.2f}" if k == "length_ratio" else f"{figures[g][k]:.1f}" for k in TEXT_COLUMNS]]
            for g in ["teacher", *labels] if g in figures]
    return markdown_table(["model", *TEXT_COLUMNS.values()], rows)


def logp_figures(ev: Evidence, mechanism: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """group -> S (q0's answers), S_head (their first tokens), I (the teacher's answers): mean
    over prompts and seeds of (log p_model - log p_qw(seed)) per token, with bootstrap intervals.
    Base is compared with every seed's q_w."""
    scored = {RunId.parse(name): {r["prompt_id"]: r for r in rows} for name, rows in mechanism["models"].items()}
    ids = sorted({pid.split(":", 1)[1] for pid in next(iter(scored.values()))})
    out = {}
    for group, runs in ev.groups.items():
        if group == "qw":
            continue
        pairs = ([(runs[0], q) for q in ev.groups["qw"]] if group == "base"
                 else [(r, r.on_seed("qw")) for r in runs])
        figures = {}
        for key, kind, logp, count in (("S", "q0", "logp", "n_tokens"), ("S_head", "q0", "logp_head", "n_head"),
                                       ("I", "teacher", "logp", "n_tokens")):
            matrix = np.array([[(scored[m][f"{kind}:{i}"][logp] - scored[q][f"{kind}:{i}"][logp])
                                / max(1, scored[q][f"{kind}:{i}"][count]) for i in ids] for m, q in pairs])
            figures[key] = stats.bootstrap_mean(matrix, resamples=RESAMPLES, scale=1.0).to_dict()
        out[group] = figures
    return out


def logp_table(figures: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    def fmt(i: Mapping[str, Any]) -> str:
        return f"{i['mean']:+.3f} [{i['low']:+.3f}, {i['high']:+.3f}]"

    return markdown_table(["model", "S: q0's answer (nats/token vs q_w)", "S_head: its first 16 tokens",
                           "I: teacher's answer (nats/token vs q_w)"],
                          [[labels[g], fmt(figures[g]["S"]), fmt(figures[g]["S_head"]), fmt(figures[g]["I"])]
                           for g in labels if g in figures])


def movement_figures(ev: Evidence) -> dict[str, dict[str, float]]:
    """group -> how far its greedy answers moved from q_w's (same seed) and from Base's."""
    out = {}
    for group, runs in ev.groups.items():
        if group in ("base", "qw"):
            continue
        vs_qw = [text_metrics.movement(ev.answers[r], ev.answers[r.on_seed("qw")], ev.prompt_ids) for r in runs]
        vs_base = [text_metrics.movement(ev.answers[r], ev.answers[BASE], ev.prompt_ids) for r in runs]
        out[group] = {"changed_vs_qw": float(np.mean([m.changed_rate for m in vs_qw])),
                      "distance_vs_qw": float(np.mean([m.mean_edit_distance for m in vs_qw])),
                      "changed_vs_base": float(np.mean([m.changed_rate for m in vs_base])),
                      "distance_vs_base": float(np.mean([m.mean_edit_distance for m in vs_base]))}
    qw_vs_base = [text_metrics.movement(ev.answers[r], ev.answers[BASE], ev.prompt_ids) for r in ev.groups["qw"]]
    out["qw"] = {"changed_vs_qw": 0.0, "distance_vs_qw": 0.0,
                 "changed_vs_base": float(np.mean([m.changed_rate for m in qw_vs_base])),
                 "distance_vs_base": float(np.mean([m.mean_edit_distance for m in qw_vs_base]))}
    return out


def movement_table(figures: Mapping[str, Mapping[str, float]], labels: Mapping[str, str]) -> str:
    return markdown_table(["model", "answers changed vs q_w %", "token edit distance vs q_w",
                           "answers changed vs Base %", "token edit distance vs Base"],
                          [[labels[g], f"{f['changed_vs_qw']:.1f}", f"{f['distance_vs_qw']:.3f}",
                            f"{f['changed_vs_base']:.1f}", f"{f['distance_vs_base']:.3f}"]
                           for g in labels if g in figures for f in [figures[g]]])


def ablation_block(ev: Evidence, seeds: Sequence[int]) -> tuple[str, dict[str, Any]]:
    rows, figures = main_rows(ev, ABLATION, seeds)
    if "soda-sibling" not in figures:
        return "(not run)", {}
    q0_runs = ev.on_seeds("soda", seeds)
    for row, group in zip(rows, figures):
        if group == "soda":
            row.append("-")
            continue
        diff = stats.paired_difference(ev.exact(ev.on_seeds(group, seeds)), ev.exact(q0_runs), resamples=RESAMPLES)
        figures[group]["minus_q0"] = diff.to_dict()
        row.append(f"{diff.mean:+.1f} [{diff.low:+.1f}, {diff.high:+.1f}]")
    return markdown_table(["negatives", "seeds", "exact match %", "judge score", "exact match - q0 negatives"],
                          rows), figures


def stage_ratio(seconds: Mapping[str, float], runtimes: Mapping[str, Sequence[float]],
                settings: MiniatureSettings) -> float | None:
    """(q0 snapshot + warmup + DPO) / SeqKD: each method's cost per seed, from the trainers' own
    runtimes (start-ups excluded) and the snapshot's wall time. The warmup is the SFT run's first
    W of its W + D steps (same rows per step), so W / (W + D) of its runtime."""
    sft, dpo = (runtimes.get(k) or [] for k in ("sft", "dpo"))  # dpo: SODA's runs, not the ablation's
    if not (sft and dpo):
        return None
    s, d = float(np.mean(sft)), float(np.mean(dpo))
    return (seconds.get("q0 snapshot", 0.0) + s * settings.warmup_steps / settings.total_steps + d) / s


def method_costs(settings: MiniatureSettings) -> dict[str, dict[str, Any]]:
    """Per method, from the stages' `cost.json` files: trainer wall time per seed (mean), optimizer
    steps and the highest peak RSS. SODA is the SFT run's first W of W + D steps (its share of that
    run's time), its reference pass and DPO, plus the q0 snapshot once per seed; SeqKD the SFT run;
    GAD its warmup and GAD stage. Every run trained `settings.concurrent_runs` at a time, alike."""
    from ..cost.recorder import COST_FILENAME
    from ..cost.table import read_stage

    out = settings.out_dir
    snapshot_file = out / "snapshots" / settings.q0_name / COST_FILENAME

    def stage(path: Path):
        return read_stage(path) if path.is_file() else None

    per_method: dict[str, list[tuple[float, int, int | None]]] = defaultdict(list)
    share = settings.warmup_steps / settings.total_steps
    for seed in settings.seeds:
        run = out / "runs" / f"seed{seed}"
        sft = stage(run / "sft" / COST_FILENAME)
        dpo = stage(run / "soda" / COST_FILENAME)
        if sft is not None:
            per_method["seqkd"].append((sft.wall_seconds, sft.optimizer_steps or 0, sft.peak_rss_bytes))
        if sft is not None and dpo is not None:
            extras = [c for c in (stage(run / "sft" / f"checkpoint-{settings.warmup_steps}" / "reference_logps" / COST_FILENAME),
                                  stage(snapshot_file)) if c is not None]
            per_method["soda"].append((share * sft.wall_seconds + dpo.wall_seconds + sum(c.wall_seconds for c in extras),
                                       settings.warmup_steps + (dpo.optimizer_steps or 0),
                                       max((c.peak_rss_bytes or 0) for c in [sft, dpo, *extras])))
        gad = [stage(run / "gad" / "warmup" / COST_FILENAME), stage(run / "gad" / COST_FILENAME)]
        if all(gad):
            per_method["gad"].append((sum(c.wall_seconds for c in gad), sum(c.optimizer_steps or 0 for c in gad),
                                      max((c.peak_rss_bytes or 0) for c in gad)))
    return {method: {"seeds": len(rows), "wall_seconds": float(np.mean([r[0] for r in rows])),
                     "optimizer_steps": int(np.mean([r[1] for r in rows])),
                     "peak_rss_bytes": max(r[2] or 0 for r in rows)} for method, rows in per_method.items()}


def cost_table(costs: Mapping[str, Mapping[str, Any]]) -> str:
    if "seqkd" not in costs:
        return "(no cost.json: every run was reused from an earlier soda without the recorder)"
    base = costs["seqkd"]
    rows = [[SHORT[m], str(c["seeds"]), f"{c['wall_seconds']:.0f}", str(c["optimizer_steps"]),
             f"{c['peak_rss_bytes'] / 1024 ** 3:.2f}", f"{c['wall_seconds'] / base['wall_seconds']:.2f}x",
             f"{c['peak_rss_bytes'] / max(1, base['peak_rss_bytes']):.2f}x"]
            for m in ("seqkd", "gad", "soda") if m in costs for c in [costs[m]]]
    return markdown_table(["method", "seeds", "trainer time per seed (s)", "optimizer steps", "peak RSS (GiB)",
                           "time x SeqKD", "peak RSS x SeqKD"], rows)


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


def judge_bias_table(judged: Mapping[str, Any], groups: Mapping[str, Sequence[RunId]], labels: Mapping[str, str]) -> str:
    """The judge's own figures per group (mean and range over seeds): score per presentation
    order, how often the orders disagree, answer and reference lengths."""
    by_model = {RunId.parse(r["model"]): headline(r) for r in judged["results"]}
    keys = {"student_first": "student first", "reference_first": "reference first",
            "order_disagreement": "orders disagree %", "model_tokens": "tokens", "reference_tokens": "reference tokens"}
    rows = []
    for group, label in labels.items():
        records = [by_model.get(run) for run in groups.get(group, [])]
        if not records or any(r is None or any(r.get(k) is None for k in keys) for r in records):
            continue
        rows.append([label, *[spread([(100.0 if k == "order_disagreement" else 1.0) * r[k] for r in records])
                              for k in keys]])
    return markdown_table(["model", *keys.values()], rows) if rows else "(the judge's results hold no per-order figures)"


def write_report(settings: MiniatureSettings, seconds: Mapping[str, float], runtimes: Mapping[str, Sequence[float]],
                 matches: Mapping[RunId, Mapping[str, bool]], answers: Mapping[RunId, Mapping[str, dict]],
                 judged: Mapping[str, Any],
                 mechanism: Mapping[str, Any], files: Mapping[str, Path],
                 pair_filter: Mapping[str, Mapping[str, int]] | None = None,
                 wall_seconds: float | None = None) -> dict[str, Any]:
    """`answers`: model -> prompt_id -> its answer row (the test prompts' snapshot rows);
    `wall_seconds`: the run's own wall time (stages may overlap)."""
    out = settings.out_dir
    ev = Evidence(files["test"], matches, answers, judge_prompt_scores(out / "eval" / "judge", list(matches)))
    blocks = [headline_block(ev, a, b) for a, b in COMPARISONS if a in ev.groups and b in ev.groups]
    head = blocks[0]
    main, main_figs = main_rows(ev, MAIN)
    teacher_tokens = teacher_token_counts(settings.model_dir, ev)
    text_figs = text_figures(ev, teacher_tokens)
    logp_figs = logp_figures(ev, mechanism)
    move_figs = movement_figures(ev)
    ablation, ablation_figs = (ablation_block(ev, settings.ablation_seeds) if settings.ablation else ("(not run)", {}))
    ratio = stage_ratio(seconds, runtimes, settings)
    costs = method_costs(settings)
    n_mech = len({r["prompt_id"] for rows in mechanism["models"].values() for r in rows}) // 2
    summary = {
        "settings": settings.to_dict(), "stage_seconds": dict(seconds), "total_seconds": sum(seconds.values()),
        "wall_seconds": wall_seconds,
        "trainer_runtimes": dict(runtimes), "ratio_snapshot_soda_over_seqkd": ratio, "method_costs": costs,
        "headline": head, "comparisons": blocks, "main": main_figs, "text_metrics": text_figs, "mechanism": logp_figs,
        "movement": move_figs, "ablation": ablation_figs, "test_prompt_ids": ev.prompt_ids,
        "n_test_prompts": len(ev.prompt_ids), "mechanism_prompts": n_mech,
        "judge_calls": judged.get("calls"), "judge_protocol": judged.get("protocol"),
        "pair_filter": dict(pair_filter or {}), "machine": machine_facts(),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    main_table = markdown_table(["model", "runs", "exact match % (95 % CI)", "judge score (95 % CI)"], main)
    ratio_line = (f"(q0 snapshot + warmup + DPO) / SeqKD, trainer time per seed: "
                  f"**{ratio:.2f}** (goal <= {GOAL_RATIO}; up to {settings.concurrent_runs} training runs at once, "
                  f"each on its share of the cores, for both methods alike)" if ratio is not None else
                  "(q0 snapshot + warmup + DPO) / SeqKD: not measured (no trainer runtime in the logs: "
                  "every run was reused from an earlier invocation)")
    text = f"""# SODA in miniature: SmolLM2-135M-Instruct distilled from a program teacher

Budget: **{settings.budget}**; seeds {list(settings.seeds)}; {settings.n_train} training,
{settings.n_val} validation and {len(ev.prompt_ids)} held-out test prompts (disjoint, data seed {settings.data_seed}).
Every model answered the same {len(ev.prompt_ids)} test prompts (checked). Steps: per seed, one SFT run on
the teacher's answers from q0 for W + D = {settings.total_steps} steps on one schedule (no restart) is SeqKD;
its save at step W = {settings.warmup_steps} is q_w, from which SODA spends the last D = {settings.dpo_steps} steps on DPO.
Both total {settings.total_steps} optimizer steps, and per seed the two are one run up to step W.
GAD (seeds {list(settings.gad_run_seeds)}) starts from q0 too: its warmup of W steps is SFT on the teacher's
answers at the SFT run's rate while its discriminator learns on live rollouts, then its GAD stage of D
steps is GRPO against that discriminator (docs/gad.md): {settings.total_steps} optimizer steps as well.

## Headline: SODA - SeqKD (paired)

{headline_lines(head)}

The interval resamples seeds and prompts with replacement, the same draw for both models
(docs/miniature.md). A positive difference favours SODA.

Each method against the warmup it shares (same seeds, same prompts):

{comparison_table(blocks)}

## Base / q_w / SeqKD / GAD / SODA

{main_table}

Exact match: the answer's final value (after its last `Answer:`, else its last line) equals the task's.
Intervals: Wilson over prompts for a single run, else the seeds x prompts bootstrap; both stay in [0, 100].
Judge score: the paper's GPT-4o Score protocol (`soda judge`) with the local teacher as judge;
50 means "as good as the judge's own reference answer".

Exact match % by task family (mean over seeds):

{family_table(main_figs, MAIN)}

## Mechanism: what DPO against q0's answers changes

Log-probabilities on {n_mech} test prompts (the first of each family in turn), relative to the same
seed's q_w, in nats per token; < 0 means the model finds the answer less likely than q_w does.
q0's answer is Base's own greedy test answer.

{logp_table(logp_figs, LABELS)}

How the answers look (test prompts, mean over seeds; the teacher row is the program's own answers):

{text_table(text_figs, LABELS)}

## Moved from q_w

{movement_table(move_figs, LABELS)}

## The judge on the same prompts

{judge_bias_table(judged, ev.groups, LABELS)}

## Pairs the judge filter kept

{pair_filter_lines(pair_filter or {})}

## Rejection-source ablation (seeds {list(settings.ablation_seeds)})

{ablation}

Every row starts DPO from the same q_w per seed and differs only in the rejected answers. No other
small instruct model ships in a package on the index, so the "cross-student" is SmolLM2 with seeded
weight noise (std {settings.sibling_noise} x each tensor's std): a perturbed copy of q0, not another
model. The careless teacher answers at temperature {settings.hot_teacher_temperature} with a wrong final value.

## Representations (seed {settings.seeds[0]}, {settings.analysis_prompts} held-out prompts)

{_representation_table(out / "analysis" / "analysis.json")}

![CKA by layer](analysis/cka_by_layer.png) ![activations](analysis/last_layer_activations.png)

## Wall time per stage

{timing_table(seconds, wall_seconds)}

{ratio_line}

What each method cost, from every stage's `cost.json` (`soda cost` reads the same files):

{cost_table(costs)}

Trainer-internal runtimes (s, per seed): SFT run (W + D steps) {list(runtimes.get("sft", []))}, SODA's DPO
{list(runtimes.get("dpo", []))}.

## Machine

{machine_line(summary["machine"])}

## Settings

```json
{json.dumps(settings.to_dict(), indent=2)}
```
"""
    atomic_write_text(out / "report.md", text)
    summary["report"] = str(out / "report.md")
    summary["screen"] = "\n\n".join(["Headline: SODA - SeqKD (paired)\n" + headline_lines(head), comparison_table(blocks),
                                     main_table,
                                     logp_table(logp_figs, LABELS), text_table(text_figs, LABELS), ablation,
                                     timing_table(seconds, wall_seconds), ratio_line, cost_table(costs)])
    return summary
