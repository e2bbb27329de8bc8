"""Tokens/s of the q0 snapshot through Ray against the same engine without Ray, on this machine.

    python benchmarks/snapshot_ray.py                  # SmolLM2, transformers, 1 Ray worker
    python benchmarks/snapshot_ray.py --workers 2      # 2 workers (each 1 CPU: Ray's OMP_NUM_THREADS)
    python benchmarks/snapshot_ray.py --tiny           # seconds: a tiny random model (CI)

Each round runs the snapshot twice into fresh folders, in alternating order: `plain` (the
engine built in this process, `run_snapshot`) and `ray` (`--ray-address local`: a local
cluster started and stopped by soda, `--workers` actors each building the same engine).
Sampled at temperature 1 with per-prompt seeds, so both must write the same answers
(checked every round). Per run:
  wall tok/s     completion tokens / the whole call (engine load; for Ray also the
                 cluster's and the workers' start)
  first shard s  from the call to the first shard file's mtime: the fixed start-up cost
The overhead is Ray's slowdown, (plain tok/s / ray tok/s - 1), median (min, max) of each
round's own; on a long run only the start-up difference remains. (A rate between shard
files would mislead: the driver receives Ray's batches in bursts, not as they finish.) The local cluster gets RAY_AUTH_MODE=disabled and a short RAY_TMPDIR unless
they are set (no token under ~/.ray; Ray's socket paths must stay under 107 characters).
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench_models import DEFAULT_MODEL, resolve_model
from bench_stats import spread

TINY = {"prompts": 12, "max_tokens": 6, "repeats": 1, "shard_size": 4}  # one round: each starts a Ray cluster


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help=f"CI size, a tiny random model: {TINY}")
    return parser


def rates(out: Path, started: float, seconds: float) -> tuple[float, float]:
    """(wall tok/s, seconds to the first shard file) of a finished snapshot folder."""
    import json

    from soda_plugin.snapshot import store

    shards = store.shard_paths(out)
    tokens = sum(json.loads(line)["response_tokens"] for p in shards for line in p.read_text().splitlines())
    return tokens / seconds, min(p.stat().st_mtime for p in shards) - started


def answers(out: Path) -> dict:
    from soda_plugin.snapshot import store

    return {(row["prompt_id"], row["sample_index"]): row["response"] for row in store.iter_rows(out)}


def main(args: argparse.Namespace) -> None:
    from soda_plugin.miniature.tasks import generate_tasks
    from soda_plugin.snapshot.engine import EngineInfo, SamplingSettings, create_engine
    from soda_plugin.snapshot.ray_launcher import RayLaunch
    from soda_plugin.snapshot.runner import run_snapshot

    if args.tiny:
        vars(args).update(TINY)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray_tmp = None
    if "RAY_TMPDIR" not in os.environ:
        ray_tmp = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="soda-ray-", dir="/tmp")
    prompts = [t.messages() for t in generate_tasks(args.prompts, seed=1)]
    settings = SamplingSettings(temperature=1.0, max_tokens=args.max_tokens, seed=0)
    options = {"batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as workdir:
        model = resolve_model(args.tiny, args.model, workdir)
        launch = RayLaunch(address="local", workers=args.workers, backend="transformers", model=model,
                           engine_options=options, info=EngineInfo("transformers", model, "bench", options),
                           shard_timeout_s=600)

        def plain(out: Path) -> None:
            engine = create_engine("transformers", model, **options)
            try:
                run_snapshot(engine, prompts, out, settings, source="bench", shard_size=args.shard_size, progress=False)
            finally:
                engine.close()

        def through_ray(out: Path) -> None:
            run_snapshot(launch, prompts, out, settings, source="bench", shard_size=args.shard_size, progress=False)

        figures = {"plain": [], "ray": []}
        identical = 0
        for repeat in range(args.repeats):
            outs = {}
            order = [("plain", plain), ("ray", through_ray)]
            for name, run in order if repeat % 2 == 0 else order[::-1]:
                outs[name] = Path(workdir) / f"{name}-{repeat}"
                started, start = time.time(), time.perf_counter()
                run(outs[name])
                figures[name].append(rates(outs[name], started, time.perf_counter() - start))
            identical += answers(outs["plain"]) == answers(outs["ray"])
    if ray_tmp:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    print(f"\ntransformers, {args.prompts} prompts, temperature 1, max_tokens {args.max_tokens}, shards of "
          f"{args.shard_size}, {args.workers} Ray worker(s), {args.repeats} alternating rounds, median (min, max)")
    for name in ("plain", "ray"):
        print(f"  {name:5s} wall tok/s      {spread([r[0] for r in figures[name]], '8.1f')}")
        print(f"  {name:5s} first shard s   {spread([r[1] for r in figures[name]], '8.1f')}")
    overhead = [100 * (p[0] / r[0] - 1) for p, r in zip(figures["plain"], figures["ray"])]
    print(f"  ray overhead, wall    {spread(overhead, '+8.1f')} %")
    print(f"  identical answers   {identical} of {args.repeats} rounds")


if __name__ == "__main__":
    main(make_parser().parse_args())
