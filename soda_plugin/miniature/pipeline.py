"""The paper's pipeline in miniature, on a CPU, through soda's own stage commands only:

local teacher (HTTP) -> soda teacher -> soda snapshot (q0 = SmolLM2)
-> soda pairs (--judge-filter: the local teacher judges teacher vs q0)
-> axolotl train (SODA warmup -> DPO; SeqKD; ablations)
-> student answers (soda judge answer) + exact match + soda judge score (the local teacher as judge)
-> soda analyze -> report.md

Every stage is a subprocess running a real command, logged to `<out>/logs/`: the stages as
`python -m soda_plugin.cli <stage>` on this interpreter, so an installed wheel runs them as a
clone does (nothing here reads the clone's `tools/`). Recipes come from the installed package
(`recipe_files.shipped_recipes_dir()`); every path handed to a command is absolute, and the
commands run in the caller's working directory. Stages whose outputs exist are reused (the
stages resume; training folders with a finished model are kept), so a killed run continues
where it stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Mapping, Sequence, TypeVar

import yaml

from ..format.fileio import atomic_write_text, iter_jsonl
from ..log import get_logger
from ..recipe_files import shipped_recipes_dir
from . import tasks
from .runs import BASE, RunId
from .settings import STOP_AFTER, MiniatureSettings

_TERMINATE_GRACE_S = 30.0  # a stopped stage command that ignores SIGTERM is killed after this

LOG = get_logger(__name__)
RECIPES = shipped_recipes_dir()  # the clone's recipes/, or the wheel's soda_plugin/recipes/
TEACHER_MODEL = "program-teacher"
NEGATIVES = {"q0": "q0 (SODA)", "sibling": "cross-student", "degraded": "degraded teacher"}


class StageError(RuntimeError):
    """A stage's command failed; the message names its log."""


class StageClock:
    """Wall time per stage, in the order the stages ran, and since the clock was made."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    def wall_seconds(self) -> float:
        return time.perf_counter() - self.started

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        LOG.info("miniature: %s ...", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            LOG.info("miniature: %s done in %.0f s", name, self.seconds[name])


# Set when a stage running beside others fails (or the run is interrupted): every command
# still running, on either side, is stopped instead of finishing for nothing.
_ABORT = threading.Event()
# While a stage runs beside others, every command started on either side gets half the cores'
# torch threads: two processes of two threads each on two cores spin against each other (a 28 s
# snapshot took 67 s). A command started after the stage beside it finished gets them all.
_running_beside: list["StageBeside"] = []
BESIDE_TIMEOUT_S = 3600.0  # a stage beside others waits at most this long for the other side: never forever
T = TypeVar("T")


class StageBeside(Generic[T]):
    """One stage run in a thread while the caller runs the stages that do not need its output."""

    def __init__(self, name: str, clock: StageClock, stage: Callable[[], T]) -> None:
        self.name = name
        self.error: BaseException | None = None
        self.failed_first = False  # it failed before anything else had
        self._result: T | None = None
        self._thread = threading.Thread(target=self._run, args=(clock, stage), name=f"miniature: {name}", daemon=True)
        self._thread.start()

    def _run(self, clock: StageClock, stage: Callable[[], T]) -> None:
        try:
            with clock.stage(self.name):
                self._result = stage()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting side, which raises it
            self.error, self.failed_first = error, not _ABORT.is_set()
            _ABORT.set()

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s`; whether it finished."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self._result  # type: ignore[return-value]


class StageDone(Generic[T]):
    """A stage that already ran in the calling thread (or had nothing to run)."""

    def __init__(self, value: T) -> None:
        self._value = value

    def result(self) -> T:
        return self._value


@contextmanager
def stage_beside(name: str, clock: StageClock, stage: Callable[[], T] | None, in_thread: bool = True,
                 timeout_s: float = BESIDE_TIMEOUT_S, beside_what: str = "the next stages"
                 ) -> Iterator[StageBeside[T] | StageDone[T | None]]:
    """Run `stage` in a thread while the with-block runs (timed as `<name> (beside <beside_what>)`);
    at the block's end wait for it and raise its error, if any. If either side fails, the other's
    commands are stopped and the first failure is raised. `in_thread=False`: run it here, before
    the block, timed as `name`. `stage=None`: nothing to run (its result is None)."""
    if stage is None or not in_thread:
        if stage is None:
            yield StageDone(None)
            return
        with clock.stage(name):
            value = stage()
        yield StageDone(value)
        return
    _ABORT.clear()
    name = f"{name} (beside {beside_what})"
    beside = StageBeside(name, clock, stage)
    _running_beside.append(beside)
    try:
        yield beside
    except BaseException as error:
        _ABORT.set()
        beside.join(60)
        if beside.error is not None and beside.failed_first:
            raise beside.error from error  # the block stopped because the stage beside it failed
        raise
    else:
        if not beside.join(timeout_s):
            _ABORT.set()
            beside.join(60)
            raise StageError(f"`{name}` did not finish within {timeout_s:.0f} s of the stages beside it; "
                             f"its commands were stopped")
        beside.result()
    finally:
        _ABORT.clear()
        _running_beside.remove(beside)


def threads_beside_others() -> int | None:
    """The torch threads a command started now gets while a stage runs beside others; None otherwise."""
    return max(1, (os.cpu_count() or 1) // 2) if any(b.running() for b in _running_beside) else None


def threads_each_of(processes: int) -> int | None:
    """Torch threads for each of `processes` run at once: an equal share of the cores; None (torch's
    default, every core) for a process alone."""
    return max(1, (os.cpu_count() or 1) // processes) if processes > 1 else None


def offline_env() -> dict[str, str]:
    return dict(os.environ, AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false")


def run_command(command: list[str], log_path: Path) -> None:
    """Run `command`, output to `log_path`; raise `StageError` with the log's tail if it fails."""
    run_commands_concurrently([(command, log_path)])


