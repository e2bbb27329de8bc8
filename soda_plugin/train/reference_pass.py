"""The reference pass: q_w's log-probs of every DPO pair, computed once, stored and reused.

soda replaces TRL's `DPOTrainer._precompute_ref_logps` (`trl/trainer/dpo_trainer.py`, called
from `__init__` for the train and eval sets when `precompute_ref_log_probs` is on) for a
soda DPO stage (`host_patches.install_reference_pass` routes it to `precompute_ref_logps`).
TRL's version SHA-256s every weight on the CPU (`hash_module`: minutes at 8-14B, and blind
under ZeRO-3), scores the pairs in file order at the training micro batch, and keeps them
in one cache file that any other q_w or dataset fingerprint misses. Here:

- each pair is looked up by its tokens in a `ReferenceStore` made under this reference
  (`reference_identity`): a beta sweep, a re-run or a resumed DPO stage computes nothing;
- the missing pairs are scored longest first (an out-of-memory error shows at the first
  batch, and batches of alike lengths carry little padding) at `precompute_ref_batch_size`,
  with TRL's own collator and `compute_ref_log_probs`, so every value is the one TRL's loss
  would use (same truncation, same end-of-turn tokens, same `ld_alpha` weighting);
- each rank scores its slice (`accelerator.prepare` on the loader, `gather_for_metrics`, as
  TRL does); rank 0 appends every batch to the store as it lands, so a kill loses at most
  the batch in flight.

The values come back as the `ref_chosen_logps` / `ref_rejected_logps` columns TRL's collator
and loss read (`DataCollatorForPreference.torch_call`, `_compute_loss`: `if self.precompute_ref_logps`).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..cost.recorder import CostRecorder
from ..log import get_logger
from .args import ReferenceLogps
from .distributed import decide_on_main, is_main
from .reference_store import ReferenceStore, ReferenceStoreMismatchError, row_key, STORE_FORMAT

LOG = get_logger(__name__)

REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
STORE_SUBDIR = "reference_logps"


class ReferenceLogpsMissingError(RuntimeError):
    """`soda.reference_logps: require` and the store cannot serve every pair."""


@dataclass(frozen=True)
class PassPlan:
    store_dir: Path
    mode: ReferenceLogps
    reference: str  # the DPO stage's starting model, which is its reference (q_w)
    revision: str | None = None
    warmup_hash: str | None = None


def default_store_dir(cfg: Mapping[str, Any], has_warmup: bool) -> Path:
    """Beside q_w when soda's warmup made it (the values belong to those weights, and any DPO
    run from them, in any `output_dir`, finds them); else `<output_dir>/reference_logps`."""
    if has_warmup:
        return Path(str(cfg.get("base_model"))) / STORE_SUBDIR
    return Path(str(cfg.get("output_dir") or "./model-out")) / STORE_SUBDIR


def plan_from_cfg(cfg: Mapping[str, Any] | None) -> PassPlan | None:
    """The pass a soda DPO stage runs; None where TRL's own precompute stays."""
    from .chain import is_dpo, soda_config
    from .stages import read_marker

    soda = soda_config(cfg) if cfg is not None else None
    if soda is None or not is_dpo(cfg) or ReferenceLogps(soda.reference_logps) is ReferenceLogps.OFF:
        return None
    from ..format.model_folder import MERGED_SUBDIR

    reference = str(cfg.get("base_model"))
    # q_w's warmup marker: in its folder, or one up for a LoRA warmup's `merged/`.
    marker_dir = Path(reference).parent if Path(reference).name == MERGED_SUBDIR else Path(reference)
    marker = read_marker(marker_dir) if marker_dir.is_dir() else None
    store_dir = Path(soda.reference_logps_dir) if soda.reference_logps_dir else default_store_dir(
        cfg, soda.warmup is not None)
    return PassPlan(store_dir=store_dir, mode=ReferenceLogps(soda.reference_logps), reference=reference,
                    revision=cfg.get("base_model_revision"), warmup_hash=(marker or {}).get("config_hash"))


def _unwrapped(trainer: Any, model: Any) -> Any:
    return trainer.accelerator.unwrap_model(model)


def reference_identity(trainer: Any, plan: PassPlan) -> dict[str, Any]:
    """Everything that changes a stored value: the weights and the settings of TRL's scoring."""
    from .reference_cache import weights_identity

    args = trainer.args
    model = _unwrapped(trainer, trainer.ref_model or trainer.model)
    return {
        "format": STORE_FORMAT,
        "weights": weights_identity(plan.reference, plan.revision),
        "warmup_hash": plan.warmup_hash,
        "adapter_disabled": trainer.ref_model is None and hasattr(model, "peft_config"),
        "dtype": str(next(model.parameters()).dtype),
        "autocast": "bf16" if args.bf16 else "fp16" if args.fp16 else None,
        "max_length": args.max_length,
        "truncation_mode": args.truncation_mode,
        "ld_alpha": getattr(args, "ld_alpha", None),
        "chunked_logps": bool(getattr(trainer, "use_liger_kernel", False)),
    }


