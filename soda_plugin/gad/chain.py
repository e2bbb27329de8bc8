"""GAD's two stages in one `axolotl train`: the warmup (SFT + D on live rollouts), then GAD.

The same machinery as SODA's warmup -> DPO chain (`train/chain.py`, `train/stages.py`): the
warmup runs in this process through Axolotl's own loaders, a marker records that it
finished and with which config, and the GAD stage starts both models from its folder.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from ..log import get_logger
from ..train.chain import point_at_warmup, raw_config, require_finished_warmup, run_or_reuse_warmup
from ..train.stages import default_warmup_dir
from .args import GADConfig, GADStage, PolicyLoss
from .trainer import discriminator_dir

LOG = get_logger(__name__)


def gad_config(cfg: Mapping[str, Any]) -> GADConfig | None:
    block = cfg.get("gad")
    if block is None:
        return None
    return block if isinstance(block, GADConfig) else GADConfig.model_validate(dict(block))


def derive_gad_warmup_config(raw: Mapping[str, Any], gad: GADConfig) -> dict[str, Any]:
    """The warmup stage's config: the recipe with `gad.warmup`'s values, the SFT policy loss,
    verl's critic warmup and the warmup's KL coefficient."""
    if gad.warmup is None:
        raise ValueError("this GAD recipe has no `gad.warmup` block, so there is no warmup stage to derive.")
    cfg = {k: copy.deepcopy(v) for k, v in raw.items() if k != "gad"}
    cfg.update(copy.deepcopy(gad.warmup.overrides()))
    cfg["output_dir"] = gad.warmup.output_dir or default_warmup_dir(raw.get("output_dir"))
    cfg["trl"] = {**dict(cfg.get("trl") or {}), "beta": gad.warmup.kl_coef}
    cfg.pop("resume_from_checkpoint", None)
    cfg["gad"] = {
        "stage": GADStage.GAD.value,
        "on_bad_row": gad.on_bad_row.value,
        "policy_loss": PolicyLoss.SFT.value,
        "critic_warmup": gad.warmup.critic_warmup,
        "discriminator": gad.discriminator.model_dump(mode="json", exclude_none=True),
    }
    return cfg


def discriminator_start(cfg: Mapping[str, Any]) -> str:
    """Where this stage's D starts: the recipe's `gad.discriminator.path`, else the student."""
    gad = gad_config(cfg)
    return (gad.discriminator.path if gad else None) or str(cfg.get("base_model"))


def prepare_gad_stage(cfg: Any) -> None:
    """Run or reuse the warmup as `gad.stage` says, and start the GAD stage from it."""
    gad = gad_config(cfg)
    if gad is None or gad.warmup is None:
        return
    warmup_cfg = derive_gad_warmup_config(raw_config(cfg), gad)
    directory = warmup_cfg["output_dir"]
    if gad.stage is GADStage.GAD:
        require_finished_warmup(directory, warmup_cfg, block="gad")
    else:
        run_or_reuse_warmup(warmup_cfg, gad.warmup.on_config_change, block="gad")
        if gad.stage is GADStage.WARMUP:
            LOG.info("gad: `gad.stage: warmup`; the warmed-up student and D are in %s, stopping.", directory)
            raise SystemExit(0)
    point_at_warmup(cfg, directory)
    block = cfg["gad"]
    block["discriminator"] = {**dict(block.get("discriminator") or {}), "path": discriminator_dir(directory)}
    LOG.info("gad: the GAD stage starts from the warmup's student and discriminator in %s (its KL reference is "
             "that student).", directory)
