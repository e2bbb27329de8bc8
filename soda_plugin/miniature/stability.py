"""Whether two runs of the miniature agree: the same command on two settings of one machine
(e.g. `ATEN_CPU_CAPABILITY=avx2` and the default kernels) should give the same headline.

    python -m soda_plugin.miniature.stability RUN_A/summary.json RUN_B/summary.json

Prints each run's paired comparisons (SODA - SeqKD, SODA - q_w, SeqKD - q_w) side by side and,
for each, whether the two runs agree: the same sign of the mean and overlapping 95 %
intervals. Where they do not, the experiment is not yet stable and neither figure is a result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from .report import markdown_table
from .summary import SHORT


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def agree(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two intervals (mean, low, high) agree: same sign of the mean and they overlap."""
    return _sign(a["mean"]) == _sign(b["mean"]) and a["low"] <= b["high"] and b["low"] <= a["high"]


def compare(summaries: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> tuple[str, bool]:
    """A table of every paired comparison in each run, and whether all of them agree."""
    blocks = [{(c["a"], c["b"]): c for c in s["comparisons"]} for s in summaries]
    rows, stable = [], True
    for key in blocks[0]:
        figures = [b[key]["exact_match"] for b in blocks if key in b]
        ok = len(figures) == len(blocks) and all(agree(figures[0], f) for f in figures[1:])
        stable &= ok
        rows.append([f"{SHORT[key[0]]} - {SHORT[key[1]]}",
                     *[f"{f['mean']:+.1f} [{f['low']:+.1f}, {f['high']:+.1f}]" for f in figures],
                     "agree" if ok else "**disagree**"])
    table = markdown_table(["exact match points", *labels, "the runs"], rows)
    verdict = ("The runs agree on every comparison." if stable else
               "The runs disagree (sign or non-overlapping intervals): the experiment is not yet stable, "
               "and neither run's figure is a result.")
    return f"{table}\n\n{verdict}\n", stable


def _label(summary: Mapping[str, Any], path: Path) -> str:
    machine = summary.get("machine") or {}
    kernels = machine.get("torch_cpu_capability", "kernels not recorded")
    return f"{path.parent.name} ({kernels})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summaries", type=Path, nargs="+", help="summary.json of each run")
    args = parser.parse_args(argv)
    summaries = [json.loads(p.read_text()) for p in args.summaries]
    text, stable = compare(summaries, [_label(s, p) for s, p in zip(summaries, args.summaries)])
    print(text)
    return 0 if stable else 1


if __name__ == "__main__":
    raise SystemExit(main())
