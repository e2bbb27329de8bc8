"""The models x benchmarks table of a `results.json`, as markdown, CSV, JSON and a PNG chart.

The markdown leads with each model's score on its benchmark's paired prompts (those scored
for every model), adds the model's own-subset score where it was scored on more, then a
table of the judge's own figures (per order, order disagreement, lengths) on those prompts.

Examples:
    A model `soda` with LMSYS 49.2 [47.9, 50.4] on 479 prompts, all scored, is the
    markdown cell `49.2 [47.9, 50.4]` and its CSV row starts
    `soda,lmsys,49.20,47.90,50.40,479,479,0,`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..format.fileio import atomic_write_text
from .grid import benchmark_title as _title, headline, score_grid

SCORE_COLUMNS = ("score", "ci_low", "ci_high")
# The per-subset figures beside the score (judge.figures.SubsetScore), own subset and paired.
FIGURE_COLUMNS = ("student_first", "reference_first", "order_disagreement", "order_flips", "model_tokens",
                  "reference_tokens", "length_controlled")
CSV_COLUMNS = ("model", "benchmark", *SCORE_COLUMNS, "n_prompts", "n_scored", "n_excluded", "excluded",
               *FIGURE_COLUMNS, "clamped_verdicts", "prompt_format", "paired_n",
               *(f"paired_{c}" for c in (*SCORE_COLUMNS, *FIGURE_COLUMNS)))


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def _interval(figures: dict[str, Any]) -> str:
    return f"{figures['score']:.1f} [{figures['ci_low']:.1f}, {figures['ci_high']:.1f}]"


def _cell(record: dict[str, Any] | None) -> str:
    if record is None:
        return "n/a"
    top = headline(record)
    if top["score"] is None:
        cell = "n/a"
    else:
        cell = _interval(top)
    if top is not record and record["n_scored"] != top["n"] and record["score"] is not None:
        cell += f" (own {record['n_scored']}: {record['score']:.1f})"
    return cell


def _diagnostics(document: dict[str, Any]) -> list[str]:
    """The judge's figures on the paired prompts, one row per model and benchmark."""
    has_lc = document["protocol"].get("length_controlled", False)
    header = ["Model", "Benchmark", "prompts", "student first", "reference first", "orders disagree (flips)",
              "tokens: model / reference", *(["length-controlled"] if has_lc else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, row in score_grid(document).items():
        for benchmark in document["benchmarks"]:
            record = row.get(benchmark)
            if record is None or "paired" not in record:
                continue
            p = record["paired"]
            if not p["n"]:
                cells = [str(p["n"])] + ["n/a"] * (len(header) - 3)
            else:
                cells = [str(p["n"]), f"{p['student_first']:.1f}", f"{p['reference_first']:.1f}",
                         f"{100 * p['order_disagreement']:.1f} % ({100 * p['order_flips']:.1f} %)",
                         f"{p['model_tokens']:.1f} / {p['reference_tokens']:.1f}"]
                if has_lc:
                    cells.append("n/a" if p["length_controlled"] is None else f"{p['length_controlled']:.1f}"
                                 + ("*" if p.get("length_extrapolated") else ""))
            lines.append(f"| {model} | {_title(benchmark)} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def _paired_line(document: dict[str, Any]) -> str | None:
    counts = []
    for benchmark in document["benchmarks"]:
        records = [r for r in document["results"] if r["benchmark"] == benchmark and "paired" in r]
        if records:
            counts.append(f"{_title(benchmark)} {records[0]['paired']['n']} of {records[0]['n_prompts']}")
    if not counts:
        return None
    return ("Every model of a benchmark is scored on the same prompts, those scored for all of them: "
            + ", ".join(counts) + ". `(own N: X)` is a model's score on its own N scored prompts, where there "
            "are more.")


def markdown_table(document: dict[str, Any]) -> str:
    benchmarks = document["benchmarks"]
    lines = ["| Model | " + " | ".join(_title(b) for b in benchmarks) + " |",
             "|---|" + "---|" * len(benchmarks)]
    excluded_notes, clamped_notes = [], []
    for model, row in score_grid(document).items():
        lines.append(f"| {model} | " + " | ".join(_cell(row.get(b)) for b in benchmarks) + " |")
        for benchmark in benchmarks:
            record = row.get(benchmark)
            if record is None:
                continue
            if record["excluded"]:
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(record["excluded"].items()))
                excluded_notes.append(f"- {model} / {_title(benchmark)}: {record['n_scored']} of "
                                      f"{record['n_prompts']} prompts scored ({reasons})")
            if record.get("clamped_verdicts"):
                clamped_notes.append(f"- {model} / {_title(benchmark)}: {record['clamped_verdicts']} verdict(s)")
    p = document["protocol"]
    lines += ["", f"GPT-4o Score (100 x mean S/(S+R), both orders; 50 = parity with the reference). Judge "
                  f"`{p['judge_model']}`, template `{p['template']}` ({p['template_sha']}); {p['ci_level']:.0%} "
                  f"bootstrap interval over prompts, {p['bootstrap_resamples']} resamples, seed {p['seed']}."]
    paired = _paired_line(document)
    if paired:
        lines += ["", paired]
    diagnostics = _diagnostics(document)
    if diagnostics:
        lines += ["", "The judge on those prompts (docs/judge.md): the score from each presentation order; how often "
                      "the two orders give different outcomes (win / tie / loss against the reference), flips being "
                      f"a win in one and a loss in the other; mean answer lengths (`{p.get('length_tokenizer')}`)"
                      + ("; the score at equal length (OLS on the log length ratio; `*`: extrapolated, every answer "
                         "shorter or every answer longer than the reference)." if p.get("length_controlled") else "."),
                  "", *diagnostics]
    if clamped_notes:
        scale = "-".join(f"{v:g}" for v in p.get("score_scale", (1, 10)))
        lines += ["", f"Clamped verdicts (a score outside {scale} moved to the nearest end, still scored):",
                  *clamped_notes]
    if excluded_notes:
        lines += ["", "Excluded prompts:", *excluded_notes]
    return "\n".join(lines) + "\n"


def csv_table(document: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in document["results"]:
        excluded = ";".join(f"{k}={v}" for k, v in sorted(r["excluded"].items()))
        paired = r.get("paired") or {}
        writer.writerow([r["model"], r["benchmark"], *(_fmt(r[c]) for c in SCORE_COLUMNS), r["n_prompts"],
                         r["n_scored"], sum(r["excluded"].values()), excluded,
                         *(_fmt(r.get(c)) for c in FIGURE_COLUMNS), _fmt(r.get("clamped_verdicts")),
                         r.get("prompt_format", ""), _fmt(paired.get("n")),
                         *(_fmt(paired.get(c)) for c in (*SCORE_COLUMNS, *FIGURE_COLUMNS))])
    return buffer.getvalue()


def json_table(document: dict[str, Any]) -> str:
    keep = ("score", "ci_low", "ci_high", "n_prompts", "n_scored", "excluded", *FIGURE_COLUMNS, "clamped_verdicts",
            "prompt_format", "paired")
    table = {model: {b: {k: r[k] for k in keep if k in r} for b, r in row.items()}
             for model, row in score_grid(document).items()}
    return json.dumps({"protocol": document["protocol"], "models": document["models"],
                       "benchmarks": document["benchmarks"], "table": table}, indent=2) + "\n"


def write_tables(document: dict[str, Any], out_dir: str | Path, stem: str = "scores") -> dict[str, Path]:
    """Write `<stem>.md`, `.csv`, `.json` and `.png` into `out_dir`; returns the paths by kind."""
    from .chart import write_bar_chart

    out_dir = Path(out_dir)
    paths = {kind: out_dir / f"{stem}.{kind}" for kind in ("md", "csv", "json", "png")}
    atomic_write_text(paths["md"], markdown_table(document))
    atomic_write_text(paths["csv"], csv_table(document))
    atomic_write_text(paths["json"], json_table(document))
    write_bar_chart(document, paths["png"])
    return paths
