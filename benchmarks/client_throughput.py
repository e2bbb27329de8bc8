"""Throughput of the teacher collection path (client core + resumable output) against a
local chat server with fixed latency: concurrency 64 vs 1, then 10 % injected faults.

    python benchmarks/client_throughput.py
    python benchmarks/client_throughput.py --requests 256 --latency 0.1
    python benchmarks/client_throughput.py --tiny    # seconds: every code path at a tiny size (CI)

Each run is `soda_plugin.teacher.collect.run_collection` writing a real output file.
The server (`tests/chat_server.py`, on 127.0.0.1) runs in its own process, as a remote
teacher would: its CPU is not charged to the client. Goal: concurrency 64 at least 30x
faster than 1, and with faults every prompt written exactly once (rows lost = 0). The
client CPU per request is printed because it bounds the speed-up: at 50 ms latency,
64 requests in flight need under 0.8 ms of client CPU per request to reach 30x. The
server's CPU per request is printed too: on a small machine it competes for the cores.
The configurations run in turn, `--repeats` rounds (default 3); times are the median
(min, max) over the rounds, the speed ratio the median of each round's own ratio.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_stats import spread

FAULT_KINDS = ("429", "429-retry-after", "500", "503", "drop", "malformed", "empty_choices")
TINY = {"requests": 32, "latency": 0.01, "concurrency": 8, "fault_rate": 0.3, "repeats": 2}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--latency", type=float, default=0.05, help="server seconds per request")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--fault-rate", type=float, default=0.10)
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of every configuration in turn (the machine may be shared)")
    parser.add_argument("--tiny", action="store_true", help=f"CI size, seconds: {TINY}")
    return parser


def _answer(request):
    from chat_server import Reply

    return Reply(f"answer: {request['messages'][-1]['content']}", "stop", 20, 40)


def _serve(connection, server_options) -> None:
    """The server process: send the URL, serve until told to stop, send the counts."""
    from chat_server import ChatServer

    with ChatServer(_answer, **server_options) as server:
        connection.send(server.base_url)
        connection.recv()  # "go": the client starts now
        cpu = time.process_time()
        connection.recv()  # "stop"
        connection.send({"requests": server.requests, "faulted": dict(server.faulted),
                         "cpu_s": time.process_time() - cpu})


def _run(prompts, server_options, concurrency, workdir):
    import multiprocessing

    from soda_plugin.client import ClientSettings
    from soda_plugin.teacher.collect import TeacherRequest, run_collection

    out = Path(workdir) / f"teacher-c{concurrency}-{time.monotonic_ns()}.jsonl"
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(theirs, server_options), daemon=True)
    server.start()
    try:
        settings = ClientSettings(base_url=ours.recv(), model="bench", concurrency=concurrency, timeout_s=10.0,
                                  max_attempts=8)
        ours.send("go")
        start, cpu = time.perf_counter(), time.process_time()
        summary = run_collection(prompts, out, settings=settings, request=TeacherRequest("bench", max_tokens=64),
                                 progress=False)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        ours.send("stop")
        counts = ours.recv()
    finally:
        server.join(timeout=10)
    ids = [json.loads(line)["prompt_id"] for line in out.read_text().splitlines()]
    return {"seconds": seconds, "cpu_ms_per_request": 1000 * cpu / max(counts["requests"], 1),
            "server_cpu_ms_per_request": 1000 * counts["cpu_s"] / max(counts["requests"], 1),
            "http_requests": counts["requests"], "faults_injected": counts["faulted"],
            "retries": dict(summary.usage.retries), "failed": dict(summary.failed), "rows_written": len(ids),
            "duplicate_rows": len(ids) - len(set(ids)), "rows_lost": len(prompts) - len(set(ids))}


def summarize(runs: list[dict]) -> dict:
    """Figures of one configuration's rounds: times as their spread, counts of the median
    round, the rows lost or duplicated of the worst one (the goal is 0 in every round)."""
    middle = sorted(runs, key=lambda result: result["seconds"])[(len(runs) - 1) // 2]
    return {**middle, "seconds": [r["seconds"] for r in runs],
            "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in runs),
            "server_cpu_ms_per_request": statistics.median(r["server_cpu_ms_per_request"] for r in runs),
            "failed_total": max(sum(r["failed"].values()) for r in runs),
            "duplicate_rows": max(r["duplicate_rows"] for r in runs), "rows_lost": max(r["rows_lost"] for r in runs)}


def main(args: argparse.Namespace) -> None:
    if args.tiny:
        vars(args).update(TINY)
    os.environ.setdefault("SODA_LOG_LEVEL", "WARNING")  # the per-run summary is printed below instead
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")  # the local server ignores it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    prompts = [[{"role": "user", "content": f"benchmark prompt {i}"}] for i in range(args.requests)]
    latency = {"latency_s": args.latency}
    faulty_options = {**latency, "fault_rate": args.fault_rate, "fault_kinds": FAULT_KINDS, "seed": 0}

    configurations = {f"concurrency {args.concurrency}": (latency, args.concurrency), "concurrency 1": (latency, 1),
                      f"concurrency {args.concurrency}, {args.fault_rate:.0%} faults": (faulty_options, args.concurrency)}
    runs = {name: [] for name in configurations}
    with tempfile.TemporaryDirectory() as workdir:
        # Warm-up, both concurrencies: imports, first connections, code paths.
        _run(prompts[:64], latency, args.concurrency, workdir)
        _run(prompts[:8], latency, 1, workdir)
        # The same process layout for every configuration: a fresh server process, the
        # client in this process, the same prompts and output handling. Rounds, not one
        # configuration's repeats in a row: a slow spell of the machine hits all of them.
        for _ in range(args.repeats):
            for name, (options, concurrency) in configurations.items():
                runs[name].append(_run(prompts, options, concurrency, workdir))
    fast, serial, faulty = (summarize(r) for r in runs.values())
    print(f"{args.requests} requests, server latency {args.latency * 1000:.0f} ms, {args.repeats} rounds "
          f"(after a warm-up run), times median (min, max), counts of the median round, {os.cpu_count()} cores")
    for name, result in zip(configurations, (fast, serial, faulty)):
        print(f"{name:<28} {spread(result['seconds'])} s  {args.requests / statistics.median(result['seconds']):7.1f} "
              f"req/s  client cpu {result['cpu_ms_per_request']:.2f} ms/request  "
              f"server cpu {result['server_cpu_ms_per_request']:.2f} ms/request  "
              f"http requests {result['http_requests']}  faults injected {sum(result['faults_injected'].values())}  "
              f"retries {sum(result['retries'].values())}  failed (worst round) {result['failed_total']}  "
              f"rows written {result['rows_written']}  duplicates (worst) {result['duplicate_rows']}  "
              f"rows lost (worst) {result['rows_lost']}")
    print(f"faults by kind: {faulty['faults_injected']}; retries by kind: {faulty['retries']}")
    ratios = [s / f for s, f in zip(serial["seconds"], fast["seconds"])]
    print(f"speed ratio concurrency {args.concurrency} / 1: {spread(ratios, '.1f')}x (goal >= 30x)")


if __name__ == "__main__":
    main(make_parser().parse_args())
