"""The `gad:` block of a GAD recipe, merged into Axolotl's schema by `GADPlugin`.

GAD (Generative Adversarial Distillation, arXiv 2511.10643) trains the student with GRPO
against a discriminator D, and D with a Bradley-Terry loss that ranks the teacher's
answer above the student's rollout. The recipe's top level is the GAD stage (`rl: grpo`);
`gad.warmup` describes the warmup stage that precedes it (docs/gad.md).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from ..format.rows import OnBadRow
from ..format.strict_block import StrictBlock
from ..train.args import OnWarmupChange, rl_method, warmup_overrides

TRAINER_CLS = "soda_plugin.gad.trainer.GADTrainer"


class GADStage(str, Enum):
    CHAIN = "chain"  # the warmup (unless finished) then the GAD stage
    WARMUP = "warmup"  # the warmup only
    GAD = "gad"  # the GAD stage only, from a finished warmup


class PolicyLoss(str, Enum):
    GRPO = "grpo"  # the GAD stage: GRPO on D's rewards
    SFT = "sft"  # the warmup: SFT on the teacher's answers while D trains on live rollouts


class DiscriminatorConfig(StrictBlock):
    """D = the student's backbone plus a fresh scalar head, scored at the last token."""

    _where = "gad.discriminator"

    path: str | None = Field(
        default=None,
        json_schema_extra={"description": "Where D starts. Default: the untouched student (`base_model`) with a "
                           "fresh head in the warmup; the warmup's `discriminator/` in the GAD stage."},
    )
    learning_rate: float = Field(default=1.0e-6, gt=0, json_schema_extra={"description": "D's rate (GAD: 1e-6)."})
    weight_decay: float = Field(default=0.01, ge=0, json_schema_extra={"description": "AdamW decay (verl's 0.01)."})
    max_grad_norm: float = Field(default=0.2, gt=0, json_schema_extra={"description": "D's gradient clip (GAD: 0.2)."})
    micro_batch_size: int | None = Field(
        default=None, ge=1,
        json_schema_extra={"description": "Sequences per D forward. Default: the recipe's `micro_batch_size`."},
    )


class GADWarmupConfig(StrictBlock):
    """The warmup stage: SFT on the teacher's answers while D learns on live rollouts.
    Unset fields inherit the recipe's top-level value (the GAD stage's)."""

    _where = "gad.warmup"

    output_dir: str | None = Field(
        default=None, json_schema_extra={"description": "Where the warmup's policy and D (`discriminator/`) are "
                                         "saved, with the stage marker. Default: `<output_dir>/warmup`."})
    on_config_change: OnWarmupChange = Field(
        default=OnWarmupChange.ERROR,
        json_schema_extra={"description": "A finished warmup made by another config: `error` or `rerun`."},
    )
    learning_rate: float | None = Field(
        default=None, json_schema_extra={"description": "The policy's warmup learning rate. Unset: the recipe's."})
    num_epochs: float | None = Field(
        default=None, json_schema_extra={"description": "Warmup epochs. Unset: the recipe's `num_epochs`."})
    max_steps: int | None = Field(
        default=None, json_schema_extra={"description": "Cap on the warmup's optimizer steps. Unset: the recipe's."})
    lr_scheduler: str | None = Field(
        default=None, json_schema_extra={"description": "Warmup LR scheduler. Unset: the recipe's `lr_scheduler`."})
    warmup_steps: int | None = Field(
        default=None, ge=0,
        json_schema_extra={"description": "LR warmup steps of the warmup stage (replaces the recipe's "
                           "`warmup_ratio`). Unset: the recipe's."})
    micro_batch_size: int | None = Field(
        default=None, ge=1,
        json_schema_extra={"description": "Warmup rows per micro batch. Unset: the recipe's `micro_batch_size`."})
    gradient_accumulation_steps: int | None = Field(
        default=None, ge=1, json_schema_extra={"description": "Prompts per step = this x micro_batch_size / n."})
    save_strategy: Literal["no", "steps", "epoch", "best"] | None = Field(
        default=None, json_schema_extra={"description": "Warmup checkpoints (Hugging Face `save_strategy`). Unset: "
                                         "the recipe's."})
    critic_warmup: int = Field(
        default=10, ge=0,
        json_schema_extra={"description": "verl's `critic_warmup`: the policy trains from step N on; steps "
                           "1..N-1 train D only (GAD's warmup script: 10)."},
    )
    kl_coef: float = Field(
        default=0.0, ge=0,
        json_schema_extra={"description": "KL to the initial policy during the warmup (not stated by GAD; 0: "
                           "no reference model, docs/gad.md)."},
    )

    def overrides(self) -> dict[str, Any]:
        """The top-level Axolotl keys this block sets for GAD's warmup (its D keys are GAD's own)."""
        return warmup_overrides(self, skip={"output_dir", "on_config_change", "critic_warmup", "kl_coef"})


