"""`soda <stage> ...`: the pipeline's stages, in order, behind one command."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple, Sequence


class Stage(NamedTuple):
    module: str  # soda_plugin.cli.<module>: make_parser(prog) and main(args)
    tool: str  # the same command from a clone: python tools/<tool>
    summary: str  # one line in `soda --help`; the stage's own --help has the rest


# Pipeline order. Training itself is Axolotl's: `axolotl train <recipe>` before `judge`; it runs the
# reference pass itself, so `reference` is there to do it ahead of time.
STAGES: dict[str, Stage] = {
    "fetch": Stage("fetch", "", "copy the recipes and their DeepSpeed JSON into a folder (soda fetch recipes [DIR])"),
    "teacher": Stage("teacher", "collect_teacher.py", "collect the black-box teacher's answers to the training prompts"),
    "snapshot": Stage("snapshot", "snapshot_q0.py", "sample the untouched student's (q0) answers to the same prompts, once"),
    "pairs": Stage("pairs", "build_pairs.py", "build preference pairs: teacher answer (chosen) x q0 answer (rejected)"),
    "reference": Stage("reference", "reference_logps.py", "store q_w's reference log-probs of the DPO pairs ahead of training (optional)"),
    "judge": Stage("judge", "judge.py", "answer | score | table: the GPT-4o Score of trained students"),
    "cost": Stage("cost", "cost.py", "compare the cost (wall time, steps, GPU-hours, peak memory) of finished runs: soda cost RUN_DIR ..."),
    "analyze": Stage("analyze", "analyze.py", "representation analysis: CKA to the base model, activation statistics"),
    "share": Stage("share", "share.py", "publish a trained student to the Hub: model, card, recipe bundle"),
    "demo": Stage("demo", "cpu_demo.py", "the whole pipeline in miniature on a CPU (docs/miniature.md; --quick: the CI-sized run)"),
}


def _stage_lines() -> str:
    width = max(map(len, STAGES))
    lines = []
    for name, stage in STAGES.items():
        lines.append(f"  {name:<{width}}  {stage.summary}")
        if name == "reference":
            lines.append(f"  {'':<{width}}  (train: axolotl train recipes/<student>_soda.yml, warmup -> DPO)")
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    from soda_plugin import __version__

    parser = argparse.ArgumentParser(
        prog="soda", usage="soda <stage> [options]   (soda <stage> --help)",
        description="SODA (Semi On-policy Distillation with Alignment), one subcommand per stage in pipeline "
                    "order:\n\n" + _stage_lines(),
        epilog="From a clone, `python tools/<name>.py` runs the same stage with the same options.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", nargs="?", choices=list(STAGES), metavar="<stage>", help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"soda {__version__}")
    return parser


def stage_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The stage's own parser (the one `tools/<tool>` uses), named `soda <name>`, and its module."""
    module = importlib.import_module(f"soda_plugin.cli.{STAGES[name].module}")
    return module.make_parser(prog=f"soda {name}"), module


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STAGES:
        parser, module = stage_parser(argv[0])
        code = module.main(parser.parse_args(argv[1:]))
        return code if isinstance(code, int) else 0
    parser = make_parser()
    parser.parse_args(argv)  # --help, --version and unknown stages exit here
    parser.print_help(sys.stderr)
    return 2
