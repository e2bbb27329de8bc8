"""Peak RSS of the SFT stage and of DPO with and without a resident reference model.

    python benchmarks/dpo_memory.py                      # SmolLM2-135M-Instruct on CPU, 8 steps each
    python benchmarks/dpo_memory.py --answer-tokens 1024 # answers padded to ~1024 tokens: where logits weigh
    python benchmarks/dpo_memory.py --tiny --workdir D   # a tiny random Llama, 2 steps: the code paths (CI)

Each run is a fresh `python -m axolotl.cli.train` process; its peak RSS comes from
`wait4` (the kernel's high-water mark for that process). Printed as ratios to SFT, at
equal sequences per forward: SFT trains 2 rows per micro batch, DPO 1 pair (its chosen
and rejected answers are one forward of 2 sequences). The last run is a second DPO run
over the reference log-probs the run before it stored (`soda.reference_logps: require`):
no reference forward at all. "full logits" runs set `soda.chunked_logps: false` (TRL's
log-probs from the whole [2, length, vocab] logits, as before soda turned on TRL's chunked
path). Goal (issue 15): DPO <= 1.03 x SFT.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

DPO = {"rl": "dpo", "micro_batch_size": 1}  # 1 pair = 2 sequences per forward, as SFT's 2 rows
FULL_LOGITS = {"chunked_logps": False}  # TRL's log-probs from the [2, T, V] logits
RUNS = {
    "sft": {},
    "dpo, resident reference (TRL default)": {**DPO, "precompute_ref_log_probs": False, "soda": FULL_LOGITS},
    "dpo, precomputed, reference kept (soda off)": {
        **DPO, "precompute_ref_log_probs": True,
        "soda": {**FULL_LOGITS, "free_reference_model": False, "reference_logps": "off"}},
    "dpo, precomputed, full logits": {**DPO, "precompute_ref_log_probs": True, "soda": FULL_LOGITS},
    "dpo, precomputed (soda default)": {**DPO, "precompute_ref_log_probs": True, "output_dir": "dpo_soda"},
    # Same output_dir and pairs as the run above: its store serves every pair.
    "dpo, stored log-probs (a second run)": {**DPO, "precompute_ref_log_probs": True, "output_dir": "dpo_soda",
                                             "soda": {"reference_logps": "require"}},
}
TINY_RUNS = ("sft", "dpo, precomputed (soda default)", "dpo, stored log-probs (a second run)")
LONG_RUNS = ("sft", "dpo, precomputed, full logits", "dpo, precomputed (soda default)")
FILLER = " Then I check the result once more, step by step, to be sure of it."


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="outputs/bench_dpo_memory")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tiny", action="store_true", help="tiny random Llama, 8 rows, 2 steps, 3 of the runs")
    parser.add_argument("--answer-tokens", type=int, default=0,
                        help="pad both answers with a filler to about this many tokens (where the logits weigh: "
                             "SFT, DPO from the full logits, DPO chunked), in <workdir>/long<N>")
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


def write_tiny_pairs(path: Path, n_prompts: int) -> None:
    """No generation: the rejected answer is a rambling restatement (q0's failure mode)."""
    from soda_plugin.miniature.tasks import generate_tasks, teacher_answer

    path.write_text("".join(json.dumps({"content": t.messages(), "teacher_response": teacher_answer(t.question),
                                        "student_response": t.question + " Let me think about it." * (i % 4)}) + "\n"
                            for i, t in enumerate(generate_tasks(n_prompts, seed=0))))


def write_long_pairs(pairs: Path, path: Path, tokenizer_dir: Path, answer_tokens: int) -> None:
    """`pairs` with the filler appended to both answers until each is about `answer_tokens` long."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    per_filler = len(tokenizer(FILLER, add_special_tokens=False)["input_ids"])

    def lengthen(text: str) -> str:
        missing = answer_tokens - len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return text + FILLER * max(0, missing // per_filler)

    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    path.write_text("".join(json.dumps({**row, "teacher_response": lengthen(row["teacher_response"]),
                                        "student_response": lengthen(row["student_response"])}) + "\n"
                            for row in rows))


def main(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pairs = workdir / "pairs.jsonl"
    if args.tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_models import build_model

        args.steps, args.prompts = 2, 8
        model = build_model("llama", workdir / "tiny_llama")
        write_tiny_pairs(pairs, args.prompts)
    else:
        from soda_plugin.smollm2 import convert_smollm2

        model = convert_smollm2(workdir.parent / "models" / "SmolLM2-135M-Instruct")
        if not pairs.is_file():
            write_pairs(model, pairs, args.prompts, max_tokens=48)
    sequence_len = 256
    if args.answer_tokens:
        short_pairs, workdir = pairs, workdir / f"long{args.answer_tokens}"
        workdir.mkdir(exist_ok=True)
        pairs = workdir / "pairs.jsonl"
        write_long_pairs(short_pairs, pairs, model, args.answer_tokens)
        sequence_len = args.answer_tokens + 128  # the prompts are < 100 tokens: nothing is cut
    base = {
        "base_model": str(model), "plugins": ["soda_plugin.SODAPlugin"], "soda": {},
        "datasets": [{"path": str(pairs), "ds_type": "json", "type": "soda"}],
        "sequence_len": sequence_len, "micro_batch_size": 2, "gradient_accumulation_steps": 1,
        "max_steps": args.steps, "learning_rate": 1.0e-5, "optimizer": "adamw_torch",
        "bf16": False, "fp16": False, "tf32": False, "dataset_processes": 1, "val_set_size": 0,
        "save_strategy": "no", "logging_steps": 1, "trl": {"beta": 0.1},
    }
    results = {}
    for name, changes in RUNS.items():
        if (args.tiny and name not in TINY_RUNS) or (args.answer_tokens and name not in LONG_RUNS):
            continue
        slug = name.replace(", ", "_").replace(" ", "_").replace("(", "").replace(")", "")
        cfg = {**base, **changes, "output_dir": str(workdir / changes.get("output_dir", slug))}
        if "rl" not in changes:
            cfg.pop("trl")
        config = workdir / f"{slug}.yml"
        config.write_text(yaml.safe_dump(cfg))
        results[name] = peak_rss_gb(config, workdir / f"{slug}.log")
        print(f"  measured {name}: {results[name][0]:.2f} GB in {results[name][1]:.0f} s", flush=True)
    sft = results["sft"][0]
    what = "tiny random Llama (the figures mean nothing)" if args.tiny else "SmolLM2-135M-Instruct"
    length = f"answers of ~{args.answer_tokens} tokens" if args.answer_tokens else "the pairs' own answers"
    print(f"\nPeak RSS, {what}, CPU float32, 2 sequences per forward, {length}, {args.steps} steps, one run each")
    print(f"{'run':52s} {'peak RSS':>9s} {'x SFT':>7s}")
    for name, (gb, _) in results.items():
        print(f"{name:52s} {gb:7.2f} GB {gb / sft:7.3f}")


if __name__ == "__main__":
    main(make_parser().parse_args())
