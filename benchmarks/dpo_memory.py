"""Peak RSS of the SFT stage and of DPO with and without a resident reference model.

    python benchmarks/dpo_memory.py            # SmolLM2-135M-Instruct on CPU, 8 steps each

Each run is a fresh `python -m axolotl.cli.train` process; its peak RSS comes from
`wait4` (the kernel's high-water mark for that process). Printed as ratios to SFT.
Goal of the project: DPO with precomputed reference log-probs <= 1.10 x SFT.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

RUNS = {
    "sft": {},
    "dpo, resident reference": {"rl": "dpo", "precompute_ref_log_probs": False},
    "dpo, precomputed, reference kept (soda off)": {
        "rl": "dpo", "precompute_ref_log_probs": True, "soda": {"free_reference_model": False}},
    "dpo, precomputed (soda default)": {"rl": "dpo", "precompute_ref_log_probs": True},
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="outputs/bench_dpo_memory")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=32)
    return parser


def peak_rss_gb(config: Path, log: Path) -> tuple[float, float]:
    env = dict(os.environ, AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "axolotl.cli.train", str(config)],
                                stdout=handle, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training failed, see {log}")
    return usage.ru_maxrss / 1024**2, time.perf_counter() - start  # ru_maxrss is in KiB on Linux


def write_pairs(model: Path, path: Path, n_prompts: int, max_tokens: int) -> None:
    """`soda` rows: the miniature's tasks, the program teacher's answers, q0's greedy answers."""
    from soda_plugin.miniature.tasks import generate_tasks, teacher_answer
    from soda_plugin.snapshot.engine import SamplingSettings
    from soda_plugin.snapshot.transformers_engine import TransformersEngine

    drawn = generate_tasks(n_prompts, seed=0)
    engine = TransformersEngine(str(model), batch_size=8)
    answers = engine.generate([t.messages() for t in drawn], SamplingSettings(temperature=0.0, max_tokens=max_tokens))
    engine.close()
    path.write_text("".join(json.dumps({"content": t.messages(), "teacher_response": teacher_answer(t.question),
                                        "student_response": a[0].text}) + "\n" for t, a in zip(drawn, answers)))


def main(args: argparse.Namespace) -> None:
    from soda_plugin.smollm2 import convert_smollm2

    workdir = Path(args.workdir).resolve()
    model = convert_smollm2(workdir.parent / "models" / "SmolLM2-135M-Instruct")
    pairs = workdir / "pairs.jsonl"
    if not pairs.is_file():
        write_pairs(model, pairs, args.prompts, max_tokens=48)
    base = {
        "base_model": str(model), "plugins": ["soda_plugin.SODAPlugin"], "soda": {},
        "datasets": [{"path": str(pairs), "ds_type": "json", "type": "soda"}],
        "sequence_len": 256, "micro_batch_size": 2, "gradient_accumulation_steps": 1,
        "max_steps": args.steps, "learning_rate": 1.0e-5, "optimizer": "adamw_torch",
        "bf16": False, "fp16": False, "tf32": False, "dataset_processes": 1, "val_set_size": 0,
        "save_strategy": "no", "logging_steps": 1, "trl": {"beta": 0.1},
    }
    results = {}
    for name, changes in RUNS.items():
        slug = name.replace(", ", "_").replace(" ", "_").replace("(", "").replace(")", "")
        cfg = {**base, **changes, "output_dir": str(workdir / slug)}
        if "rl" not in changes:
            cfg.pop("trl")
        config = workdir / f"{slug}.yml"
        config.write_text(yaml.safe_dump(cfg))
        results[name] = peak_rss_gb(config, workdir / f"{slug}.log")
        print(f"  measured {name}: {results[name][0]:.2f} GB in {results[name][1]:.0f} s", flush=True)
    sft = results["sft"][0]
    print(f"\nPeak RSS, SmolLM2-135M-Instruct, CPU float32, batch 2, {args.steps} steps")
    print(f"{'run':48s} {'peak RSS':>9s} {'x SFT':>7s}")
    for name, (gb, _) in results.items():
        print(f"{name:48s} {gb:7.2f} GB {gb / sft:7.3f}")


if __name__ == "__main__":
    main(make_parser().parse_args())
