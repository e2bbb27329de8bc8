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

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from ..constants import DATASET_KEY_MESSAGES, DATASET_KEY_STUDENT, DATASET_KEY_TEACHER
from ..format.rows import OnBadRow
from ..format.strict_block import StrictBlock
from ..snapshot.config import SnapshotConfig

SODA_TYPES = ("soda", "soda_plugin.soda")


def rl_method(cfg: Any) -> str | None:
    """The recipe's `rl` as a plain string (`"dpo"`, `"grpo"`...), or None for SFT: Axolotl's
    validated config holds an `RLType` enum, the raw YAML a string."""
    rl = cfg.get("rl") if cfg else None
    return str(getattr(rl, "value", rl)) if rl else None


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


class WarmupConfig(StrictBlock):
    """The SFT warmup stage (SeqKD on teacher answers) that precedes DPO.

    Unset fields inherit the recipe's top-level value (the DPO stage's).
    """

    _where = "soda.warmup"

    # Output
    output_dir: str | None = Field(
        default=None,
        json_schema_extra={"description": "Where q_w is saved, with its `soda_stage.json` marker. Default: "
                           "`<output_dir>/warmup`."},
    )
    on_config_change: OnWarmupChange = Field(
        default=OnWarmupChange.ERROR,
        json_schema_extra={
            "description": "A finished warmup made by another warmup config: `error` stops and lists the "
            "changed keys, `rerun` trains it again."
        },
    )
    # Data
    datasets: list[dict[str, Any]] | None = Field(
        default=None,
        json_schema_extra={
            "description": "Warmup data, read in the SFT view (loss on the teacher's answer only). "
            "Unset: the recipe's `datasets`."
        },
    )
    # Training
    learning_rate: float | None = Field(
        default=None, json_schema_extra={"description": "Warmup learning rate. Unset: the recipe's `learning_rate`."})
    num_epochs: float | None = Field(
        default=None, json_schema_extra={"description": "Warmup epochs. Unset: the recipe's `num_epochs`."})
    max_steps: int | None = Field(
        default=None, json_schema_extra={"description": "Cap on the warmup's optimizer steps. Unset: the recipe's "
                                         "`max_steps`."})
    lr_scheduler: str | None = Field(
        default=None, json_schema_extra={"description": "Warmup LR scheduler. Unset: the recipe's `lr_scheduler`."})
    warmup_ratio: float | None = Field(
        default=None, json_schema_extra={"description": "LR warmup ratio of the warmup stage (replaces the recipe's "
                                         "`warmup_steps`). Unset: the recipe's `warmup_ratio`."})
    warmup_steps: int | None = Field(
        default=None, ge=0,
        json_schema_extra={"description": "LR warmup steps of the warmup stage (replaces the recipe's `warmup_ratio`). "
                           "Unset: the recipe's `warmup_steps`."},
    )
    micro_batch_size: int | None = Field(
        default=None, json_schema_extra={"description": "Warmup rows per micro batch. Unset: the recipe's "
                                         "`micro_batch_size`."})
    pad_to_multiple_of: int | None = Field(
        default=None,
        json_schema_extra={"description": "Pad warmup batches to a multiple of this (Axolotl's default is 64). "
                           "Warmup only: the DPO stage cannot take it (see `check_dpo_padding`)."},
    )
    gradient_accumulation_steps: int | None = Field(
        default=None, json_schema_extra={"description": "Warmup gradient accumulation steps. Unset: the recipe's "
                                         "`gradient_accumulation_steps`."}
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
        return warmup_overrides(self, skip={"output_dir", "on_config_change"})


def warmup_overrides(block: BaseModel, skip: set[str]) -> dict[str, Any]:
    """The top-level Axolotl keys a warmup block sets (SODA's and GAD's), its keys in `skip`
    left out, with the recipe keys Axolotl refuses beside them cleared."""
    values = {k: v for k, v in block.model_dump(exclude_none=True).items() if k not in skip}
    if values.get("save_strategy", "steps") != "steps":
        # The recipe's `save_steps` is the next stage's; Axolotl refuses it beside any other
        # strategy (`axolotl.utils.schemas.validation`, `check_saves`).
        values["save_steps"] = None
    # Axolotl refuses `warmup_steps` beside `warmup_ratio`: the block's one replaces the recipe's other.
    if "warmup_steps" in values:
        values.setdefault("warmup_ratio", None)
    elif "warmup_ratio" in values:
        values["warmup_steps"] = None
    return values


class DatasetFields(StrictBlock):
    """Column names of one `type: soda` dataset entry, as written in `datasets:`."""

    _where = "soda.dataset_fields[]"

    path: str | None = Field(default=None, json_schema_extra={"description": "The dataset entry's `path`."})
    name: str | None = Field(default=None, json_schema_extra={"description": "The dataset entry's `name`."})
    field_messages: str | None = Field(
        default=None, json_schema_extra={"description": "Column of the prompt messages (default `content`)."})
    field_chosen: str | None = Field(
        default=None, json_schema_extra={"description": "Column of the teacher's answer (default `teacher_response`)."})
    field_rejected: str | None = Field(
        default=None, json_schema_extra={"description": "Column of q0's answer (default `student_response`)."})


class SodaConfig(StrictBlock):
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
            "description": "`error`: stop at the first bad `soda` row, before any model loads, naming its "
            "file, row, field and reason; `skip`: drop bad rows, log their count per reason and list them in "
            "`<dataset_prepared_path>/soda_rows/*.skipped.jsonl`."
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
        json_schema_extra={"description": "The SFT warmup stage run before DPO (SeqKD on the teacher's answers: "
                           "q_w); its unset keys inherit the recipe's top level. Absent: DPO starts from "
                           "`base_model`."},
    )
    snapshot: SnapshotConfig | None = Field(
        default=None, json_schema_extra={"description": "How `soda snapshot` samples q0's answers (docs/snapshot.md)."}
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
        default=None, json_schema_extra={"description": "SODA settings: `SodaConfig`, every key listed in docs/recipe_keys.md."}
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
        rl = rl_method(data)
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
    def check_no_quantized_adapter_to_merge(cls, data: Any) -> Any:
        # Here, at config time: `merge.merge_warmup_adapter` refuses it too, but only after the
        # warmup has trained.
        if isinstance(data, dict) and isinstance(data.get("soda"), dict) and rl_method(data) == "dpo":
            from .merge import refuse_quantized_base

            refuse_quantized_base(data)
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
        rl = rl_method(data)
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