def run_commands_concurrently(commands: list[tuple[list[str], Path]], threads_each: int | None = None) -> None:
    """Run every `(command, log_path)` at once and wait for all; raise `StageError` naming each
    failure's log. `threads_each` caps each process's torch threads (OMP_NUM_THREADS) so that
    concurrent trainings share the cores instead of oversubscribing them. A failure or an
    interrupt stops the processes still running: nothing is left training in the background."""
    env = offline_env()
    beside = threads_beside_others()
    if beside is not None:
        threads_each = min(threads_each or beside, beside)
    if threads_each is not None:
        env["OMP_NUM_THREADS"] = str(threads_each)
    running: list[tuple[subprocess.Popen, list[str], Path]] = []
    try:
        for command, log_path in commands:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as log:
                # The thread cap is part of what the command computes (CPU reductions split by thread):
                # it heads the line, so a rerun can match it.
                threads = f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in env else ""
                log.write(f"\n$ {threads}{' '.join(command)}\n")
                log.flush()
                # The child keeps its own copy of the descriptor; ours can close at once.
                running.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env),
                                command, log_path))
        while True:  # until all finish or one fails
            codes = [proc.poll() for proc, *_ in running]
            if None not in codes or any(code not in (None, 0) for code in codes):
                break
            if _ABORT.is_set():
                raise StageError("stopped: a stage running beside this one failed")
            time.sleep(0.2)
        failed = [_failure_message(command, code, log_path)
                  for code, (_, command, log_path) in zip(codes, running) if code not in (None, 0)]
        if failed:
            raise StageError("\n".join(failed))
    finally:
        for proc, _, _ in running:
            if proc.poll() is None:
                proc.terminate()  # `axolotl train --launcher python` trains in this very process
                try:
                    proc.wait(_TERMINATE_GRACE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def command_name(command: Sequence[str]) -> str:
    """What a failure calls `command`: `soda teacher`, `axolotl train`, `soda_plugin.miniature.mechanism`."""
    if len(command) > 2 and command[1] == "-m":
        module, rest = command[2], command[3:]
        if module == "soda_plugin.cli" and rest:
            return f"soda {rest[0]}"
        if module == "axolotl.cli.main" and rest:
            return f"axolotl {rest[0]}"
        return module
    if len(command) > 1 and Path(command[0]).name == "axolotl":
        return f"axolotl {command[1]}"
    return Path(command[1]).name if len(command) > 1 else command[0]


def _failure_message(command: list[str], code: int, log_path: Path) -> str:
    tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-25:])
    return f"`{command_name(command)}` exited with code {code}; full log: {log_path}\n{tail}"


def soda_command(stage: str, args: Sequence[Any]) -> list[str]:
    """`soda <stage> args...` on this interpreter (`python -m soda_plugin.cli`), whether soda came
    from a clone or a wheel, and whether or not its console script is on PATH."""
    return [sys.executable, "-m", "soda_plugin.cli", stage, *map(str, args)]


def run_stage(stage: str, args: Sequence[Any], log_path: Path) -> None:
    run_command(soda_command(stage, args), log_path)


def axolotl_train_command(config: Path) -> list[str]:
    """`axolotl train`: the console script beside this interpreter (a venv's bin/), else the same
    CLI as a module of this interpreter (a `pip install --user`, whose scripts are elsewhere)."""
    script = Path(sys.executable).with_name("axolotl")
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "axolotl.cli.main"]
    return [*launcher, "train", str(config), "--launcher", "python"]


