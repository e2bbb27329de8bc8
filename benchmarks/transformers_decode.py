"""Wall time of the transformers engine's decoding against HF `generate`, same batches, greedy.

    python benchmarks/transformers_decode.py              # SmolLM2-135M-Instruct, miniature test prompts
    python benchmarks/transformers_decode.py --tiny       # seconds: a tiny random model (CI)

The prompts are the miniature's held-out ones (its chat template puts the same system turn
before every question). `generate` runs each batch to its longest answer and every prompt
in full; `soda_plugin.snapshot.decode` runs the shared opening once and drops a row when it
stops. Both take the same length-sorted batches; the two alternate, `--repeats` pairs, and
the speed-up is the median (min, max) of each pair's own ratio. Also printed: the share of
answers that are token for token the same (goal: 100 %).
"""

import argparse
import tempfile
import time

from bench_models import DEFAULT_MODEL, resolve_model
from bench_stats import spread

TINY = {"prompts": 12, "max_tokens": 6, "batch_size": 4, "repeats": 1}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=40, help="the miniature's eval_max_tokens")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help=f"CI size, seconds, a tiny random model: {TINY}")
    return parser


def with_generate(model, tokenizer, batches, max_tokens, stop_ids):
    import torch

    answers = []
    for rows in batches:
        padded = tokenizer.pad({"input_ids": rows}, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**padded, max_new_tokens=max_tokens, do_sample=False, num_beams=1, temperature=None,
                                    top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id,
                                    eos_token_id=sorted(stop_ids))
        for tokens in output[:, padded["input_ids"].shape[1]:].tolist():
            stop = next((i for i, t in enumerate(tokens) if t in stop_ids), None)
            answers.append(tokens if stop is None else tokens[: stop + 1])
    return answers


def with_decode(model, batches, max_tokens, stop_ids):
    from soda_plugin.snapshot.decode import decode

    return [tokens for rows in batches for tokens in decode(model, rows, max_new_tokens=max_tokens, stop_ids=stop_ids)]


def main(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soda_plugin.format.chat_format import render_prompt
    from soda_plugin.miniature.tasks import split_tasks

    if args.tiny:
        args.prompts, args.max_tokens, args.batch_size, args.repeats = (TINY[k] for k in TINY)
    with tempfile.TemporaryDirectory() as workdir:
        path = resolve_model(args.tiny, args.model, workdir)
        tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    stop_ids = {tokenizer.eos_token_id} | set(filter(None, [model.generation_config.eos_token_id]))
    questions = [t.question for t in split_tasks(0, 0, args.prompts, seed=0)["test"]]
    rows = sorted((tokenizer(render_prompt(tokenizer, [{"role": "user", "content": q}]), add_special_tokens=False)
                   ["input_ids"] for q in questions), key=len)
    batches = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
    with_decode(model, batches[:1], 2, stop_ids)  # warm-up
    seconds = {"generate": [], "decode": []}
    answers = {}
    for repeat in range(args.repeats):
        order = ("generate", "decode") if repeat % 2 == 0 else ("decode", "generate")  # 2 cores: alternate
        for name in order:
            start = time.perf_counter()
            answers[name] = (with_generate(model, tokenizer, batches, args.max_tokens, stop_ids) if name == "generate"
                             else with_decode(model, batches, args.max_tokens, stop_ids))
            seconds[name].append(time.perf_counter() - start)
    same = sum(a == b for a, b in zip(answers["generate"], answers["decode"], strict=True))
    tokens = sum(len(a) for a in answers["decode"])
    print(f"{len(rows)} prompts, batches of {args.batch_size}, up to {args.max_tokens} new tokens, "
          f"{tokens / len(rows):.1f} tokens per answer, {args.repeats} pairs")
    print(f"  generate s         {spread(seconds['generate'], '6.2f')}")
    print(f"  decode s           {spread(seconds['decode'], '6.2f')}")
    print(f"  speed-up x         {spread([g / d for g, d in zip(seconds['generate'], seconds['decode'])], '6.2f')}")
    print(f"  identical answers  {100 * same / len(rows):.1f} %  ({same} of {len(rows)})")


if __name__ == "__main__":
    main(make_parser().parse_args())
