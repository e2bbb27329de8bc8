"""Reference log-probs cached per reference weights, and the step-1 reward check (issue 13,
item 6: under ZeRO-3 TRL's cache key names the architecture only)."""

import logging
import os
from types import SimpleNamespace

from datasets import Dataset
from datasets.fingerprint import Hasher

from soda_plugin.train.reference_cache import StepOneRewardCheck, tie_reference_cache_to_weights, weights_identity

# What `hash_module` returns under ZeRO-3's empty placeholders: the same for any q_w.
ZERO3_MODEL_HASH = "architecture-only"


def _trl_cache_name(dataset):
    # trl/trainer/dpo_trainer.py `_precompute_ref_logps`: Hasher.hash((dataset._fingerprint, model_hash))
    return Hasher.hash((dataset._fingerprint, ZERO3_MODEL_HASH))


def _q_w(folder, payload: bytes, mtime_ns: int):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(payload)
    (folder / "config.json").write_text("{}")
    os.utime(folder / "model.safetensors", ns=(mtime_ns, mtime_ns))
    return folder


def _meta():
    rows = {"prompt": ["p"], "chosen": ["c"], "rejected": ["r"]}
    return SimpleNamespace(train_dataset=Dataset.from_dict(rows), eval_dataset=None)


def test_a_retrained_warmup_gets_its_own_reference_cache(tmp_path):
    merged = tmp_path / "warmup" / "merged"
    cfg = SimpleNamespace(base_model=str(_q_w(merged, b"first q_w", 1_000_000_000)), get=lambda key, default=None: None)
    untied = _meta()
    first, again = _meta(), _meta()
    tie_reference_cache_to_weights(first, cfg)
    tie_reference_cache_to_weights(again, cfg)
    # the same q_w, loaded again: the same cache file (a resumed DPO reuses its log-probs)
    assert _trl_cache_name(first.train_dataset) == _trl_cache_name(again.train_dataset)
    _q_w(merged, b"second q_w", 2_000_000_000)  # the warmup is retrained at the same path
    second = _meta()
    tie_reference_cache_to_weights(second, cfg)
    assert _trl_cache_name(second.train_dataset) != _trl_cache_name(first.train_dataset)
    # without soda's tie, TRL's key would be the same for both q_w: the stale hit
    assert _trl_cache_name(untied.train_dataset) == _trl_cache_name(_meta().train_dataset)


def test_weights_identity_of_a_hub_id_names_the_revision(tmp_path):
    assert weights_identity("Qwen/Qwen2.5-7B-Instruct", "abc") == "hub:Qwen/Qwen2.5-7B-Instruct@abc"
    assert weights_identity(str(_q_w(tmp_path / "m", b"w", 5))) != weights_identity(str(_q_w(tmp_path / "n", b"ww", 5)))


def _state(step):
    return SimpleNamespace(global_step=step)


def test_step_one_rewards_far_from_zero_are_reported(caplog):
    trainer = SimpleNamespace(_metrics={"train": {"rewards/chosen": [0.8, 1.1], "rewards/rejected": [-0.2, 0.3]}})
    check = StepOneRewardCheck(trainer)
    with caplog.at_level(logging.WARNING):
        check.on_step_end(None, _state(2), None)
        assert check.result is None  # only step 1 is checked
        check.on_step_end(None, _state(1), None)
    assert check.result == {"rewards/chosen": 1.1, "rewards/rejected": 0.3}
    assert "stale stored values" in caplog.text and "`cache-*.arrow`" in caplog.text


def test_step_one_rewards_near_zero_pass(caplog):
    trainer = SimpleNamespace(_metrics={"train": {"rewards/chosen": [1e-4], "rewards/rejected": [-2e-4]}})
    check = StepOneRewardCheck(trainer)
    with caplog.at_level(logging.WARNING):
        check.on_step_end(None, _state(1), None)
    assert check.result == {"rewards/chosen": 1e-4, "rewards/rejected": 2e-4} and "stale" not in caplog.text