# Data ---------------------------------------------------------------------------------

def write_task_files(settings: MiniatureSettings, data_dir: Path) -> dict[str, Path]:
    """train / val / test prompts as `content` messages plus the task's family and answer."""
    splits = tasks.split_tasks(settings.n_train, settings.n_val, settings.n_test, seed=settings.data_seed)
    paths = {}
    for name, drawn in splits.items():
        paths[name] = data_dir / f"{name}.jsonl"
        atomic_write_text(paths[name], "".join(
            json.dumps({"content": t.messages(), "family": t.family, "answer": t.answer}) + "\n" for t in drawn))
    return paths


def make_sibling_model(model_dir: Path, out_dir: Path, noise: float, seed: int) -> Path:
    """The "cross-student": q0's weights plus seeded Gaussian noise (std = `noise` x each
    tensor's std), a different model of the same size and tokenizer."""
    if (out_dir / "config.json").is_file():
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(threads_beside_others() or threads)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in model.parameters():
                if param.numel() > 1:
                    param.add_(torch.randn(param.shape, generator=generator) * noise * param.std())
    finally:
        torch.set_num_threads(threads)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(tmp)
    os.replace(tmp, out_dir)
    return out_dir


def teacher_rows_as_careless_snapshot(teacher_file: Path, out_file: Path) -> Path:
    """A careless teacher's answers (a wrong final value in the teacher's own format), in the
    snapshot schema the builder reads as a rejection source (the paper's "deliberately bad"
    negatives). They are not cut: a one-line `Answer: <value>` cut by words is just `Answer:`."""
    from ..snapshot.records import SnapshotRow

    rows = (SnapshotRow(prompt_id=r["prompt_id"], sample_index=0, prompt=r["content"], response=r["teacher_response"],
                        finish_reason=r["finish_reason"], prompt_tokens=r.get("prompt_tokens", 0),
                        response_tokens=r.get("completion_tokens", 0), source="teacher:hot").to_dict()
            for r in iter_jsonl(teacher_file))
    atomic_write_text(out_file, "".join(json.dumps(row) + "\n" for row in rows))
    return out_file


# Training configs ---------------------------------------------------------------------

def sft_config(settings: MiniatureSettings, seed: int, teacher_file: Path, out: Path,
               save_every: int | None = None) -> dict[str, Any]:
    """The seed's one SFT run on the teacher's answers, from q0, for W + D steps on one schedule
    that does not restart (recipes/smollm2_cpu_seqkd.yml). Its final model is SeqKD; its
    model-only checkpoint at step W (`save_every`, default W) is q_w, SODA's warmup. Up to step
    W, SODA and SeqKD are this one run."""
    cfg = yaml.safe_load((RECIPES / "smollm2_cpu_seqkd.yml").read_text())
    cfg.update(base_model=str(settings.model_dir), output_dir=str(out), seed=seed, max_steps=settings.total_steps,
               datasets=[{"path": str(teacher_file), "ds_type": "json", "type": "soda"}],
               dataset_prepared_path=str(out.parent / f".prepared-{out.name}"),
               save_strategy="steps", save_steps=save_every or settings.warmup_steps, save_only_model=True)
    if settings.sft_learning_rate is not None:
        cfg["learning_rate"] = settings.sft_learning_rate
    if settings.sft_scheduler is not None:
        cfg["lr_scheduler"] = settings.sft_scheduler
    if settings.sft_rows_per_step is not None:
        cfg["micro_batch_size"] = settings.sft_rows_per_step
    return cfg


def warmup_checkpoint(sft_dir: Path, warmup_steps: int) -> Path:
    """q_w: the SFT run's model-only save at step W."""
    return sft_dir / f"checkpoint-{warmup_steps}"


def dpo_config(settings: MiniatureSettings, seed: int, pairs_dir: Path, out: Path, warmup_model: Path) -> dict[str, Any]:
    """SODA's D DPO steps from q_w (`warmup_model`, the SFT run's step-W save), which is also the
    frozen reference (the recipe's precomputed reference log-probs come from the policy before
    its first update). The recipe's own `soda.warmup` is dropped: the SFT run above is the warmup."""
    cfg = yaml.safe_load((RECIPES / "smollm2_cpu_soda.yml").read_text())
    del cfg["soda"]["warmup"]
    cfg.update(base_model=str(warmup_model), output_dir=str(out), seed=seed, max_steps=settings.dpo_steps,
               datasets=[{"path": str(pairs_dir / "data"), "ds_type": "parquet", "type": "soda"}],
               dataset_prepared_path=str(out.parent / f".prepared-{out.name}"))
    if settings.beta is not None:
        cfg["trl"]["beta"] = settings.beta
    if settings.dpo_learning_rate is not None:
        cfg["learning_rate"] = settings.dpo_learning_rate
    if settings.dpo_pairs_per_step is not None:
        cfg["micro_batch_size"] = settings.dpo_pairs_per_step
    return cfg


