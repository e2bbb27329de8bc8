"""The batch mode's request counts and cost accounting: a 500-prompt `--batch` collection
against the local batch server (`tests/batch_server.py`, on 127.0.0.1) with injected
failed items (error file, HTTP 500), one malformed and one unreadable result line, and one
expired batch (partial output).

    python benchmarks/teacher_batch.py
    python benchmarks/teacher_batch.py --prompts 2000 --max-requests 400
    python benchmarks/teacher_batch.py --tiny    # seconds: every code path at a tiny size (CI)

Each run is `soda_plugin.teacher.batch.run_batch_collection` writing a real output file
and journal. Expected: every prompt written exactly once (rows = prompts), and only the
failed, malformed and expired items resubmitted, each once: the server's count of
batches that carried each prompt is the proof (`submitted twice` = `resubmitted`).
Cost: the tokens at --price-in / --price-out (online USD per 1M tokens) x --discount.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TINY = {"prompts": 20, "max_requests": 8, "failed_items": 2}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--max-requests", type=int, default=100, help="requests per uploaded file")
    parser.add_argument("--failed-items", type=int, default=10, help="items that fail (HTTP 500, error file)")
    parser.add_argument("--price-in", type=float, default=1.25)
    parser.add_argument("--price-out", type=float, default=10.0)
    parser.add_argument("--discount", type=float, default=0.5)
    parser.add_argument("--tiny", action="store_true", help=f"CI size, seconds: {TINY}")
    return parser


def _answer(request):
    from chat_server import Reply

    text = f"answer: {request['messages'][-1]['content']}"
    return Reply(text, "stop", 20, 40)


def main(args: argparse.Namespace) -> None:
    if args.tiny:
        for name, value in TINY.items():
            setattr(args, name, value)
    os.environ.setdefault("SODA_LOG_LEVEL", "WARNING")  # the summary is printed below instead
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from batch_server import BatchServer

    from soda_plugin.client import ClientSettings
    from soda_plugin.teacher.batch import BatchOptions, run_batch_collection
    from soda_plugin.teacher.collect import TeacherRequest

    prompts = [[{"role": "user", "content": f"Benchmark prompt {i}: explain topic {i % 37}."}]
               for i in range(args.prompts)]
    contents = [p[0]["content"] for p in prompts]
    # The first batch expires after half its items; failures and bad lines fall in the later batches.
    later = contents[args.max_requests:]
    faults = {content: "500" for content in later[:args.failed_items]}
    faults.update({later[args.failed_items]: "malformed", later[args.failed_items + 1]: "garbled"})
    keep = args.max_requests // 2
    options = BatchOptions(poll_s=0.02, max_wait_s=600, max_requests=args.max_requests, discount=args.discount)
    with tempfile.TemporaryDirectory() as workdir, \
            BatchServer(_answer, item_faults=faults, expire_batches=1, expire_keep=keep) as server:
        out = Path(workdir) / "teacher.jsonl"
        started = time.perf_counter()
        summary = run_batch_collection(prompts, out, settings=ClientSettings(server.base_url, "bench"),
                                       request=TeacherRequest("bench", max_tokens=64), options=options,
                                       price_in=args.price_in, price_out=args.price_out, progress=False)
        seconds = time.perf_counter() - started
        ids = [json.loads(line)["prompt_id"] for line in out.read_text().splitlines()]
        twice = sum(count == 2 for count in server.submitted.values())
        more = sum(count > 2 for count in server.submitted.values())
        counts = (server.uploads, server.batches_created, sum(server.submitted.values()), server.retrievals,
                  server.downloads)
    batch, usage = summary.batch, summary.usage
    expected_resubmits = args.failed_items + 2 + (args.max_requests - keep)
    print(f"{args.prompts} prompts, {args.max_requests} per file; injected: {args.failed_items} failed items, "
          f"1 malformed + 1 unreadable result line, 1 expired batch ({args.max_requests - keep} items not run)")
    print(f"files uploaded        {counts[0]}")
    print(f"batches created       {counts[1]}  (closed: {dict(batch.statuses)})")
    print(f"items submitted       {counts[2]}  (client count {batch.items_submitted})")
    print(f"items resubmitted     {batch.items_resubmitted}  (expected {expected_resubmits}; by kind "
          f"{dict(usage.retries)}); server: prompts sent twice {twice}, more than twice {more}")
    print(f"rows written          {len(ids)}  (distinct prompts {len(set(ids))}, duplicates {len(ids) - len(set(ids))}, "
          f"still failed {sum(summary.failed.values())})")
    print(f"unreadable lines      {batch.unreadable_lines}; polls {counts[3]}, downloads {counts[4]}")
    online = usage.cost(args.price_in, args.price_out)
    print(f"tokens                in {usage.prompt_tokens}, out {usage.completion_tokens} "
          f"(usage fields of {usage.requests} answers)")
    print(f"cost                  ${summary.cost:.4f} at batch prices (x{args.discount} of ${args.price_in}/"
          f"${args.price_out} per 1M); online would be ${online:.4f}")
    print(f"wall                  {seconds:.2f} s")


if __name__ == "__main__":
    main(make_parser().parse_args())
