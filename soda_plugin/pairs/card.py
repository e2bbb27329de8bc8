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
    lines += [
        "", "## Use with Axolotl\n", "```yaml", "rl: dpo", "datasets:",
        f"  - path: <this folder>/{DATA_DIR}", "    ds_type: parquet", "    type: soda", "```", "",
    ]
    return "\n".join(lines)


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
        "files": report.files,
    }
    out_dir = Path(out_dir)
    (out_dir / REPORT).write_text(mask_secrets(json.dumps(data, indent=2, sort_keys=False)) + "\n")
    (out_dir / CARD).write_text(mask_secrets(_card_text(data)))
    return data
