"""Pair-builder throughput: 200k teacher rows x 200k snapshot rows, wall time and peak RSS.

    python benchmarks/build_pairs.py                 # default 200k rows, in a temp dir
    python benchmarks/build_pairs.py --rows 20000 --tokenizer   # add the length-check figure
    python benchmarks/build_pairs.py --tiny          # seconds: every code path at 2000 rows (CI)

Inputs are synthetic (a few hundred characters per answer, about 1-2% bad rows of each
kind); the teacher file is parquet, the snapshot a store directory of jsonl shards. Each
build runs in a child process so that its peak RSS (`wait4`) is the builder's alone; the
modes' builds are interleaved `--repeats` times, times printed as median (min, max).
Goal: <= 30 s and <= 2 GB peak RSS on 2 cores.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the of and to in is that for it as with was on be by this are from at or an which "
         "answer result value number step first then because therefore compute total sum").split()
TINY = {"rows": 2000, "tokenizer": True, "repeats": 2}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--workdir", help="keep inputs and outputs here (default: a temp dir)")
    parser.add_argument("--tokenizer", action="store_true", help="also time a build with the length check "
                        "(the tiny ChatML tokenizer of tests/tiny_models.py, sequence_len 3584)")
    parser.add_argument("--repeats", type=int, default=3, help="builds per mode, interleaved across modes")
    parser.add_argument("--tiny", action="store_true", help=f"CI size, seconds: {TINY}")
    parser.add_argument("--child", choices=["plain", "tokenizer"], help=argparse.SUPPRESS)
    return parser


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))


def generate(root: Path, rows: int, seed: int = 0) -> tuple[Path, Path]:
    """Teacher parquet + snapshot dir with a few % of every bad-row kind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from soda_plugin.format.prompt_id import prompt_id
    from soda_plugin.snapshot import store

    rng = random.Random(seed)
    teacher, snapshot = [], []
    for i in range(rows):
        content = [{"role": "user", "content": f"Question {i}: " + _text(rng, 15, 40)}]
        kind = rng.random()
        # 2 % of answers are longer than the recipes' 3584 tokens, so the length check must
        # tokenize them; the others are ruled in by their byte size alone.
        answer = _text(rng, 700, 800) if 0.10 <= kind < 0.12 else _text(rng, 40, 90)
        row = {"content": content, "teacher_response": answer, "finish_reason": "stop"}
        if kind < 0.01:
            row["teacher_response"] = "  "
        elif kind < 0.02:
            row["finish_reason"] = "length"
        teacher.append(row)
        if 0.02 <= kind < 0.03:
            teacher.append(dict(row, teacher_response="duplicate " + answer))
        pid = prompt_id(content)
        if 0.03 <= kind < 0.04:
            continue  # teacher row without a snapshot answer
        student = _text(rng, 40, 90)
        sample = {"prompt_id": pid, "sample_index": 0, "prompt": content, "response": student,
                  "finish_reason": "stop", "prompt_tokens": 30, "response_tokens": 80, "source": "q0:bench"}
        if 0.04 <= kind < 0.05:
            sample["response"] = ""
        elif 0.05 <= kind < 0.06:
            sample["response"] = answer
        elif 0.06 <= kind < 0.07:
            sample["finish_reason"] = "length"
        elif 0.07 <= kind < 0.08:
            sample["sample_index"] = "zero"
        snapshot.append(sample)
        if 0.08 <= kind < 0.09:
            snapshot.append(dict(sample, response="dup"))
        if 0.09 <= kind < 0.10:
            snapshot.append(dict(sample, prompt_id=f"orphan{i}"))
    # Malformed teacher rows are not representable in one parquet schema; they live in a jsonl.
    teacher_path = root / "teacher.parquet"
    pq.write_table(pa.Table.from_pylist(teacher), teacher_path)
    with (root / "teacher_bad.jsonl").open("w") as handle:
        for i in range(rows // 100):
            handle.write(json.dumps({"content": "not messages", "teacher_response": "x"}) + "\n")
    snap_dir = root / "snapshot"
    for shard, start in enumerate(range(0, len(snapshot), 20_000)):
        store.write_shard(snap_dir, shard, snapshot[start:start + 20_000])
    store.write_manifest(snap_dir, {"model": "bench", "backend": "synthetic", "sampling": {"temperature": 1.0, "seed": 0}})
    return teacher_path, snap_dir


def child(mode: str, root: Path) -> None:
    from soda_plugin.pairs import build_pairs

    tokenizer = sequence_len = None
    if mode == "tokenizer":
        sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
        from tiny_models import build_tokenizer

        # The paper's lengths: prompts up to 2048 tokens + answers up to 1536.
        tokenizer, sequence_len = build_tokenizer("qwen2"), 2048 + 1536
    start = time.perf_counter()
    report = build_pairs([root / "teacher.parquet", root / "teacher_bad.jsonl"], [root / "snapshot"],
                         root / f"out-{mode}", tokenizer=tokenizer, sequence_len=sequence_len, overwrite=True)
    print(json.dumps({"build_s": round(time.perf_counter() - start, 1), "kept": report.kept, "dropped": {k: v for k, v in report.dropped.items() if v}}))


def measure(mode: str, root: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, "--workdir", str(root)],
                            stdout=subprocess.PIPE, env=dict(os.environ, SODA_LOG_LEVEL="WARNING"))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{mode} build failed (exit {os.waitstatus_to_exitcode(status)})")
    return {"mode": mode, "wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            **json.loads(out.decode().strip().splitlines()[-1])}


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} s (min {min(values):.1f}, max {max(values):.1f})"


def main(args: argparse.Namespace) -> None:
    if args.tiny:
        vars(args).update(TINY)
    if args.child:
        child(args.child, Path(args.workdir))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        generate(root, args.rows)
        print(f"generated {args.rows} teacher + snapshot rows in {time.perf_counter() - t0:.1f}s", flush=True)
        modes = ["plain"] + (["tokenizer"] if args.tokenizer else [])
        runs = {mode: [] for mode in modes}
        for _ in range(args.repeats):  # interleaved: a slow spell of the machine hits every mode
            for mode in modes:
                runs[mode].append(measure(mode, root))
        print(f"{args.repeats} interleaved builds per mode; build_pairs is the builder's own time, the rest "
              f"of the wall time is importing soda_plugin/axolotl")
        for mode, results in runs.items():
            print(f"{mode:<10} wall {spread([r['wall_s'] for r in results])}  "
                  f"build_pairs {spread([r['build_s'] for r in results])}  "
                  f"peak RSS max {max(r['peak_rss_mb'] for r in results):>5} MB  "
                  f"kept {results[-1]['kept']}  dropped {results[-1]['dropped']}", flush=True)


if __name__ == "__main__":
    main(make_parser().parse_args())
