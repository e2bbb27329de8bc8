"""Student answers to the evaluation prompts: greedy, through the snapshot engines and
runner, so they are resumable after any kill exactly like the q0 snapshot.

    <answers_dir>/<benchmark>/run.json, shards/shard-*.jsonl   (snapshot layout, docs/snapshot.md)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..evalsets import EvalPrompt
from ..log import get_logger
from ..snapshot import store
from ..snapshot.engine import EngineInfo, SamplingSettings, create_engine
from ..snapshot.runner import SnapshotSummary, run_snapshot

LOG = get_logger(__name__)

DEFAULT_ANSWER_MAX_TOKENS = 1536  # the paper's evaluation length


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
        from ..train.merge import refuse_adapter_only

        refuse_adapter_only(model, use=f"the {backend} backend", hub_base_ok=backend == "transformers")


def generate_answers(backend: str, model: str, options: dict[str, Any], eval_sets: Mapping[str, Sequence[EvalPrompt]],
                     out_dir: str | Path, *, max_tokens: int = DEFAULT_ANSWER_MAX_TOKENS, shard_size: int = 64,
                     progress: bool = True, data_parallel_size: int = 1,
                     engine_version: str = "unknown") -> dict[str, SnapshotSummary]:
    """Answer every prompt of every set not yet answered in `out_dir/<benchmark>`.

    One engine serves all sets; with `data_parallel_size > 1` each set is split over that
    many engines (one per GPU group, `snapshot/data_parallel.py`).
    """
    check_student(backend, model)
    settings = answer_settings(max_tokens)
    common = dict(source=f"eval:{model}", shard_size=shard_size, progress=progress)
    summaries: dict[str, SnapshotSummary] = {}
    if data_parallel_size > 1:
        info = EngineInfo(backend, model, engine_version, options)
        for name, prompts in eval_sets.items():
            summaries[name] = run_snapshot(None, [p.messages for p in prompts], Path(out_dir) / name, settings,
                                           data_parallel=(data_parallel_size, backend, model, options, info), **common)
        return summaries
    engine = create_engine(backend, model, **options)
    try:
        for name, prompts in eval_sets.items():
            LOG.info("student answers for `%s`: %d prompts", name, len(prompts))
            summaries[name] = run_snapshot(engine, [p.messages for p in prompts], Path(out_dir) / name, settings,
                                           **common)
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
