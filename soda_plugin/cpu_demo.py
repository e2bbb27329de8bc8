"""The CPU main job: a small verifiable task, SmolLM2 as q0, warmup → DPO through Axolotl.

The teacher is a program (exact arithmetic answers in one concise style); q0's own greedy
answers are the rejected side, exactly as SODA's snapshot would produce them. A later
demo replaces the program by a local teacher served over the chat-completions API.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .fileio import atomic_write_text
from .log import get_logger
from .rows import normalize_answer

LOG = get_logger(__name__)

RECIPE = Path("recipes/smollm2_cpu_soda.yml")
OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
SYMBOLS = {"plus": "+", "minus": "-", "times": "*"}


@dataclass(frozen=True)
class Problem:
    a: int
    op: str
    b: int

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"What is {self.a} {self.op} {self.b}?"}]

    def teacher_answer(self) -> str:
        return f"{self.a} {SYMBOLS[self.op]} {self.b} = {OPS[self.op](self.a, self.b)}."


def arithmetic_problems(n: int, seed: int = 0) -> list[Problem]:
    """`n` distinct problems, reproducible from `seed`."""
    rng = random.Random(seed)
    problems: dict[tuple, Problem] = {}
    while len(problems) < n:
        op = rng.choice(sorted(OPS))
        a, b = rng.randint(2, 99), rng.randint(2, 99 if op != "times" else 19)
        problems[(a, op, b)] = Problem(a, op, b)
    return list(problems.values())


def build_demo_pairs(model_dir: str, out_path: Path, n_prompts: int, max_new_tokens: int, seed: int = 0,
                     temperature: float = 0.0) -> dict[str, Any]:
    """Write `soda` rows (prompt, program teacher, q0's answer); reuse a finished file."""
    from .snapshot.engine import SamplingSettings
    from .snapshot.transformers_engine import TransformersEngine

    settings = {"model": str(model_dir), "n_prompts": n_prompts, "max_new_tokens": max_new_tokens, "seed": seed,
                "temperature": temperature}
    meta_path = out_path.with_suffix(".meta.json")
    if out_path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text()).get("settings") == settings:
        LOG.info("soda: reusing pairs in %s", out_path)
        return json.loads(meta_path.read_text())
    problems = arithmetic_problems(n_prompts, seed)
    engine = TransformersEngine(str(model_dir), batch_size=8)
    completions = engine.generate([p.messages() for p in problems], SamplingSettings(temperature=temperature, max_tokens=max_new_tokens, seed=seed))
    engine.close()
    answers = [answers[0].text for answers in completions]
    rows, identical = [], 0
    for problem, answer in zip(problems, answers):
        teacher = problem.teacher_answer()
        if not answer.strip() or normalize_answer(answer) == normalize_answer(teacher):
            identical += 1  # q0 already answers like the teacher: no preference to learn
            continue
        rows.append({"content": problem.messages(), "teacher_response": teacher, "student_response": answer})
    atomic_write_text(out_path, "".join(json.dumps(row) + "\n" for row in rows))
    meta = {"settings": settings, "rows": len(rows), "dropped_identical_or_empty": identical}
    meta_path.write_text(json.dumps(meta, indent=2))
    LOG.info("soda: wrote %d pairs to %s (dropped %d where q0 matched the teacher or was empty)", len(rows), out_path, identical)
    return meta


def quick_recipe(recipe: Path, out_dir: Path, max_steps: int) -> Path:
    """A copy of `recipe` with both stages cut to `max_steps` optimizer steps."""
    cfg = yaml.safe_load(recipe.read_text())
    cfg["max_steps"] = max_steps
    cfg["soda"]["warmup"]["max_steps"] = max_steps
    cfg["output_dir"] = str(out_dir / "soda_quick")
    path = out_dir / "smollm2_cpu_soda.quick.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_axolotl_train(recipe: Path) -> None:
    env = dict(os.environ, AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
    axolotl = Path(sys.executable).with_name("axolotl")
    subprocess.run([str(axolotl), "train", str(recipe), "--launcher", "python"], check=True, env=env)


def run_cpu_demo(quick: bool = False, n_prompts: int | None = None, max_steps: int = 4) -> dict[str, float]:
    """Convert SmolLM2, build pairs, run `axolotl train` on the CPU recipe; return stage times."""
    from .smollm2 import convert_smollm2

    recipe_cfg = yaml.safe_load(RECIPE.read_text())
    model_dir = Path(recipe_cfg["base_model"])
    pairs = Path(recipe_cfg["datasets"][0]["path"])
    demo_dir = pairs.parent
    times: dict[str, float] = {}
    start = time.perf_counter()
    convert_smollm2(model_dir)
    times["convert"] = time.perf_counter() - start
    start = time.perf_counter()
    n = n_prompts or (16 if quick else 96)
    if quick:
        pairs = demo_dir / "pairs.quick.jsonl"
    snapshot = recipe_cfg["soda"]["snapshot"]
    build_demo_pairs(str(model_dir), pairs, n_prompts=n, max_new_tokens=snapshot["max_tokens"],
                     temperature=snapshot["temperature"])
    times["pairs (q0 snapshot)"] = time.perf_counter() - start
    recipe = RECIPE
    if quick:
        recipe = quick_recipe(RECIPE, demo_dir, max_steps)
        cfg = yaml.safe_load(recipe.read_text())
        cfg["datasets"][0]["path"] = str(pairs)
        recipe.write_text(yaml.safe_dump(cfg, sort_keys=False))
    start = time.perf_counter()
    run_axolotl_train(recipe)
    times["axolotl train (warmup + DPO)"] = time.perf_counter() - start
    return times
