"""The dataset card (`README.md`) and `build_report.json` of a pair-builder output.

Neither may ever hold a credential: manifest keys that look like one are dropped, and
the values of credential-like environment variables are masked in the final text.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from .reasons import DropReason
from .writer import DATA_DIR, PAIR_COLUMNS, SPLIT

CARD = "README.md"
REPORT = "build_report.json"
REDACTED = "<redacted>"
_SECRET_NAME = re.compile(r"key|token|secret|passw|auth|credential|cookie|header", re.IGNORECASE)
_MIN_SECRET_LEN = 6  # shorter env values ("1", "true") would mask ordinary words


def sanitize(value: Any) -> Any:
    """A copy without keys that look like credentials, at any depth."""
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items() if not _SECRET_NAME.search(str(k))}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    return value


def mask_secrets(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace the value of every credential-like environment variable found in `text`."""
    environ = os.environ if environ is None else environ
    for name, value in environ.items():
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LEN and value in text:
            text = text.replace(value, REDACTED)
    return text


def _snapshot_meta(snapshot) -> dict[str, Any]:
    manifest = sanitize(snapshot.manifest or {})
    sampling = manifest.get("sampling") or {}
    return {
        "path": str(snapshot.path),
        "label": snapshot.label,
        "model": manifest.get("model"),
        "backend": manifest.get("backend"),
        "engine_version": manifest.get("engine_version"),
        "sampling": sampling,
        "seed": manifest.get("seed", sampling.get("seed") if isinstance(sampling, dict) else None),
        "manifest": manifest,
    }


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return name
    return "n>10M"


