"""Wall time of the miniature's paired two-level bootstrap (`soda_plugin.miniature.stats`).

    python benchmarks/bootstrap_intervals.py            # 3 seeds x 240 prompts, 10,000 resamples, 5 rounds
    python benchmarks/bootstrap_intervals.py --tiny     # CI size: the same call, 2 rounds

The report computes one such interval per comparison (SODA - SeqKD, and each method against
q_w, for exact match and the judge score), so each must take well under a second (goal:
< 1 s per interval on one core). The data is 0/1 exact match with a known shift: b is a
with `--flips` of each seed's ones turned to zero, so the interval's mean is
100 x flips / prompts points; it is printed beside the expected value.
"""

import argparse
import time

from bench_stats import spread

TINY = {"repeats": 2}
GOAL_SECONDS = 1.0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=240, help="the full budget's n_test")
    parser.add_argument("--flips", type=int, default=30, help="ones turned to zero per seed in b")
    parser.add_argument("--resamples", type=int, default=10000, help="the report's default")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (the machine may be shared)")
    parser.add_argument("--tiny", action="store_true", help=f"CI size, seconds: {TINY}")
    return parser


def shifted_pair(seeds: int, prompts: int, flips: int):
    import numpy as np

    rng = np.random.default_rng(0)
    a = (rng.random((seeds, prompts)) < 0.6).astype(float)
    b = a.copy()
    for row in b:
        row[rng.choice(np.flatnonzero(row == 1), size=flips, replace=False)] = 0.0
    return a, b


def main(args: argparse.Namespace) -> None:
    from soda_plugin.miniature import stats

    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    a, b = shifted_pair(args.seeds, args.prompts, args.flips)
    stats.paired_difference(a, b, resamples=100)  # warm-up
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        interval = stats.paired_difference(a, b, resamples=args.resamples)
        seconds.append(time.perf_counter() - start)
    met = "met" if max(seconds) < GOAL_SECONDS else "NOT met"
    print(f"{args.seeds} seeds x {args.prompts} prompts, {args.resamples} resamples, {args.repeats} rounds")
    print(f"  paired_difference s  {spread(seconds, '6.3f')}  (goal < {GOAL_SECONDS:.0f} s: {met})")
    print(f"  interval             {interval.format(2)}  (expected mean {100 * args.flips / args.prompts:.2f})")


if __name__ == "__main__":
    main(make_parser().parse_args())