def gad_config(settings: MiniatureSettings, seed: int, teacher_file: Path, out: Path,
               warmup_dir: Path | None = None) -> dict[str, Any]:
    """GAD from q0 on the teacher's answers (recipes/smollm2_cpu_gad.yml): its warmup of W steps
    (the policy's SFT at the SFT run's rate and schedule, while D learns on live rollouts) and its
    GAD stage of D steps, with as many prompts per step as the SFT run's rows and the DPO stage's
    pairs. `warmup_dir`: a warmup folder shared with other runs of the same warmup config."""
    cfg = yaml.safe_load((RECIPES / "smollm2_cpu_gad.yml").read_text())
    sft = sft_config(settings, seed, teacher_file, out)
    dpo_pairs = settings.dpo_pairs_per_step or yaml.safe_load((RECIPES / "smollm2_cpu_soda.yml").read_text())["micro_batch_size"]
    rollouts_per_forward, n = cfg["micro_batch_size"], cfg["trl"]["num_generations"]

    def accumulation(prompts: int) -> int:
        if (prompts * n) % rollouts_per_forward:
            raise ValueError(f"GAD: {prompts} prompts x {n} rollouts do not split into forwards of {rollouts_per_forward}")
        return prompts * n // rollouts_per_forward

    cfg.update(base_model=str(settings.model_dir), output_dir=str(out), seed=seed, max_steps=settings.dpo_steps,
               datasets=[{"path": str(teacher_file), "ds_type": "json", "type": "soda"}],
               dataset_prepared_path=str(out.parent / f".prepared-{out.name}"),
               gradient_accumulation_steps=accumulation(dpo_pairs))
    warmup = cfg["gad"]["warmup"]
    warmup.update(max_steps=settings.warmup_steps, learning_rate=sft["learning_rate"], lr_scheduler=sft["lr_scheduler"],
                  gradient_accumulation_steps=accumulation(sft["micro_batch_size"]))
    if warmup_dir is not None:
        warmup["output_dir"] = str(warmup_dir)
    if settings.gad_learning_rate is not None:
        cfg["learning_rate"] = settings.gad_learning_rate
    if settings.discriminator_learning_rate is not None:
        cfg["gad"]["discriminator"]["learning_rate"] = settings.discriminator_learning_rate
    return cfg


def train_once(name: str, cfg: dict[str, Any], settings: MiniatureSettings) -> Path:
    """`axolotl train` on `cfg` unless its output folder already holds a finished model."""
    return train_concurrently({name: cfg}, settings)[name]


def train_concurrently(runs: Mapping[str, dict[str, Any]], settings: MiniatureSettings) -> dict[str, Path]:
    """`axolotl train` on every config of `runs` (name -> config) at once, each on its share
    of the cores, skipping those whose output folder already holds a finished model.
    Concurrent runs overlap their ~25 s start-ups, but each one's `train_runtime` is then no
    longer its time alone: only runs whose time no ratio reads go here together. Name ->
    output folder."""
    pending = []
    for name, cfg in runs.items():
        out = Path(cfg["output_dir"])
        if (out / "model.safetensors").is_file():
            LOG.info("miniature: reusing %s", out)
            continue
        config_path = settings.out_dir / "configs" / f"{name}.yml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        pending.append((axolotl_train_command(config_path), settings.out_dir / "logs" / f"train_{name}.log"))
    run_commands_concurrently(pending, threads_each=threads_each_of(len(pending)))
    return {name: Path(cfg["output_dir"]) for name, cfg in runs.items()}


# Evaluation ---------------------------------------------------------------------------

BENCHMARK = "miniature"  # the held-out test prompts, as a local evaluation set
GENERATION_BATCH = 64  # 2 cores, SmolLM2 Base on 240 test prompts x 40 tokens: 83 s at 24, 74 s at 64 (finished rows leave the batch)


