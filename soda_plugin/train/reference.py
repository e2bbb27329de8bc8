"""No resident reference model when reference log-probs are precomputed.

At DPO step 0 the policy *is* q_w, the reference. TRL (>= 1.x) computes precomputed
reference log-probs with the policy when it gets no reference model, before any
update; Axolotl however always loads a second copy for full fine-tuning. We make
Axolotl hand TRL `None` in exactly that case.
"""

from __future__ import annotations

import functools
from ..log import get_logger
from typing import Any, Mapping

LOG = get_logger(__name__)


def should_skip_reference_model(cfg: Mapping[str, Any]) -> bool:
    soda = cfg.get("soda")
    if soda is None:
        return False
    free = soda.get("free_reference_model", True) if isinstance(soda, Mapping) else soda.free_reference_model
    rl = cfg.get("rl")
    rl = str(getattr(rl, "value", rl))
    return bool(free and cfg.get("precompute_ref_log_probs") and rl in ("dpo", "ipo") and not cfg.get("adapter"))


def install_reference_model_skip() -> bool:
    """Wrap Axolotl's `setup_reference_model` (idempotent). Returns False if absent."""
    import axolotl.train as axolotl_train

    original = getattr(axolotl_train, "setup_reference_model", None)
    if original is None:
        LOG.warning(
            "soda: this Axolotl has no `axolotl.train.setup_reference_model`; the DPO stage "
            "keeps Axolotl's resident reference model."
        )
        return False
    if getattr(original, "_soda_wrapped", False):
        return True

    @functools.wraps(original)
    def setup_reference_model(cfg, *args, **kwargs):
        if should_skip_reference_model(cfg):
            LOG.info(
                "soda: `precompute_ref_log_probs` is on: reference log-probs come from the "
                "policy at step 0 (= q_w); no second model is loaded."
            )
            return None
        return original(cfg, *args, **kwargs)

    setup_reference_model._soda_wrapped = True  # type: ignore[attr-defined]
    axolotl_train.setup_reference_model = setup_reference_model
    return True
