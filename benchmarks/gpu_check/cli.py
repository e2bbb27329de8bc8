"""The check's command line: run the phases, write the table (`gpu_check.md`), JSON and logs."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .settings import MIN_PHASE_S, PHASES, make_settings, paths

REPO = Path(__file__).resolve().parents[2]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description="soda's real chain on the user's GPU machine: one table.")
    parser.add_argument("--cpu", action="store_true", help="tiny model, float32, on CPU (the CI-sized dry run)")
    parser.add_argument("--out", help="folder for gpu_check.md/.json/.log (default: $OUT, else outputs/gpu_check)")
    parser.add_argument("--model", choices=["qwen2.5-1.5b", "qwen2.5-3b"], default="qwen2.5-1.5b")
    parser.add_argument("--prompt-tokens", type=int, default=None)
    parser.add_argument("--response-tokens", type=int, default=None)
    parser.add_argument("--sft-steps", type=int, default=None)
    parser.add_argument("--dpo-steps", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=None, help="whole-run budget (default 480 GPU, 600 CPU)")
    parser.add_argument("--phases", help=f"comma-separated subset of {','.join(n for n, _, _ in PHASES)}")
    parser.add_argument("--site", help="the check's site folder (stand-ins; on the GPU also the wheels). Default: "
                                       "/tmp/soda-gpu/site-packages, or <workdir>/standins/site-packages with --cpu")
    parser.add_argument("--workdir", help="where models and logs go (default: a temp folder, removed after)")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--launcher", choices=["spawn", "fork"], default=None,
                        help="how phases start: a fresh process each (default on GPU) or a fork of this process "
                             "after importing torch/transformers/trl once (default with --cpu)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    return parser


def prepare_site(settings: dict[str, Any]) -> list[str]:
    """Write the stand-ins into the check's site folder; with --cpu also build the GPU machine's view."""
    from .gpu_view import build_view
    from .standins import STANDINS, write_standins

    written = write_standins(Path(settings["site"]))
    if settings["gpu_view"]:
        build_view(Path(settings["gpu_view"]), set(STANDINS))
    return written


def run_phases(args, settings, settings_path: Path, env: dict[str, str], budget: float, t0: float):
    from .runner import last_error_line, preimport, run_forked, run_subprocess

    wanted = args.phases.split(",") if args.phases else [name for name, _, _ in PHASES]
    launcher = args.launcher or ("fork" if args.cpu else "spawn")
    if launcher == "fork":
        os.environ.update(env)
        preimport()
    workdir = Path(settings["workdir"])
    phases: dict[str, dict[str, Any]] = {}
    log_text: list[str] = []
    for name, gpu_timeout, cpu_timeout in PHASES:
        if name not in wanted:
            phases[name] = {"status": "skipped", "error": "not requested (--phases)"}
            continue
        left = budget - (time.monotonic() - t0) - 5
        timeout = min(cpu_timeout if args.cpu else gpu_timeout, left)
        if timeout < MIN_PHASE_S:
            phases[name] = {"status": "skipped", "error": f"out of time budget ({left:.0f} s left of {budget:.0f} s)"}
            continue
        log, result_path = workdir / f"phase_{name}.log", workdir / f"phase_{name}.json"
        result_path.unlink(missing_ok=True)
        phase_env = dict(env, SODA_GPU_CHECK_PHASE_TIMEOUT=str(int(timeout)))
        print(f"[gpu_check] {name}: starting (timeout {timeout:.0f} s)", flush=True)
        if launcher == "fork":
            code, wall, rss = run_forked(name, settings_path, log, timeout, phase_env)
        else:
            code, wall, rss = run_subprocess([sys.executable, "-m", "benchmarks.gpu_check", "--phase", name,
                                              "--settings", str(settings_path)], log, timeout, phase_env)
        try:
            record = json.loads(result_path.read_text())
        except (OSError, ValueError):
            record = {"status": "failed", "error": None, "values": {}}
        if code == "timeout":
            record["status"], record["error"] = "failed", f"timeout after {wall:.0f} s (limit {timeout:.0f} s)"
        elif code != 0 or record.get("status") == "running":
            record["status"] = "failed"
            record["error"] = record.get("error") or f"exit {code}: {last_error_line(log)}"
        record.update(wall_s=round(wall, 1), rss_mb=round(rss, 1), exit=code)
        phases[name] = record
        text = log.read_text(errors="replace") if log.is_file() else ""
        log_text.append(f"===== phase {name}: {record['status']} ({wall:.1f} s) =====\n" + text[-150_000:])
        shown = record["status"].upper() + (f": {record['error']}" if record.get("error") else "")
        print(f"[gpu_check] {name}: {shown} ({wall:.1f} s)", flush=True)
    return phases, log_text, launcher


def main(args: argparse.Namespace) -> int:
    from .table import build_rows, render_markdown

    t0 = time.monotonic()
    out_dir = Path(args.out or os.environ.get("OUT") or (REPO / "outputs" / "gpu_check")).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="soda_gpu_check_"))
    workdir.mkdir(parents=True, exist_ok=True)
    settings = make_settings(args, workdir)
    settings["standins"] = prepare_site(settings)
    settings_path = workdir / "settings.json"
    settings_path.write_text(json.dumps(settings, indent=1))
    budget = args.budget_s or (600 if args.cpu else 480)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false",
               TQDM_DISABLE="1", PYTHONUNBUFFERED="1", HF_DATASETS_CACHE=str(paths(settings)["hf_cache"]),
               HF_HOME=str(workdir / "hf_home"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    print(f"[gpu_check] mode {settings['mode']}, model {settings['model']}, workdir {workdir}, out {out_dir}, "
          f"site {settings['site']}, budget {budget:.0f} s", flush=True)
    phases, log_text, launcher = run_phases(args, settings, settings_path, env, budget, t0)

    total = time.monotonic() - t0
    title = (f"soda GPU check ({settings['mode']}, {settings['model']}), {time.strftime('%Y-%m-%d %H:%M:%S')}, "
             f"total {total:.0f} s")
    rows, notes = build_rows(settings, phases)
    markdown = render_markdown(title, rows, notes)
    report = {"title": title, "total_wall_s": round(total, 1), "settings": settings, "phases": phases,
              "launcher": launcher, "rows": rows, "notes": notes}
    (out_dir / "gpu_check.md").write_text(markdown)
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "gpu_check.log").write_text("\n".join(log_text)[-4_000_000:])
    print("\n" + markdown, flush=True)
    print(f"[gpu_check] wrote {out_dir / 'gpu_check.md'}, gpu_check.json, gpu_check.log", flush=True)
    if not args.keep_workdir and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(p.get("status") == "failed" for p in phases.values()) else 0


def run(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    if args.phase:
        from .runner import run_phase_child

        return run_phase_child(args.phase, args.settings)
    return main(args)