def _front_matter(kept: int) -> str:
    meta = {
        "pretty_name": "SODA preference pairs",
        "task_categories": ["text-generation"],
        "tags": ["soda", "dpo", "distillation", "preference", "synthetic"],
        "size_categories": [_size_category(kept)],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": SPLIT, "path": f"{DATA_DIR}/{SPLIT}-*"}]}],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _card_text(report: dict[str, Any]) -> str:
    lines = [
        _front_matter(report["counts"]["kept"]),
        "# SODA preference pairs\n",
        "Preference rows for SODA (Semi On-policy Distillation with Alignment): DPO where the "
        "chosen answer is the black-box teacher's and the rejected answer is the student's own "
        "sample (q0), or another source for ablations. Built by `soda_plugin.pairs`.\n",
        f"- Teacher: {report['teacher']}",
        f"- Student: {report['student']}",
        f"- Teacher files: {', '.join(report['inputs']['teacher_files'])}",
        "- Settings: " + ", ".join(f"`{k}`={v}" for k, v in report["settings"].items()),
        "",
        "## Columns\n",
        "`" + "`, `".join(PAIR_COLUMNS) + "`: the first three are what the `soda` dataset type "
        "reads (`content` = prompt messages, `teacher_response` = chosen, `student_response` = "
        "rejected); the others record where each rejected answer came from.\n",
        "## Rejection sources (snapshots)\n",
        "| path | label | model | backend | engine | sampling | seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report["inputs"]["snapshots"]:
        sampling = json.dumps(s["sampling"], sort_keys=True) if s["sampling"] else ""
        lines.append(f"| {s['path']} | {s['label'] or ''} | {s['model'] or ''} | {s['backend'] or ''} "
                     f"| {s['engine_version'] or ''} | {sampling} | {'' if s['seed'] is None else s['seed']} |")
    counts = report["counts"]
    lines += ["", "## Kept pairs by `rejected_source`\n", "| rejected_source | pairs |", "|---|---|"]
    lines += [f"| {source} | {n} |" for source, n in counts["kept_by_source"].items()]
    lines += [
        "", "## Counts\n",
        f"Read {counts['teacher_rows']} teacher rows and {sum(counts['snapshot_rows'].values())} "
        f"snapshot rows; kept **{counts['kept']}** pairs.\n",
        "| drop reason | count | unit |", "|---|---|---|",
    ]
    lines += [f"| {r.value} | {counts['dropped'][r.value]} | {r.unit.value} |" for r in DropReason]
    if report.get("judge_filter"):
        lines += _judge_filter_lines(report["judge_filter"])
    lines += [
        "", "## Use with Axolotl\n", "```yaml", "rl: dpo", "datasets:",
        f"  - path: <this folder>/{DATA_DIR}", "    ds_type: parquet", "    type: soda", "```", "",
    ]
    return "\n".join(lines)


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _scores(verdict) -> str:
    return "none" if verdict is None else " ".join(f"{v:g}" for v in verdict)


def _judge_filter_lines(block: dict[str, Any]) -> list[str]:
    """The card's section on the teacher-vs-q0 judge filter: rule, counts, calls, examples."""
    s, c, calls = block["settings"], block["counts"], block["calls"]
    fate = "dropped (drop reason `teacher_not_better`)" if s["action"] == "drop" else "kept, flagged"
    lines = [
        "", "## Teacher-vs-q0 judge filter\n",
        f"Judge `{s['judge_model']}` at {s['base_url']} (template `{s['template']}`, sha `{s['template_sha']}`, "
        f"temperature {s['temperature']}) saw every pair that passed the other checks in both orders (teacher as "
        f"Assistant 1, then as Assistant 2). The teacher wins when its mean T/(T+Q) over both orders exceeds "
        f"0.5 + {s['margin']:g} (a tie is not a win). Pairs it does not win are {fate}; pairs without both "
        f"verdicts are {'kept, marked `unjudged_*`' if s['unjudged'] == 'keep' else 'a failed build'}. "
        "Each pair's mark is its `judge_verdict` column, the teacher's score `judge_teacher_score`.\n",
        "| judge_verdict | pairs |", "|---|---|",
        f"| judged | {c['judged']} |",
    ]
    lines += [f"| {mark} | {c[mark]} |" for mark in ("teacher_won", "teacher_not_better", "unjudged_unparsable",
                                                     "unjudged_failed")]
    lines += [f"| kept / dropped | {c['kept']} / {c['dropped']} |", "",
              f"Verdicts: {calls['verdicts_new']} new, {calls['verdicts_cached']} cached, "
              f"{calls['unparsable_retried']} unparsable asked again, {calls['verdicts_unparsable']} still "
              f"unparsable, failed requests {calls['verdicts_failed'] or 0}; judge requests this run: "
              f"{block['usage']['requests']} answered, {block['usage']['failures']} failed."]
    for mark, examples in block["examples"].items():
        if not examples:
            continue
        lines += ["", f"Examples, `{mark}`:\n"]
        for e in examples:
            score = "n/a" if e["teacher_score"] is None else f"{e['teacher_score']:.3f}"
            lines.append(f"- prompt {_code(e['prompt'])}; teacher {_code(e['teacher'])}; q0 {_code(e['q0'])}; "
                         f"verdict teacher first `{_scores(e['teacher_first'])}`, q0 first "
                         f"`{_scores(e['q0_first'])}`; teacher score {score}")
    return lines


def write_card_and_report(out_dir: Path, report, snapshots: Sequence, teacher_files: list[str],
                          settings: dict[str, Any], *, teacher_name: str | None,
                          student_name: str | None) -> dict[str, Any]:
    metas = [_snapshot_meta(s) for s in snapshots]
    student = student_name or next((m["model"] for m in metas if m["model"]), None) or settings.get("tokenizer")
    data = {
        "teacher": teacher_name or "not given (see teacher files)",
        "student": student or "not given",
        "inputs": {"teacher_files": teacher_files, "snapshots": metas},
        "settings": settings,
        "counts": {
            "teacher_rows": report.teacher_rows, "snapshot_rows": report.snapshot_rows,
            "kept": report.kept, "dropped": report.dropped, "kept_by_source": report.kept_by_source,
        },
        "drop_reason_units": {r.value: r.unit.value for r in DropReason},
        "judge_filter": report.judge_filter,
        "files": report.files,
    }
    out_dir = Path(out_dir)
    (out_dir / REPORT).write_text(mask_secrets(json.dumps(data, indent=2, sort_keys=False)) + "\n")
    (out_dir / CARD).write_text(mask_secrets(_card_text(data)))
    return data
