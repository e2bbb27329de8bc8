"""The `soda:` block of an Axolotl config, merged into Axolotl's schema by the plugin.

All soda keys live under one `soda:` block so that they cannot collide with Axolotl's or
another plugin's keys. Unknown keys are errors that name the key and suggest a fix.

NOTE: defaults that differ from the host's:
- `soda.on_bad_row` is `error`: Axolotl's own loaders drop or keep bad rows silently.
- `soda.free_reference_model` is `true`: with `precompute_ref_log_probs: true` no second
  copy of the model is loaded (TRL would keep Axolotl's reference model resident).
- `soda.chunked_logps` is `true`: TRL's DPO takes its chunked log-prob path (TRL's
  `use_liger_kernel`, with every Liger kernel off), never the full logits; see `memory.py`.
- `soda.precompute_ref_batch_size` is passed to TRL's `DPOConfig` key of the same name,
  which Axolotl's schema does not expose; unset, TRL precomputes at
  `per_device_train_batch_size` (`trl/trainer/dpo_trainer.py:990`).
- `soda.reference_logps` is `reuse`: TRL's `_precompute_ref_logps` is replaced by soda's
  reference pass, which stores q_w's log-probs per pair and reuses them (`reference_pass`).
"""

from __future__ import annotations

import difflib
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..constants import DATASET_KEY_MESSAGES, DATASET_KEY_STUDENT, DATASET_KEY_TEACHER
from ..format.rows import OnBadRow

SODA_TYPES = ("soda", "soda_plugin.soda")


class Stage(str, Enum):
    CHAIN = "chain"
    WARMUP = "warmup"
    DPO = "dpo"


class ReferenceLogps(str, Enum):
    REUSE = "reuse"  # stored values of this reference are reused, the rest computed and stored
    REQUIRE = "require"  # every pair must be in the store already: no reference work at all
    OFF = "off"  # TRL's own precompute and its cache file


class OnWarmupChange(str, Enum):
    ERROR = "error"
    RERUN = "rerun"


def _reject_unknown_keys(model: type[BaseModel], data: Any, where: str) -> None:
    if not isinstance(data, dict):
        return
    known = set(model.model_fields)
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), sorted(known), n=1)
        hint = f"did you mean `{where}.{close[0]}`? " if close else ""
        raise ValueError(
            f"unknown key `{where}.{key}`: {hint}valid keys under `{where}` are "
            f"{', '.join(sorted(known))}."
        )


