"""DPO log-probs without the [2 x batch, length, vocab] logits (`soda.chunked_logps`).

TRL's DPO loss runs the whole model, so the policy forward returns full float logits,
and takes the answer tokens' log-probs from them (`selective_log_softmax_and_entropy`,
trl/trainer/dpo_trainer.py:1346-1350 in TRL 1.14); its metrics copy the masked chosen
and rejected logits again (:1641-1647), and backward builds logits-sized gradients. With
`use_liger_kernel` TRL takes its chunked path instead (:1341 ->
`_get_per_token_logps_and_entropies`, :1209): the backbone's last hidden states of the
answer tokens only go through `lm_head` in vocabulary chunks with an online logsumexp
(`_ChunkedLogProbFunction`, trl/trainer/utils.py:1460), pure torch. The reference
log-prob precompute takes the same path (:1293). TRL only checks that the `liger_kernel`
package is installed (:807).

The flag has a second reader: transformers' `Trainer.train` patches the model with Liger's
Triton kernels when it is set (transformers/trainer.py:1491, `apply_liger_kernel`), which
`liger_kernel_config` steers. We pass every kernel switch off, so the model is left as it
is (no Triton kernel, CPU works) and only TRL's chunked log-probs remain.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from ..log import get_logger

LOG = get_logger(__name__)


def _liger_apply_functions() -> dict[str, Any]:
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return MODEL_TYPE_TO_APPLY_LIGER_FN


def no_liger_kernels() -> dict[str, bool]:
    """`liger_kernel_config` with every kernel switch of Liger's per-model patch functions off."""
    flags = {
        name
        for apply in _liger_apply_functions().values()
        for name, parameter in inspect.signature(apply).parameters.items()
        if isinstance(parameter.default, bool)
    }
    return dict.fromkeys(sorted(flags), False)


def _model_config(cfg: Mapping[str, Any]) -> Any | None:
    base_model = cfg.get("base_model")
    if not base_model:
        return None
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(base_model, trust_remote_code=bool(cfg.get("trust_remote_code")))
    except Exception:  # noqa: BLE001 - unreadable here means Axolotl will report it, not us
        return None


def _targets_lm_head(cfg: Mapping[str, Any]) -> bool:
    names = [*(cfg.get("lora_target_modules") or []), *(cfg.get("lora_modules_to_save") or [])]
    return bool(cfg.get("adapter")) and any("lm_head" in str(name) for name in names)


def chunked_path_blocker(cfg: Mapping[str, Any]) -> str | None:
    """Why TRL's chunked path cannot run for `cfg` (TRL would raise), or None."""
    from trl import DPOTrainer
    from trl.import_utils import is_liger_kernel_available

    if not hasattr(DPOTrainer, "_get_per_token_logps_and_entropies"):
        # TRL 1.9's `use_liger_kernel` is Liger's fused DPO loss, which refuses precomputed
        # reference log-probs and runs Triton kernels.
        return "this TRL has no chunked log-prob path (its `use_liger_kernel` is Liger's fused DPO loss)"
    if not is_liger_kernel_available():
        return "the `liger-kernel` package, whose presence TRL checks, is not installed"
    if cfg.get("dpo_use_weighting"):
        return "`dpo_use_weighting` needs the full logits (trl/trainer/dpo_trainer.py:812)"
    if _targets_lm_head(cfg):
        return "an adapter on `lm_head` is not seen by the chunked projection (trl/trainer/dpo_trainer.py:829)"
    config = _model_config(cfg)
    if config is None:
        return None
    text = config.get_text_config()
    if hasattr(text, "output_router_logits") and getattr(text, "router_aux_loss_coef", 0.0):
        return "the MoE auxiliary loss needs the full forward (trl/trainer/dpo_trainer.py:904)"
    apply = _liger_apply_functions().get(config.model_type)
    if apply is not None and any(p.kind is p.VAR_KEYWORD for p in inspect.signature(apply).parameters.values()):
        return f"Liger's patch for `{config.model_type}` cannot be switched off kernel by kernel"
    return None


def chunked_logps_training_args(cfg: Mapping[str, Any], enabled: bool) -> dict[str, Any]:
    """The DPO `TrainingArguments` kwargs for TRL's chunked log-probs; {} to keep TRL's default.

    An explicit `dpo_use_liger_kernel` in the recipe is left to Axolotl (it passes it on
    itself; `true` then also applies Liger's kernels, as transformers does).
    """
    if not enabled or cfg.get("dpo_use_liger_kernel") is not None:
        return {}
    blocker = chunked_path_blocker(cfg)
    if blocker:
        LOG.warning("soda: DPO log-probs from the full logits (`soda.chunked_logps` is on, but %s).", blocker)
        return {}
    return {"use_liger_kernel": True, "liger_kernel_config": no_liger_kernels()}
