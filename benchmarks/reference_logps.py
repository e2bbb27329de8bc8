"""Wall time of soda's reference pass against TRL's own precompute, on the same pairs.

    python benchmarks/reference_logps.py            # SmolLM2-135M-Instruct, CPU float32, 128 pairs
    python benchmarks/reference_logps.py --tiny     # a tiny random Llama, 12 short pairs: seconds (CI)

One DPO trainer is built once (no reference model: the policy at step 0 is q_w, as in a soda
DPO stage), then, interleaved over repeats, each of:

- TRL's `_precompute_ref_logps` at the recipes' micro batch (`--trl-batch`, 1 in the GPU
  recipes, TRL's default) and at soda's batch: `hash_module` over every weight, pairs in
  file order; a fresh dataset fingerprint each repeat so its cache file never hits;
- soda's pass into an empty store (longest first, `--batch` pairs per forward);
- soda's pass over a full store: the reference work of a second DPO run on the same q_w
  and pairs (a forward hook counts the model calls: 0 expected).

Pairs: the miniature's arithmetic tasks; chosen is the program teacher's answer, rejected
a rambling answer of seeded random length (q0's characteristic failure), so lengths vary
as they do in real pairs. Figures are medians over the repeats with their min and max.
"""

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAMBLE = " Let me think about this step by step, because it deserves a careful look."


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="models and stores go here (default: a temp folder, removed after)")
    parser.add_argument("--model", help="HF model folder (default: SmolLM2-135M-Instruct, converted into the workdir)")
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8, help="soda's pairs per forward")
    parser.add_argument("--trl-batch", type=int, default=1, help="TRL's precompute batch (the micro batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--tiny", action="store_true", help="tiny random model, 12 short pairs, 1 repeat")
    return parser


def pair_rows(n: int) -> list[dict]:
    from soda_plugin.miniature.tasks import generate_tasks, teacher_answer

    draw = random.Random(0)
    rows = []
    for task in generate_tasks(n, seed=0):
        rambling = task.question + RAMBLE * draw.randint(0, 12)
        rows.append({"prompt": task.messages(), "chosen": [{"role": "assistant", "content": teacher_answer(task.question)}],
                     "rejected": [{"role": "assistant", "content": rambling}]})
    return rows


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import build_model

    return build_model("llama", folder)


def build_trainer(model_dir: Path, rows: list[dict], args: argparse.Namespace, out: Path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    config = DPOConfig(output_dir=str(out), precompute_ref_log_probs=False, per_device_train_batch_size=1,
                       bf16=False, report_to=[], use_cpu=True, max_length=args.max_length)
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=AutoTokenizer.from_pretrained(model_dir))
    trainer.ref_model = None  # score with the policy, as a soda DPO stage does (no resident reference)
    return trainer


class ForwardCount:
    def __init__(self, model):
        self.count = 0
        model.register_forward_hook(lambda *a: setattr(self, "count", self.count + 1))


def main(args: argparse.Namespace) -> None:
    import torch
    import trl.trainer.dpo_trainer as dpo
    from trl.trainer.utils import hash_module

    from soda_plugin.train.reference_pass import PassPlan, attach_reference_logps
    from soda_plugin.train.args import ReferenceLogps

    if args.tiny:
        args.pairs, args.repeats, args.batch, args.max_length = 12, 1, 4, 128
    torch.manual_seed(0)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_reference_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if args.model:
            model_dir = Path(args.model)
        elif args.tiny:
            model_dir = tiny_model(workdir / "tiny_llama")
        else:
            from soda_plugin.smollm2 import convert_smollm2

            model_dir = convert_smollm2(workdir / "SmolLM2-135M-Instruct")
        trainer = build_trainer(model_dir, pair_rows(args.pairs), args, workdir / "trl")
        dataset = trainer.train_dataset
        forwards = ForwardCount(trainer.model)
        trl_precompute = getattr(dpo.DPOTrainer._precompute_ref_logps, "__wrapped__", dpo.DPOTrainer._precompute_ref_logps)
        store = workdir / "store"
        plan = PassPlan(store_dir=store, mode=ReferenceLogps.REUSE, reference=str(model_dir))

        def trl_at(batch):
            def run():
                dataset._fingerprint = f"bench-{uuid.uuid4().hex}"  # TRL's cache file must miss
                return trl_precompute(trainer, dataset, "train", batch)
            return run

        def soda_cold():
            shutil.rmtree(store, ignore_errors=True)
            return attach_reference_logps(trainer, dataset, "train", args.batch, plan)

        def soda_reuse():
            return attach_reference_logps(trainer, dataset, "train", args.batch, plan)

        runs = {f"TRL precompute, batch {args.trl_batch} (the micro batch)": trl_at(args.trl_batch),
                f"TRL precompute, batch {args.batch}": trl_at(args.batch),
                f"soda pass, batch {args.batch}, empty store": soda_cold,
                "soda pass, full store (a second DPO run)": soda_reuse}
        times = {name: [] for name in runs}
        calls = {name: 0 for name in runs}
        results = {}
        soda_cold()  # warm-up (allocator, kernels), and the store the first reuse run reads
        names = list(runs)
        for repeat in range(args.repeats):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # rotate the order
                before = forwards.count
                start = time.perf_counter()
                results[name] = runs[name]()
                times[name].append(time.perf_counter() - start)
                calls[name] = forwards.count - before
        start = time.perf_counter()
        hash_module(trainer.model)
        hash_s = time.perf_counter() - start

        reference = torch.tensor(results[names[0]]["ref_chosen_logps"])
        for name in names[1:]:
            torch.testing.assert_close(torch.tensor(results[name]["ref_chosen_logps"]), reference, rtol=1e-5, atol=1e-3)
        lengths = [min(args.max_length, len(p) + max(len(c), len(r))) for p, c, r in
                   zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]
        print(f"\nReference log-probs of {len(dataset)} pairs ({model_dir.name}, CPU float32, longer sequence of a "
              f"pair {min(lengths)}-{max(lengths)} tokens, median {statistics.median(lengths):.0f}, max_length "
              f"{args.max_length}); {args.repeats} repeat(s), order rotated")
        print(f"{'run':48s} {'median s':>9s} {'min':>7s} {'max':>7s} {'forwards':>9s} {'x soda':>7s}")
        soda_s = statistics.median(times[names[2]])
        for name in names:
            median = statistics.median(times[name])
            print(f"{name:48s} {median:9.2f} {min(times[name]):7.2f} {max(times[name]):7.2f} {calls[name]:9d} "
                  f"{median / soda_s:7.2f}")
        print(f"hash_module (inside each TRL run): {hash_s:.2f} s; every pass's values agree with TRL's at batch "
              f"{args.trl_batch} (atol 1e-3)")
        print(f"speed-up of the pass over TRL's default precompute: {statistics.median(times[names[0]]) / soda_s:.2f}x "
              f"(goal >= 3x); reference forwards in a second run: {calls[names[3]]} (goal 0)")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(make_parser().parse_args())