def pair_keys(dataset: Any) -> list[str]:
    return [row_key(p, c, r) for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]


def _pair_lengths(dataset: Any) -> list[int]:
    return [len(p) + max(len(c), len(r)) for p, c, r in
            zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]


def _fingerprint(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode("utf-8")).hexdigest()[:16]


def load_known_values(store: ReferenceStore, identity: Mapping[str, Any], keys: list[str], mode: ReferenceLogps,
                      name: str) -> dict[str, tuple[float, float]]:
    """On rank 0: the stored values this run can use (made under `identity`); a store made
    under another reference is emptied (`reuse`) or refused (`require`)."""
    try:
        store.check(identity)
    except ReferenceStoreMismatchError as mismatch:
        if mode is ReferenceLogps.REQUIRE:
            raise ReferenceLogpsMissingError(
                f"soda: `soda.reference_logps: require`, but the reference log-probs in {store.directory} were "
                f"computed under another reference or settings ({mismatch}). Run `soda reference <recipe>` "
                "for this q_w, or set `soda.reference_logps: reuse` to recompute them.") from None
        LOG.warning("soda: the reference log-probs in %s belong to another reference (%s); they are discarded and "
                    "computed again for this q_w.", store.directory, mismatch)
        store.reset(identity)
    if store.read_manifest() is None:
        store.reset(identity)
    contents = store.read()
    if contents.torn_lines:
        LOG.warning("soda: %d unreadable line(s) in %s (a pass killed mid-write); those pairs are scored again.",
                    contents.torn_lines, store.directory)
    wanted = set(keys)
    known = {k: v for k, v in contents.values.items() if k in wanted}
    missing = len(wanted) - len(known)
    if missing and mode is ReferenceLogps.REQUIRE:
        raise ReferenceLogpsMissingError(
            f"soda: `soda.reference_logps: require`, but {missing} of the {len(wanted)} {name} pairs have no stored "
            f"reference log-probs in {store.directory}. Run `soda reference <recipe>` first, or set "
            "`soda.reference_logps: reuse`.")
    return known


def _reference_model(trainer: Any) -> Any:
    """The model TRL's precompute scores with (`_precompute_ref_logps`): before `train`, a
    DeepSpeed model still needs an inference engine to place and gather its parameters."""
    if trainer.ref_model is None and trainer.is_deepspeed_enabled:
        import trl.trainer.dpo_trainer as dpo

        if getattr(trainer, "_precompute_engine", None) is None:
            trainer._precompute_engine = dpo.prepare_deepspeed(trainer.model, trainer.accelerator)
        return trainer._precompute_engine
    return trainer.ref_model or trainer.model


