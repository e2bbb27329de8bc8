"""No resident reference model when reference log-probs are precomputed.

At DPO step 0 the policy *is* q_w, the reference. TRL (>= 1.x) computes precomputed
reference log-probs with the policy when it gets no reference model, before any
update; Axolotl however always loads a second copy for full fine-tuning. We make
Axolotl hand TRL `None` in exactly that case (`host_patches.install_reference_model_skip`
wraps Axolotl's `setup_reference_model` with this predicate).
"""

from __future__ import annotations

from typing import Any, Mapping

from .args import rl_method


def should_skip_reference_model(cfg: Mapping[str, Any]) -> bool:
    soda = cfg.get("soda")
    if soda is None:
        return False
    free = soda.get("free_reference_model", True) if isinstance(soda, Mapping) else soda.free_reference_model
    rl = rl_method(cfg)
    return bool(free and cfg.get("precompute_ref_log_probs") and rl in ("dpo", "ipo") and not cfg.get("adapter"))