class GADConfig(StrictBlock):
    """Settings of a GAD recipe (`gad:`)."""

    _where = "gad"

    stage: GADStage = Field(
        default=GADStage.CHAIN,
        json_schema_extra={"description": "`chain`: the warmup (unless finished) then the GAD stage; `warmup`: the "
                           "warmup only; `gad`: the GAD stage only, from a finished warmup."},
    )
    on_bad_row: OnBadRow = Field(
        default=OnBadRow.ERROR,
        json_schema_extra={"description": "`error`: stop at the first bad `soda` row, naming it; `skip`: drop bad "
                           "rows and log their count per reason (as `soda.on_bad_row`)."},
    )
    policy_loss: PolicyLoss = Field(
        default=PolicyLoss.GRPO,
        json_schema_extra={"description": "`grpo` (the GAD stage) or `sft` (set by the chain for its warmup)."},
    )
    critic_warmup: int = Field(
        default=0, ge=0,
        json_schema_extra={"description": "Steps before the policy trains (verl's `critic_warmup`); the GAD "
                           "stage resumes a warmed-up D, so 0."},
    )
    discriminator: DiscriminatorConfig = Field(
        default_factory=DiscriminatorConfig,
        json_schema_extra={"description": "The discriminator D: the student's backbone with a fresh scalar head."},
    )
    warmup: GADWarmupConfig | None = Field(
        default=None,
        json_schema_extra={"description": "The warmup stage run before the GAD stage (SFT on the teacher's answers "
                           "while D learns on live rollouts); its unset keys inherit the recipe's top level."},
    )


class GADArgs(BaseModel):
    """Input arguments `GADPlugin` adds to Axolotl's config schema."""

    gad: GADConfig | None = Field(
        default=None, json_schema_extra={"description": "GAD settings; see `soda_plugin.gad.args.GADConfig`."})

    @model_validator(mode="before")
    @classmethod
    def check_gad_recipe(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("gad") is None:
            return data
        problems = recipe_problems(data)
        if problems:
            raise ValueError("this GAD recipe cannot run: " + "; ".join(problems))
        return data


def recipe_problems(data: dict[str, Any]) -> list[str]:
    """What stops a GAD recipe, in the user's terms (checked before any model loads)."""
    problems = []
    rl = rl_method(data)
    if rl != "grpo":
        problems.append(f"`rl` is {rl!r}; GAD's policy trains with GRPO: set `rl: grpo`")
    if data.get("trainer_cls") != TRAINER_CLS:
        problems.append(f"`trainer_cls` is {data.get('trainer_cls')!r}; set `trainer_cls: {TRAINER_CLS}` (the "
                        "GRPO trainer that trains the discriminator)")
    trl = data.get("trl") or {}
    trl = trl if isinstance(trl, dict) else dict(trl)
    if trl.get("reward_funcs"):
        problems.append("`trl.reward_funcs` is set; GAD's only reward is its discriminator's score: remove it")
    if data.get("adapter"):
        problems.append(f"`adapter: {data['adapter']}`; GAD trains the full student and a full discriminator")
    return problems