def score_pairs(trainer: Any, subset: Any, batch_size: int, desc: str) -> Iterator[tuple[list[float], list[float]]]:
    """(ref_chosen, ref_rejected) of `subset`'s rows, batch by batch, in row order, on every rank."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    loader = DataLoader(subset, batch_size=batch_size, collate_fn=trainer.data_collator, shuffle=False,
                        num_workers=trainer.args.dataloader_num_workers,
                        pin_memory=trainer.args.dataloader_pin_memory)
    loader = trainer.accelerator.prepare(loader)
    model = _reference_model(trainer)
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc=desc, disable=not is_main() or bool(os.environ.get("TQDM_DISABLE"))):
            chosen, rejected = trainer.compute_ref_log_probs(model, batch)
            chosen, rejected = trainer.accelerator.gather_for_metrics((chosen, rejected))
            yield chosen.float().cpu().tolist(), rejected.float().cpu().tolist()
    finally:
        model.train(was_training)


def compute_missing(trainer: Any, dataset: Any, keys: list[str], known: dict[str, tuple[float, float]],
                    store: ReferenceStore, batch_size: int, name: str) -> int:
    """Score the pairs `known` lacks, longest first, adding them to `known` and (rank 0) to
    the store batch by batch. Returns how many were scored."""
    first_row = {}
    for index, key in enumerate(keys):
        if key not in known:
            first_row.setdefault(key, index)  # a duplicated pair is scored once
    if not first_row:
        return 0
    lengths = _pair_lengths(dataset)
    order = sorted(first_row.values(), key=lambda i: lengths[i], reverse=True)
    desc = f"soda: reference log-probs of the {name} pairs"
    done = 0
    writer = store.writer() if is_main() else None
    try:
        for chosen, rejected in score_pairs(trainer, dataset.select(order), batch_size, desc):
            batch_keys = [keys[i] for i in order[done:done + len(chosen)]]
            known.update(zip(batch_keys, zip(chosen, rejected)))
            if writer is not None:
                writer.write(batch_keys, chosen, rejected)
            done += len(chosen)
    finally:
        if writer is not None:
            writer.close()
    if done != len(order):
        raise RuntimeError(f"soda: the reference pass scored {done} of {len(order)} {name} pairs")
    return done


def attach_reference_logps(trainer: Any, dataset: Any, name: str, batch_size: int, plan: PassPlan) -> Any:
    """`dataset` (TRL-tokenized pairs) with the reference log-prob columns, from the store
    where it has them, computed (and stored) where not."""
    from datasets import IterableDataset, Value

    if isinstance(dataset, IterableDataset):
        raise ValueError("`precompute_ref_log_probs=True` needs a map-style dataset, not an IterableDataset.")
    start = time.perf_counter()
    store = ReferenceStore(plan.store_dir)
    identity = reference_identity(trainer, plan)
    keys = pair_keys(dataset)
    known = decide_on_main(lambda: load_known_values(store, identity, keys, plan.mode, name))
    reused = sum(k in known for k in set(keys))
    if reused < len(set(keys)):
        # Its own cost.json beside the store: the pass runs before the DPO trainer's clock starts.
        with CostRecorder(plan.store_dir, stage="reference"):
            computed = compute_missing(trainer, dataset, keys, known, store, batch_size, name)
    else:
        computed = 0
    if is_main():
        store.note_dataset(name, rows=len(keys), fingerprint=_fingerprint(keys))
    LOG.info("soda: reference log-probs of the %d %s pairs: %d reused from %s, %d computed (batches of %d, longest "
             "first) in %.1f s.", len(keys), name, reused, store.directory, computed, batch_size,
             time.perf_counter() - start)
    existing = [c for c in REFERENCE_COLUMNS if c in dataset.column_names]
    if existing:
        dataset = dataset.remove_columns(existing)
    for column, position in zip(REFERENCE_COLUMNS, (0, 1)):
        dataset = dataset.add_column(column, [known[k][position] for k in keys], feature=Value("float32"))
    return dataset


@dataclass(frozen=True)
class PassSummary:
    store_dir: Path
    rows: dict[str, int]

    def __str__(self) -> str:
        sets = ", ".join(f"{n} {name}" for name, n in self.rows.items())
        return f"reference log-probs of {sets} pairs stored in {self.store_dir}"


def run_reference_pass(config: str | os.PathLike, batch_size: int | None = None) -> PassSummary:
    """`soda reference`: load the recipe's DPO stage as `axolotl train` does (running the
    warmup first if it is not finished), build its trainer, whose `__init__` runs the pass,
    and stop before training."""
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_preference_datasets
    from axolotl.integrations.base import PluginManager
    from axolotl.train import setup_model_and_trainer

    from .release import release_stage

    overrides = {"soda__precompute_ref_batch_size": batch_size} if batch_size else {}
    cfg = load_cfg(str(config), **overrides)
    plan = plan_from_cfg(cfg)
    if plan is None or not cfg.get("precompute_ref_log_probs"):
        raise SystemExit(f"{config}: `soda reference` needs a soda DPO recipe (`rl: dpo`, a `soda:` block, "
                         "`precompute_ref_log_probs: true`, `soda.reference_logps` not `off`).")
    meta = PluginManager.get_instance().load_datasets(cfg, preprocess=False)  # the warmup runs here if needed
    if meta is None:
        meta = load_preference_datasets(cfg=cfg, cli_args=TrainerCliArgs())
    trainer = setup_model_and_trainer(cfg, meta)[0]  # the pass records its cost (`attach_reference_logps`)
    plan = plan_from_cfg(cfg)  # the chain has pointed `base_model` at q_w by now
    datasets = ReferenceStore(plan.store_dir).read_manifest().get("datasets", {})
    release_stage(trainer)
    return PassSummary(plan.store_dir, {name: entry["rows"] for name, entry in datasets.items()})


def precompute_ref_logps(trainer: Any, dataset: Any, name: str, batch_size: int, trl_precompute: Any) -> Any:
    """`DPOTrainer._precompute_ref_logps` under soda (`host_patches.install_reference_pass`):
    soda's stored pass for a soda DPO stage, TRL's own `trl_precompute` for any other run."""
    from axolotl.integrations.base import PluginManager

    plan = plan_from_cfg(PluginManager.get_instance().cfg)
    if plan is None:
        return trl_precompute(trainer, dataset, name, batch_size)
    return attach_reference_logps(trainer, dataset, name, batch_size, plan)


__all__ = ["PassPlan", "PassSummary", "run_reference_pass", "ReferenceLogps", "ReferenceLogpsMissingError", "attach_reference_logps",
           "precompute_ref_logps",
           "plan_from_cfg", "reference_identity", "pair_keys", "score_pairs", "REFERENCE_COLUMNS"]
