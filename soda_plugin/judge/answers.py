"""Student answers to the evaluation prompts: greedy, through the snapshot engines and
runner, so they are resumable after any kill exactly like the q0 snapshot.

    <answers_dir>/<benchmark>/run.json, shards/shard-*.jsonl   (snapshot layout, docs/snapshot.md)

With `PromptFormat.GAD` the student is asked the instruction inside GAD's evaluation
wrapper (`GAD_WRAPPER`, the last user turn only, still through the student's chat
template). The folder's `source` (`eval-gad:<model>`) records it, so `score` finds each
answer under its evaluation prompt and the judge still sees the bare instruction.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..evalsets import EvalPrompt
from ..format.prompt_id import prompt_id
from ..log import get_logger
from ..snapshot import store
from ..snapshot.config import SnapshotConfig
from ..snapshot.engine import EngineInfo, SamplingSettings, create_engine
from ..snapshot.launchers import DataParallel
from ..snapshot.runner import SnapshotSummary, run_snapshot

LOG = get_logger(__name__)

DEFAULT_ANSWER_MAX_TOKENS = 1536  # the paper's evaluation length
GAD_WRAPPER = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
               "request.\n\n### Instruction:\n{instruction}\n\n### Response:")


class PromptFormat(str, Enum):
    """How an evaluation prompt is put to the student."""

    CHAT = "chat"  # the set's messages as they are
    GAD = "gad"  # the last user turn inside `GAD_WRAPPER` (GAD's evaluation prompt, its appendix Fig. 7)

    @property
    def source_prefix(self) -> str:
        return "eval:" if self is PromptFormat.CHAT else f"eval-{self.value}:"


def student_messages(messages: Sequence[Mapping[str, str]], prompt_format: PromptFormat) -> list[dict[str, str]]:
    """The messages the student answers: with `GAD`, the last user turn wrapped.

    Examples:
        >>> wrapped = student_messages([{"role": "user", "content": "Name a prime."}], PromptFormat.GAD)
        >>> wrapped[0]["content"].splitlines()[-4:]
        ['### Instruction:', 'Name a prime.', '', '### Response:']
    """
    out = [dict(m) for m in messages]
    if prompt_format is PromptFormat.GAD:
        last = max(i for i, m in enumerate(out) if m["role"] == "user")
        out[last]["content"] = GAD_WRAPPER.format(instruction=out[last]["content"])
    return out


def answer_settings(max_tokens: int = DEFAULT_ANSWER_MAX_TOKENS) -> SamplingSettings:
    """Greedy decoding, one answer per prompt (the paper's evaluation protocol)."""
    return SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=max_tokens, n=1, seed=0)


def check_student(backend: str, model: str) -> None:
    """Refuse an adapter-only folder that `backend` cannot load as the student: vLLM loads
    none; transformers (through PEFT) one on a Hub base only. A soda LoRA run's DPO adapter
    sits on a local warmup folder; its student is `<output_dir>/merged`.

    Raises:
        ValueError: naming the merged folder to pass instead.
    """
    if backend in ("vllm", "transformers"):
        from ..format.model_folder import refuse_adapter_only

        refuse_adapter_only(model, use=f"the {backend} backend", hub_base_ok=backend == "transformers")


def generate_answers(backend: str, model: str, options: dict[str, Any], eval_sets: Mapping[str, Sequence[EvalPrompt]],
                     out_dir: str | Path, *, max_tokens: int = DEFAULT_ANSWER_MAX_TOKENS, shard_size: int = 64,
                     progress: bool = True, data_parallel_size: int = 1, engine_version: str = "unknown",
                     prompt_format: PromptFormat = PromptFormat.CHAT) -> dict[str, SnapshotSummary]:
    """Answer every prompt of every set not yet answered in `out_dir/<benchmark>`.

    One engine serves all sets; with `data_parallel_size > 1` each set is split over that
    many engines (one per GPU group, `snapshot/data_parallel.py`).
    """
    check_student(backend, model)
    settings = answer_settings(max_tokens)
    common = dict(source=f"{prompt_format.source_prefix}{model}", shard_size=shard_size, progress=progress)
    summaries: dict[str, SnapshotSummary] = {}
    if data_parallel_size > 1:
        launcher = DataParallel(data_parallel_size, backend, model, options,
                                EngineInfo(backend, model, engine_version, options), SnapshotConfig().shard_timeout_s)
        for name, prompts in eval_sets.items():
            summaries[name] = run_snapshot(launcher, [student_messages(p.messages, prompt_format) for p in prompts],
                                           Path(out_dir) / name, settings, **common)
        return summaries
    engine = create_engine(backend, model, **options)
    try:
        for name, prompts in eval_sets.items():
            LOG.info("student answers for `%s`: %d prompts", name, len(prompts))
            summaries[name] = run_snapshot(engine, [student_messages(p.messages, prompt_format) for p in prompts],
                                           Path(out_dir) / name, settings, **common)
    finally:
        engine.close()
    return summaries


def read_answers(answers_dir: str | Path, benchmark: str) -> dict[str, dict[str, Any]]:
    """`prompt_id -> snapshot row` of one model's answers to one set ({} when absent).
    Non-greedy answers are read but warned about: they are not the paper's protocol."""
    directory = Path(answers_dir) / benchmark
    manifest = store.read_manifest(directory)
    if manifest is None:
        return {}
    temperature = (manifest.get("sampling") or {}).get("temperature")
    if temperature != 0:
        LOG.warning("answers in %s were sampled with temperature %s, not greedy.", directory, temperature)
    return {row["prompt_id"]: row for row in store.iter_rows(directory) if row.get("sample_index", 0) == 0}


def answers_format(answers_dir: str | Path, benchmark: str) -> PromptFormat:
    """How the student was asked, from the folder's `source` (chat when it has no answers)."""
    manifest = store.read_manifest(Path(answers_dir) / benchmark) or {}
    source = str(manifest.get("source", ""))
    return next((f for f in PromptFormat if f is not PromptFormat.CHAT and source.startswith(f.source_prefix)),
                PromptFormat.CHAT)


def answers_by_eval_prompt(answers_dir: str | Path, benchmark: str,
                           prompts: Sequence[EvalPrompt]) -> dict[str, dict[str, Any]]:
    """`read_answers` keyed by each evaluation prompt's own id, whatever the prompt format
    the student was asked in (a wrapped prompt has another id)."""
    rows = read_answers(answers_dir, benchmark)
    prompt_format = answers_format(answers_dir, benchmark)
    if prompt_format is PromptFormat.CHAT:
        return rows
    asked = {p.prompt_id: prompt_id(student_messages(p.messages, prompt_format)) for p in prompts}
    return {pid: rows[asked_id] for pid, asked_id in asked.items() if asked_id in rows}
