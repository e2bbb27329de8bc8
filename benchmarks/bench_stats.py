"""How the benchmarks print repeated timings. A helper, not a benchmark."""

import statistics


def spread(values: list[float], fmt: str = ".2f") -> str:
    """`median M (min A, max B)`, each formatted with `fmt`."""
    return f"median {statistics.median(values):{fmt}} (min {min(values):{fmt}}, max {max(values):{fmt}})"
