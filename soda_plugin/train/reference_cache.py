"""Precomputed reference log-probs that belong to the reference they were computed with.

TRL caches them in `cache-<Hasher.hash((dataset._fingerprint, hash_module(model)))>.arrow`
beside the dataset and reuses any file of that name (`trl/trainer/dpo_trainer.py`,
`_precompute_ref_logps`: `if os.path.exists(cache_file): return ...`). `hash_module`
hashes `state_dict()`, which under ZeRO-3's `zero.Init` holds empty placeholders when the
precompute runs: the key then names the architecture only, and a warmup retrained at the
same path silently reuses the previous q_w's log-probs. Two guards:

- the datasets' fingerprints are folded with the reference weights' identity (their files'
  names, sizes and modification times), so a new q_w gets a new cache file;
- at DPO step 1, before any update, the policy is the reference, so TRL's rewards must be
  about 0: a larger value is logged as a stale or wrong reference.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..cost.recorder import COST_FILENAME
from ..log import get_logger

LOG = get_logger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".json")
# |mean reward| allowed at step 1: beta x (policy - reference) log-ratio is 0 up to bf16
# noise (~1e-3 at beta 0.1); a different q_w is off by whole nats x beta.
STEP_ONE_REWARD_TOLERANCE = 0.05


def weights_identity(model: str, revision: str | None = None) -> str:
    """What names these weights: a local folder's weight and config files (name, size,
    mtime), or a Hub id with its revision."""
    folder = Path(model)
    if not folder.is_dir():
        return f"hub:{model}@{revision or 'main'}"
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES) and p.name != COST_FILENAME)
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return "local:" + hashlib.sha256(json.dumps(stats).encode("utf-8")).hexdigest()


def tie_to_reference(dataset: Any, identity: str) -> Any:
    """Fold `identity` into a `datasets.Dataset`'s fingerprint; everything TRL derives from
    it (its tokenized maps, the reference cache key) changes with it."""
    from datasets.fingerprint import Hasher

    if dataset is not None and hasattr(dataset, "_fingerprint"):
        dataset._fingerprint = Hasher.hash((dataset._fingerprint, identity))
    return dataset


def tie_reference_cache_to_weights(meta: Any, cfg: Any) -> None:
    """Tie the train and eval datasets of `meta` to the reference the DPO stage uses (the
    model it starts from: q_w, or `base_model` when DPO runs alone)."""
    identity = weights_identity(str(cfg.base_model), cfg.get("base_model_revision"))
    tie_to_reference(getattr(meta, "train_dataset", None), identity)
    tie_to_reference(getattr(meta, "eval_dataset", None), identity)
    LOG.info("soda: reference log-probs are cached per reference weights (%s of %s).", identity[:20], cfg.base_model)


class StepOneRewardCheck(TrainerCallback):
    """Warn when TRL's rewards at DPO step 1 are not ~0, where the policy is the reference."""

    def __init__(self, trainer: Any, tolerance: float = STEP_ONE_REWARD_TOLERANCE):
        self.trainer = trainer
        self.tolerance = tolerance
        self.result: dict[str, float] | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step != 1 or self.result is not None:
            return
        # TRL appends one value per micro-batch and clears them at each log; on_step_end of
        # step 1 runs before that log, so these are step 1's micro-batches, all pre-update.
        metrics = getattr(self.trainer, "_metrics", {}).get("train", {})
        values = {key: max((abs(v) for v in metrics.get(key, [])), default=None)
                  for key in ("rewards/chosen", "rewards/rejected")}
        if any(v is None for v in values.values()):
            LOG.warning("soda: TRL recorded no rewards at step 1; the reference could not be checked.")
            return
        self.result = values
        if max(values.values()) > self.tolerance:
            LOG.warning(
                "soda: at DPO step 1 the policy is the reference, so its rewards should be ~0, but "
                "|rewards/chosen| = %.4f, |rewards/rejected| = %.4f (> %.2f). The reference log-probs "
                "are not those of the starting model: stale stored values from an earlier warmup (soda's "
                "`reference_logps` store, or TRL's `cache-*.arrow` with `soda.reference_logps: off`), or a "
                "reference loaded from other weights. Delete that store or cache and re-run.",
                values["rewards/chosen"], values["rewards/rejected"], self.tolerance,
            )
        else:
            LOG.info("soda: step-1 rewards are ~0 (max |reward| %.2e): the reference is the starting model.",
                     max(values.values()))


__all__ = ["StepOneRewardCheck", "tie_reference_cache_to_weights", "tie_to_reference", "weights_identity",
           "STEP_ONE_REWARD_TOLERANCE"]
