"""The models x benchmarks table of a `results.json`, as markdown, CSV, JSON and a PNG chart.

Examples:
    A model `soda` with LMSYS 49.2 [47.9, 50.4] on 479 prompts, all scored, is the
    markdown cell `49.2 [47.9, 50.4]` and the CSV row
    `soda,lmsys,49.20,47.90,50.40,479,479,0,`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..format.fileio import atomic_write_text
from .grid import benchmark_title as _title, score_grid

CSV_COLUMNS = ("model", "benchmark", "score", "ci_low", "ci_high", "n_prompts", "n_scored", "n_excluded", "excluded")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def markdown_table(document: dict[str, Any]) -> str:
    benchmarks = document["benchmarks"]
    lines = ["| Model | " + " | ".join(_title(b) for b in benchmarks) + " |",
             "|---|" + "---|" * len(benchmarks)]
    excluded_notes = []
    for model, row in score_grid(document).items():
        cells = []
        for benchmark in benchmarks:
            record = row.get(benchmark)
            if record is None or record["score"] is None:
                cells.append("n/a")
                continue
            cells.append(f"{record['score']:.1f} [{record['ci_low']:.1f}, {record['ci_high']:.1f}]")
            if record["excluded"]:
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(record["excluded"].items()))
                excluded_notes.append(f"- {model} / {_title(benchmark)}: {record['n_scored']} of "
                                      f"{record['n_prompts']} prompts scored ({reasons})")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    p = document["protocol"]
    lines += ["", f"GPT-4o Score (100 x mean S/(S+R), both orders; 50 = parity with the reference). Judge "
                  f"`{p['judge_model']}`, template `{p['template']}` ({p['template_sha']}); {p['ci_level']:.0%} "
                  f"bootstrap interval over prompts, {p['bootstrap_resamples']} resamples, seed {p['seed']}."]
    if excluded_notes:
        lines += ["", "Excluded prompts:", *excluded_notes]
    return "\n".join(lines) + "\n"


def csv_table(document: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in document["results"]:
        excluded = ";".join(f"{k}={v}" for k, v in sorted(r["excluded"].items()))
        writer.writerow([r["model"], r["benchmark"], _fmt(r["score"]), _fmt(r["ci_low"]), _fmt(r["ci_high"]),
                         r["n_prompts"], r["n_scored"], sum(r["excluded"].values()), excluded])
    return buffer.getvalue()


def json_table(document: dict[str, Any]) -> str:
    keep = ("score", "ci_low", "ci_high", "n_prompts", "n_scored", "excluded")
    table = {model: {b: {k: r[k] for k in keep} for b, r in row.items()} for model, row in score_grid(document).items()}
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