def answer_prompts(models: Mapping[str, Path], prompts_file: Path, settings: MiniatureSettings) -> dict[str, Path]:
    """Greedy answers of every model to `prompts_file`, in `settings.concurrent_runs` processes of
    `soda judge answer` at once (each loads its models one after another, so a start-up is paid
    per process, not per model). `models`: answers folder name (a `RunId.folder`, or the sweep's
    `seqkd.<variant>`) -> model; returns folder name -> its answers folder."""
    root = settings.out_dir / "eval" / "answers"
    groups = balanced_groups(list(models), settings.concurrent_runs,
                             weight=lambda name: BASE_ANSWER_WEIGHT if name == BASE.folder else 1)
    commands = [(soda_command("judge", ["answer", "--models", *[f"{n}={models[n]}" for n in group], "--out", root,
                                        "--benchmarks", BENCHMARK, "--eval-file", f"{BENCHMARK}={prompts_file}",
                                        "--backend", "transformers", "--max-tokens", settings.eval_max_tokens,
                                        "--batch-size", GENERATION_BATCH, "--no-progress"]),
                 settings.out_dir / "logs" / ("answers.log" if i == 0 else f"answers_{i}.log"))
                for i, group in enumerate(groups)]
    run_commands_concurrently(commands, threads_each=threads_each_of(len(commands)))
    return {name: root / name for name in models}


def answer_runs(models: Mapping[RunId, Path], prompts_file: Path, settings: MiniatureSettings) -> dict[RunId, Path]:
    """`answer_prompts` for the pipeline's runs, each in its `RunId.folder`; run -> its answers folder."""
    folders = answer_prompts({run.folder: path for run, path in models.items()}, prompts_file, settings)
    return {run: folders[run.folder] for run in models}


# Base rambles to the token limit on most prompts: its answer pass costs about three trained models'.
BASE_ANSWER_WEIGHT = 3


def balanced_groups(names: Sequence[str], n: int, weight: Callable[[str], float]) -> list[list[str]]:
    """`names` in at most `n` non-empty groups of about equal total weight (heaviest first, each
    to the lightest group), each group in the original order."""
    groups: list[list[str]] = [[] for _ in range(max(1, min(n, len(names))))]
    for name in sorted(names, key=lambda x: -weight(x)):
        min(groups, key=lambda g: sum(map(weight, g))).append(name)
    order = {name: i for i, name in enumerate(names)}
    return [sorted(g, key=order.__getitem__) for g in groups if g]


def exact_match_by_prompt(answers_dir: Path, test_file: Path) -> dict[str, bool]:
    """prompt_id -> whether the model's greedy answer has the task's exact final value."""
    from ..judge.answers import read_answers
    from ..format.prompt_id import prompt_id

    answers = read_answers(answers_dir, BENCHMARK)
    matches = {}
    for row in iter_jsonl(test_file):
        pid = prompt_id(row["content"])
        if pid not in answers:
            raise StageError(f"{answers_dir} has no answer for test prompt {pid}; re-run to finish it")
        matches[pid] = tasks.exact_match(answers[pid]["response"], row["answer"])
    return matches


def judge_models(answer_dirs: dict[str, Path], test_file: Path, base_url: str, settings: MiniatureSettings) -> dict:
    """Run the judge tool with the local teacher as judge; return its `results.json`."""
    out = settings.out_dir / "eval" / "judge"
    run_stage("judge", ["score", "--judge-base-url", base_url, "--judge-model", TEACHER_MODEL,
                         "--api-key-env", "SODA_MINIATURE_KEY", "--models",
                         *[f"{name}={path}" for name, path in answer_dirs.items()],
                         "--benchmarks", BENCHMARK, "--eval-file", f"{BENCHMARK}={test_file}",
                         "--out", out, "--no-progress", "--seed", settings.data_seed],
              settings.out_dir / "logs" / "judge.log")
    return json.loads((out / "results.json").read_text())


# The whole run --------------------------------------------------------------------------

KEY_ENV = "SODA_MINIATURE_KEY"  # the local teacher needs no key; the tools still read one from the environment


def collect_teacher(url: str, prompts: Path, out: Path, temperature: float, exclude: Path, log: Path) -> Path:
    run_stage("teacher", ["--prompts", prompts, "--out", out, "--base-url", url, "--model", TEACHER_MODEL,
                          "--api-key-env", KEY_ENV, "--temperature", temperature, "--max-tokens", 256,
                          "--exclude-eval", f"{BENCHMARK}={exclude}", "--no-progress"], log)
    return out


def snapshot(model_dir: Path, prompts: Path, out: Path, snapshot_cfg: dict, settings: MiniatureSettings, log: Path,
             samples: int = 1) -> Path:
    """`samples` answers per prompt: greedy (the recipe's setting) for one, else sampled at
    `settings.negative_temperature` with the data seed."""
    temperature = snapshot_cfg.get("temperature", 0.0) if samples == 1 else settings.negative_temperature
    run_stage("snapshot", ["--model", model_dir, "--prompts", prompts, "--out", out, "--backend", "transformers",
                           "--temperature", temperature, "--n", samples,
                           "--max-tokens", snapshot_cfg["max_tokens"], "--seed", settings.data_seed,
                           "--batch-size", GENERATION_BATCH,
                           "--no-progress"], log)
    return out