def record_dataset_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Copy the column names of `type: soda` dataset entries into `soda.dataset_fields`.

    Axolotl validates each dataset entry as one of several schemas and silently drops the
    keys the chosen schema lacks (an SFT entry has no `field_chosen`). Called on the raw
    config by `SODAPlugin.register`, before Axolotl's validation, and by `SODAArgs`.
    """
    recorded: dict[tuple[Any, Any], dict[str, Any]] = {}
    for key in ("datasets", "test_datasets"):
        for entry in data.get(key) or []:
            if not isinstance(entry, dict) or entry.get("type") not in SODA_TYPES:
                continue
            names = {k: entry[k] for k in (DATASET_KEY_MESSAGES, DATASET_KEY_TEACHER, DATASET_KEY_STUDENT) if entry.get(k)}
            if not names:
                continue
            where = (entry.get("path"), entry.get("name"))
            if where in recorded and recorded[where] != names:
                raise ValueError(
                    f"two `type: soda` entries read `{where[0]}` with different column names "
                    f"({recorded[where]} vs {names}); give them distinct `path`/`name`."
                )
            recorded[where] = names
    if recorded:
        soda = dict(data.get("soda") or {})
        soda["dataset_fields"] = [{"path": p, "name": n, **names} for (p, n), names in recorded.items()]
        data["soda"] = soda
    return data


class _StrictBlock(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)
    _where = "soda"

    @model_validator(mode="before")
    @classmethod
    def check_known_keys(cls, data: Any) -> Any:
        _reject_unknown_keys(cls, data, cls._where.default)  # type: ignore[attr-defined]
        return data


class WarmupConfig(_StrictBlock):
    """The SFT warmup stage (SeqKD on teacher answers) that precedes DPO.

    Unset fields inherit the recipe's top-level value (the DPO stage's).
    """

    _where = "soda.warmup"

    # Output
    output_dir: str | None = Field(
        default=None,
        json_schema_extra={"description": "Where q_w is saved. Default: `<output_dir>/warmup`."},
    )
    on_config_change: OnWarmupChange = Field(
        default=OnWarmupChange.ERROR,
        json_schema_extra={
            "description": "What to do when a finished warmup was made by a different warmup "
            "config: `error` (stop and show the changed keys) or `rerun` (train it again)."
        },
    )
    # Data
    datasets: list[dict[str, Any]] | None = Field(
        default=None,
        json_schema_extra={
            "description": "Warmup datasets; default: the recipe's `datasets`, read in the SFT "
            "view (teacher answer only)."
        },
    )
    # Training
    learning_rate: float | None = Field(default=None, json_schema_extra={"description": "Warmup learning rate."})
    num_epochs: float | None = Field(default=None, json_schema_extra={"description": "Warmup epochs."})
    max_steps: int | None = Field(default=None, json_schema_extra={"description": "Warmup optimizer steps cap."})
    lr_scheduler: str | None = Field(default=None, json_schema_extra={"description": "Warmup LR scheduler."})
    warmup_ratio: float | None = Field(default=None, json_schema_extra={"description": "LR warmup ratio of the warmup stage."})
    warmup_steps: int | None = Field(
        default=None, ge=0,
        json_schema_extra={"description": "LR warmup steps of the warmup stage (replaces the recipe's `warmup_ratio`)."},
    )
    micro_batch_size: int | None = Field(default=None, json_schema_extra={"description": "Warmup micro batch size."})
    pad_to_multiple_of: int | None = Field(
        default=None,
        json_schema_extra={"description": "Pad warmup batches to a multiple of this (Axolotl's default is 64). "
                           "Warmup only: the DPO stage cannot take it (see `check_dpo_padding`)."},
    )
    gradient_accumulation_steps: int | None = Field(
        default=None, json_schema_extra={"description": "Warmup gradient accumulation steps."}
    )
    # Checkpoints
    save_strategy: Literal["no", "steps", "epoch", "best"] | None = Field(
        default=None,
        json_schema_extra={
            "description": "Warmup checkpoints (Hugging Face `save_strategy`). The chain drops "
            "`resume_from_checkpoint` for the warmup and an unfinished warmup trains again from "
            "step 0 unless `auto_resume_from_checkpoints: true`, so `no` saves the disk."
        },
    )

    def overrides(self) -> dict[str, Any]:
        """The top-level Axolotl keys this block sets for the warmup stage."""
        skip = {"output_dir", "on_config_change"}
        values = {k: v for k, v in self.model_dump(exclude_none=True).items() if k not in skip}
        if values.get("save_strategy", "steps") != "steps":
            # The recipe's `save_steps` is the DPO stage's; Axolotl refuses it beside any other
            # strategy (axolotl/utils/schemas/validation.py:534-541, `check_saves`).
            values["save_steps"] = None
        # Axolotl refuses `warmup_steps` beside `warmup_ratio`: the block's one replaces the recipe's other.
        if "warmup_steps" in values:
            values.setdefault("warmup_ratio", None)
        elif "warmup_ratio" in values:
            values["warmup_steps"] = None
        return values


class SnapshotBackend(str, Enum):
    VLLM = "vllm"
    TRANSFORMERS = "transformers"
    OPENAI = "openai"


class SnapshotConfig(_StrictBlock):
    """How `tools/snapshot_q0.py` samples q0's answers. Unset sampling values take the
    defaults of `soda_plugin.snapshot.engine.SamplingSettings` (declared there only)."""

    _where = "soda.snapshot"

    backend: SnapshotBackend = Field(default=SnapshotBackend.VLLM, json_schema_extra={"description": "Engine."})
    output_dir: str | None = Field(
        default=None, json_schema_extra={"description": "Snapshot folder. Default: `<output_dir>/snapshot_q0`."}
    )
    temperature: float | None = Field(default=None, json_schema_extra={"description": "Sampling temperature."})
    top_p: float | None = Field(default=None, json_schema_extra={"description": "Nucleus sampling mass."})
    max_tokens: int | None = Field(default=None, json_schema_extra={"description": "Max new tokens per answer."})
    n: int | None = Field(default=None, json_schema_extra={"description": "Answers sampled per prompt."})
    seed: int | None = Field(default=None, json_schema_extra={"description": "Sampling seed."})
    shard_size: int = Field(default=256, json_schema_extra={"description": "Prompts per atomic output shard."})
    max_prompt_tokens: int | None = Field(
        default=None, ge=1,
        json_schema_extra={"description": "Leave out (and list) prompts longer than this. Default: the recipe's "
                           "`sequence_len` - 1, since no answer fits after a longer prompt."},
    )
    dtype: str | None = Field(default=None, json_schema_extra={"description": "Engine dtype (vllm/transformers)."})
    tensor_parallel_size: int = Field(default=1, json_schema_extra={"description": "vLLM tensor parallelism."})
    data_parallel_size: int | None = Field(
        default=None, json_schema_extra={"description": "vLLM engines, one per GPU. Default: all visible GPUs."}
    )
    base_url: str | None = Field(default=None, json_schema_extra={"description": "Server URL (`openai` backend)."})

    def sampling_overrides(self) -> dict[str, Any]:
        keys = ("temperature", "top_p", "max_tokens", "n", "seed")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class DatasetFields(_StrictBlock):
    """Column names of one `type: soda` dataset entry, as written in `datasets:`."""

    _where = "soda.dataset_fields[]"

    path: str | None = None
    name: str | None = None
    field_messages: str | None = None
    field_chosen: str | None = None
    field_rejected: str | None = None


class SodaConfig(_StrictBlock):
    """Settings of the SODA plugin (`soda:` in a recipe)."""

    _where = "soda"

    stage: Stage = Field(
        default=Stage.CHAIN,
        json_schema_extra={
            "description": "`chain`: warmup (if not already done) then DPO; `warmup`: the warmup "
            "only; `dpo`: DPO only, from a finished warmup (or from `base_model` when there is "
            "no `warmup` block)."
        },
    )
    on_bad_row: OnBadRow = Field(
        default=OnBadRow.ERROR,
        json_schema_extra={
            "description": "`error`: stop at the first bad `soda` row, naming it; `skip`: drop bad "
            "rows and log their count per reason."
        },
    )
    free_reference_model: bool = Field(
        default=True,
        json_schema_extra={
            "description": "With `precompute_ref_log_probs: true`, compute the reference log-probs "
            "with the policy at step 0 (it equals q_w then) instead of loading a second model."
        },
    )
    precompute_only_trained_rows: bool = Field(
        default=True,
        json_schema_extra={
            "description": "With `precompute_ref_log_probs: true` and `max_steps` shorter than the "
            "data, keep a seeded random subset of exactly the rows those steps consume, so no "
            "reference log-probs are computed for rows training never sees."
        },
    )
    precompute_ref_batch_size: int | None = Field(
        default=None,
        ge=1,
        json_schema_extra={
            "description": "Pairs per forward pass of the reference log-prob precompute (TRL's "
            "`precompute_ref_batch_size`, not in Axolotl's schema). No gradients and no optimizer "
            "state exist then, so it can exceed `micro_batch_size`. Needs "
            "`precompute_ref_log_probs: true`. Default: TRL's (`micro_batch_size`)."
        },
    )
    reference_logps: ReferenceLogps = Field(
        default=ReferenceLogps.REUSE,
        json_schema_extra={
            "description": "With `precompute_ref_log_probs: true`, where q_w's reference log-probs come from: "
            "`reuse` (the stored values of this reference, the missing pairs computed longest first and "
            "stored), `require` (every pair must be stored already, e.g. by `soda reference`; else an "
            "error), `off` (TRL's own precompute and cache file). See docs/memory.md."
        },
    )
    reference_logps_dir: str | None = Field(
        default=None,
        json_schema_extra={
            "description": "The store of reference log-probs. Default: `<q_w>/reference_logps` beside the "
            "warmup's weights, or `<output_dir>/reference_logps` when DPO runs without a warmup."
        },
    )
    chunked_logps: bool = Field(
        default=True,
        json_schema_extra={
            "description": "DPO log-probs from the answer tokens' last hidden states, put through "
            "`lm_head` in vocabulary chunks (TRL's chunked path, `use_liger_kernel`, with every Liger "
            "kernel off): the policy and reference forwards never hold the [2 x batch, length, vocab] "
            "logits; the same log-probs to float rounding. Off, or where TRL's chunked path cannot run "
            "(no `liger-kernel` package, `dpo_use_weighting`, an adapter on `lm_head`, a MoE auxiliary "
            "loss), TRL's full logits. An explicit `dpo_use_liger_kernel` wins."
        },
    )
    gpus: int | None = Field(
        default=None,
        ge=1,
        json_schema_extra={
            "description": "The number of processes (GPUs) the recipe's batch arithmetic is written "
            "for: rows per optimizer step = `micro_batch_size` x `gradient_accumulation_steps` x "
            "`gpus`. A launch with another world size trains with other batches; soda logs a warning."
        },
    )
    warmup: WarmupConfig | None = Field(
        default=None,
        json_schema_extra={"description": "The SFT warmup stage; absent: DPO starts from `base_model`."},
    )
    snapshot: SnapshotConfig | None = Field(
        default=None, json_schema_extra={"description": "Settings of the q0 snapshot tool."}
    )
    dataset_fields: list[DatasetFields] = Field(
        default_factory=list,
        json_schema_extra={
            "description": "Filled at load time from the `field_*` keys of `type: soda` entries in "
            "`datasets:`/`test_datasets:`; Axolotl's dataset schemas drop some of those keys "
            "(an SFT entry has no `field_chosen`), so they are kept here. Do not set by hand."
        },
    )


class SODAArgs(BaseModel):
    """Input arguments the plugin adds to Axolotl's config schema."""

    soda: SodaConfig | None = Field(
        default=None, json_schema_extra={"description": "SODA settings; see `soda_plugin.train.args.SodaConfig`."}
    )

    @model_validator(mode="before")
    @classmethod
    def check_no_stray_soda_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and key.lower().startswith("soda") and key != "soda":
                    raise ValueError(
                        f"unknown key `{key}`: soda settings live in one block, e.g. "
                        f"`soda: {{{key[5:] or 'warmup'}: ...}}`."
                    )
        return data

    @model_validator(mode="before")
    @classmethod
    def check_soda_dataset_fields(cls, data: Any) -> Any:
        return record_dataset_fields(data) if isinstance(data, dict) else data

    @model_validator(mode="before")
    @classmethod
    def check_warmup_chain_needs_dpo(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("soda"), dict):
            return data
        soda = data["soda"]
        stage = str(soda.get("stage") or Stage.CHAIN.value)
        rl = data.get("rl")
        rl = getattr(rl, "value", rl)
        if stage in (Stage.CHAIN.value, Stage.WARMUP.value) and soda.get("warmup") is not None and rl != "dpo":
            raise ValueError(
                f"`soda.warmup` chains an SFT warmup into DPO, but `rl` is {rl!r}. Set `rl: dpo`, "
                "or remove `soda.warmup` to train a plain SFT stage with `type: soda`."
            )
        if stage == Stage.WARMUP.value and soda.get("warmup") is None:
            raise ValueError("`soda.stage: warmup` needs a `soda.warmup` block describing the warmup.")
        return data

    @model_validator(mode="before")
    @classmethod
    def check_dpo_padding(cls, data: Any) -> Any:
        # With `pad_to_multiple_of`, Axolotl's RL builder swaps TRL's preference collator for
        # its own (axolotl/core/builders/rl.py `build_collator`), which emits
        # `prompt_input_ids`/`chosen_input_ids`; TRL's DPO trainer reads `inputs["input_ids"]`
        # (trl/trainer/dpo_trainer.py `_compute_ref_log_probs`, `_compute_loss`): a KeyError
        # at the first batch, after the warmup has already trained.
        if not isinstance(data, dict) or not isinstance(data.get("soda"), dict):
            return data
        rl = getattr(data.get("rl"), "value", data.get("rl"))
        if rl == "dpo" and data.get("pad_to_multiple_of"):
            raise ValueError(
                f"`pad_to_multiple_of: {data['pad_to_multiple_of']}` with `rl: dpo` makes Axolotl use its own DPO "
                "collator, whose batches TRL's DPO trainer cannot read (KeyError 'input_ids'). TRL's collator "
                "already pads each batch to its longest row. Move it to `soda.warmup.pad_to_multiple_of` to pad "
                "the warmup's SFT batches only.")
        return data

    @model_validator(mode="before")
    @classmethod
    def check_precompute_batch_needs_precompute(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("soda"), dict):
            return data
        mode = data["soda"].get("reference_logps")
        if mode not in (None, ReferenceLogps.OFF.value, ReferenceLogps.OFF) and data.get("rl") is not None and \
                data.get("precompute_ref_log_probs") is not True:
            raise ValueError(
                f"`soda.reference_logps: {getattr(mode, 'value', mode)}` stores and reuses precomputed reference "
                f"log-probs, but `precompute_ref_log_probs` is {data.get('precompute_ref_log_probs')!r}. Set "
                "`precompute_ref_log_probs: true`, or remove `soda.reference_logps`.")
        size = data["soda"].get("precompute_ref_batch_size")
        if size is not None and data.get("precompute_ref_log_probs") is not True:
            raise ValueError(
                f"`soda.precompute_ref_batch_size: {size}` sizes the reference log-prob precompute, "
                f"but `precompute_ref_log_probs` is {data.get('precompute_ref_log_probs')!r}. Set "
                "`precompute_ref_log_probs: true`, or remove `soda.precompute_ref_batch_size`."
            )
        return data