def build_pairs(teacher: Path, negatives: str, out: Path, log: Path, truncated: str = "teacher_only",
                judge_url: str | None = None) -> Path:
    """With `judge_url`, the local teacher also judges each pair (`--judge-filter`): pairs
    whose rejected answer is as good as the teacher's (a correct, concise q0 answer) are dropped."""
    # `teacher_only`: q0's rambling is cut at max_tokens and still a fair negative; a
    # truncated teacher answer would teach truncation, so those pairs are dropped.
    judge = (["--judge-filter", "--judge-base-url", judge_url, "--judge-model", TEACHER_MODEL,
              "--judge-api-key-env", KEY_ENV, "--no-progress"] if judge_url else [])
    run_stage("pairs", ["--teacher", teacher, "--snapshot", negatives, "--out", out, "--overwrite",
                        "--truncated", truncated, "--teacher-name", TEACHER_MODEL, *judge], log)
    return out


def pair_filter_counts(pairs: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """Pairs set -> the judge filter's counts from its `build_report.json` (sets built without it are left out)."""
    counts = {}
    for name, folder in pairs.items():
        block = json.loads((folder / "build_report.json").read_text()).get("judge_filter")
        if block:
            counts[name] = block["counts"]
    return counts


def _train_runtimes(log: Path) -> list[float]:
    """`train_runtime` of each trainer in an axolotl log (warmup then DPO for a chain); none
    when the run was reused from an earlier invocation and left no log here."""
    import re

    if not log.is_file():
        return []
    return [float(m) for m in re.findall(r"'train_runtime': '?([0-9.]+)", log.read_text(errors="replace"))]


def mechanism_rows(answers: Mapping[str, dict], test_file: Path, n_prompts: int) -> list[dict[str, Any]]:
    """The answers every model's log-probability is measured on: for the first `n_prompts`
    test prompts (the families rotate, so any prefix is stratified), q0's own greedy answer
    (`q0:<id>`, from Base's answer rows `answers`) and the teacher's (`teacher:<id>`)."""
    from ..format.prompt_id import prompt_id

    rows = []
    for row in list(iter_jsonl(test_file))[:n_prompts]:
        pid = prompt_id(row["content"])
        if pid not in answers:
            raise StageError(f"Base has no answer for test prompt {pid}; re-run to finish it")
        q0 = answers[pid]
        rows.append({"prompt_id": f"q0:{pid}", "messages": row["content"], "response": q0["response"],
                     "stopped": q0["finish_reason"] == "stop"})
        rows.append({"prompt_id": f"teacher:{pid}", "messages": row["content"],
                     "response": tasks.teacher_answer(row["content"][-1]["content"]), "stopped": True})
    return rows


def score_mechanism(models: Mapping[RunId, Path], rows: list[dict[str, Any]], settings: MiniatureSettings) -> dict:
    """Log-probabilities of `rows` under every model, in `settings.concurrent_runs` processes at
    once (one part file each, merged); the merged `mechanism.json` (its models by `RunId.label`)."""
    out = settings.out_dir / "eval" / "mechanism.json"
    rows_file = settings.out_dir / "eval" / "mechanism_rows.jsonl"
    atomic_write_text(rows_file, "".join(json.dumps(r) + "\n" for r in rows))
    if not out.is_file():
        groups = balanced_groups(list(models), settings.concurrent_runs, weight=lambda run: 1)
        parts = [out.with_name(f"mechanism.part{i}.json") for i in range(len(groups))]
        commands = [([sys.executable, "-m", "soda_plugin.miniature.mechanism",
                      *[a for run in group for a in ("--model", f"{run.label}={models[run]}")],
                      "--rows", str(rows_file), "--out", str(part)],
                     settings.out_dir / "logs" / ("mechanism.log" if i == 0 else f"mechanism_{i}.log"))
                    for i, (group, part) in enumerate(zip(groups, parts)) if not part.is_file()]
        run_commands_concurrently(commands, threads_each=threads_each_of(len(groups)))
        merged = [json.loads(part.read_text()) for part in parts]
        atomic_write_text(out, json.dumps({**merged[0], "models": {name: scored for part in merged
                                                                   for name, scored in part["models"].items()}}))
        for part in parts:
            part.unlink()
    return json.loads(out.read_text())


def ablation_negatives(url: str, teacher: Path, files: Mapping[str, Path], settings: MiniatureSettings,
                       snapshot_cfg: dict) -> dict[str, Path]:
    """The ablation's two other rejection sources, as pairs sets: a careless teacher's answers
    and a perturbed sibling's greedy answers. Source name -> its pairs folder."""
    out, data, logs = settings.out_dir, settings.out_dir / "data", settings.out_dir / "logs"
    hot = collect_teacher(url, files["train"], data / "teacher_hot.jsonl", settings.hot_teacher_temperature,
                          files["test"], logs / "teacher_hot.log")
    careless = teacher_rows_as_careless_snapshot(hot, data / "careless.jsonl")
    sibling = make_sibling_model(settings.model_dir, out / "models" / "sibling", settings.sibling_noise,
                                 settings.data_seed)
    sibling_snapshot = snapshot(sibling, files["train"], out / "snapshots" / "sibling", snapshot_cfg, settings,
                                logs / "snapshot_sibling.log")
    return {"sibling": build_pairs(teacher, f"{sibling_snapshot}=cross-student:perturbed-sibling",
                                   out / "pairs" / "sibling", logs / "pairs_sibling.log", judge_url=url),
            "degraded": build_pairs(teacher, f"{careless}=degraded:careless-teacher",
                                    out / "pairs" / "degraded", logs / "pairs_degraded.log", judge_url=url)}


def representation_analysis(settings: MiniatureSettings, test_file: Path, models: Mapping[RunId, Path]) -> Path:
    """`soda analyze` on Base, SeqKD and SODA of the first seed; its output folder."""
    first = settings.seeds[0]
    run_stage("analyze", ["--prompts", test_file, "--limit", settings.analysis_prompts,
                          "--base", f"base={settings.model_dir}", "--model", f"seqkd={models[RunId('seqkd', first)]}",
                          "--model", f"soda={models[RunId('soda', first)]}", "--out", settings.out_dir / "analysis"],
              settings.out_dir / "logs" / "analyze.log")
    return settings.out_dir / "analysis"


def stopped_summary(settings: MiniatureSettings, stage: str, clock: StageClock) -> dict[str, Any]:
    """What `run_miniature` returns when it stops after `stage`: no report, the stages' times."""
    return {"stopped_after": stage, "out_dir": str(settings.out_dir), "stage_seconds": dict(clock.seconds),
            "wall_seconds": clock.wall_seconds()}


def run_miniature(settings: MiniatureSettings, stop_after: str | None = None) -> dict[str, Any]:
    """Run every stage (reusing finished ones); write `report.md`; return the summary. With
    `stop_after` (one of `STOP_AFTER`), end after that stage: no training, no report, and the
    ablation's negatives are not made (`stopped_summary`)."""
    if stop_after is not None and stop_after not in STOP_AFTER:
        raise ValueError(f"`stop_after` is {stop_after!r}; choose one of {', '.join(STOP_AFTER)} "
                         f"(or None: every stage)")
    from ..smollm2 import convert_smollm2
    from .teacher_server import running_teacher

    out, logs = settings.out_dir, settings.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(KEY_ENV, "local-teacher-needs-no-key")
    clock = StageClock()
    recipe = yaml.safe_load((RECIPES / "smollm2_cpu_soda.yml").read_text())
    with clock.stage("convert SmolLM2"):
        convert_smollm2(settings.model_dir)
    data = out / "data"
    files = write_task_files(settings, data)
    models: dict[RunId, Path] = {BASE: settings.model_dir}
    runtimes: dict[str, list[float]] = {"sft": [], "dpo": []}
    with running_teacher(logs / "teacher_server.log") as url:
        with clock.stage("teacher answers"):
            teacher = collect_teacher(url, files["train"], data / "teacher.jsonl", 0.0, files["test"], logs / "teacher.log")
        if stop_after == "teacher":
            return stopped_summary(settings, stop_after, clock)
        ablation_stage = ((lambda: ablation_negatives(url, teacher, files, settings, recipe["soda"]["snapshot"]))
                          if settings.ablation and stop_after is None else None)
        with stage_beside("ablation negatives", clock, ablation_stage, in_thread=settings.overlap_stages,
                          beside_what="the q0 snapshot and the first SFT run") as ablation:
            with clock.stage("q0 snapshot"):
                q0 = snapshot(settings.model_dir, files["train"], out / "snapshots" / settings.q0_name,
                              recipe["soda"]["snapshot"], settings, logs / "snapshot_q0.log",
                              samples=settings.negatives)
            if stop_after == "snapshot":
                return stopped_summary(settings, stop_after, clock)
            with clock.stage("pairs"):
                pairs = {"q0": build_pairs(teacher, str(q0), out / "pairs" / settings.q0_name, logs / "pairs.log",
                                           judge_url=url)}
            if stop_after == "pairs":
                return stopped_summary(settings, stop_after, clock)
            first = settings.seeds[:settings.concurrent_runs]
            train_sft(settings, first, teacher, models, runtimes, clock)
        pairs.update(ablation.result() or {})
        for group in in_groups(settings.seeds[len(first):], settings.concurrent_runs):
            train_sft(settings, group, teacher, models, runtimes, clock)
        train_dpo(settings, pairs, models, runtimes, clock)
        train_gad(settings, teacher, models, clock)
        with clock.stage("student answers"):
            answers = answer_runs(models, files["test"], settings)
        from ..judge.answers import read_answers

        matches = {name: exact_match_by_prompt(path, files["test"]) for name, path in answers.items()}
        answer_rows = {name: read_answers(path, BENCHMARK) for name, path in answers.items()}
        with stage_beside("representation analysis", clock,
                          lambda: representation_analysis(settings, files["test"], models),
                          in_thread=settings.overlap_stages, beside_what="the judge and the log-probs"):
            with clock.stage("judge"):
                judged = judge_models({run.folder: path for run, path in answers.items()}, files["test"], url,
                                      settings)
            with clock.stage("mechanism log-probs"):
                mechanism = score_mechanism(models, mechanism_rows(answer_rows[BASE], files["test"],
                                                                   settings.mechanism_prompts), settings)
    from .summary import write_report

    return write_report(settings, clock.seconds, runtimes, matches, answer_rows, judged, mechanism, files,
                        pair_filter_counts(pairs), wall_seconds=clock.wall_seconds())


def in_groups(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """`items` in consecutive groups of at most `size` (the runs started at once)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def train_sft(settings: MiniatureSettings, seeds: Sequence[int], teacher: Path, models: dict[RunId, Path],
              runtimes: dict[str, list[float]], clock: StageClock) -> None:
    """Each seed's one SFT run (W + D steps from q0), the seeds at once: records q_w (the run's
    step-W save) and SeqKD (its end) in `models` and, when they trained here, their runtimes."""
    outs = {seed: settings.out_dir / "runs" / f"seed{seed}" / "sft" for seed in seeds}
    with clock.stage("SFT runs (SODA's warmup to W, SeqKD to W + D)"):
        trained = train_concurrently({f"sft_s{seed}": sft_config(settings, seed, teacher, out)
                                      for seed, out in outs.items()}, settings)
    for seed, out in outs.items():
        models[RunId("seqkd", seed)] = trained[f"sft_s{seed}"]
        models[RunId("qw", seed)] = warmup_checkpoint(out, settings.warmup_steps)
        runtimes["sft"] += _train_runtimes(settings.out_dir / "logs" / f"train_sft_s{seed}.log")[:1]


def train_gad(settings: MiniatureSettings, teacher: Path, models: dict[RunId, Path], clock: StageClock) -> None:
    """GAD's warmup and GAD stage from q0 on each GAD seed, `settings.concurrent_runs` at a time."""
    runs = {RunId("gad", seed): gad_config(settings, seed, teacher, settings.out_dir / "runs" / f"seed{seed}" / "gad")
            for seed in settings.gad_run_seeds}
    with clock.stage("GAD runs (warmup W, GAD stage D)"):
        for group in in_groups(list(runs), settings.concurrent_runs):
            trained = train_concurrently({run.folder: runs[run] for run in group}, settings)
            for run in group:
                models[run] = trained[run.folder]


def train_dpo(settings: MiniatureSettings, pairs: Mapping[str, Path], models: dict[RunId, Path],
              runtimes: dict[str, list[float]], clock: StageClock) -> None:
    """SODA's D DPO steps from each seed's q_w on q0's pairs and, on the ablation seeds, the same
    from the same q_w on each other rejection source; `settings.concurrent_runs` at a time."""
    runs: dict[str, tuple[RunId, dict[str, Any]]] = {}  # training run name -> (the model's run, config)
    for seed in settings.seeds:
        sources = ["q0", *(["sibling", "degraded"] if settings.ablation and seed in settings.ablation_seeds else [])]
        for source in sources:
            folder = "soda" if source == "q0" else f"soda_{source}"
            runs[f"{folder}_s{seed}"] = (RunId(folder.replace("_", "-"), seed), dpo_config(
                settings, seed, pairs[source], settings.out_dir / "runs" / f"seed{seed}" / folder,
                models[RunId("qw", seed)]))
    with clock.stage("DPO runs (SODA, and the ablation's)"):
        for group in in_groups(list(runs), settings.concurrent_runs):
            trained = train_concurrently({name: runs[name][1] for name in group}, settings)
            for name in group:
                models[runs[name][0]] = trained[name]
    runtimes["dpo"] += [t for seed in settings.seeds
                        for t in _train_runtimes(settings.out_dir / "logs" / f"train_soda_s{seed}.log")[:1]]
