"""The reference pass (issue 15): q_w's log-probs stored per pair, equal to TRL's own
precompute, reused with no forward, recomputed for another q_w, resumed after a kill."""

import json
import math
from pathlib import Path

import pytest
import torch
from axolotl.integrations.base import PluginManager
from axolotl.utils.dict import DictDefault
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from soda_data import valid_rows
from soda_plugin.train.reference_pass import (
    REFERENCE_COLUMNS,
    ReferenceLogpsMissingError,
    pair_keys,
    plan_from_cfg,
    precompute_ref_logps,
)
from soda_plugin.train.host_patches import install_reference_pass
from soda_plugin.train.reference_store import ReferenceStore
from tiny_models import build_model

BATCH = 4


def _pairs(n=10) -> Dataset:
    rows = valid_rows(n)
    for i, row in enumerate(rows):  # unequal lengths, so the length sort and padding matter
        row["student_response"] += " and more" * (i % 5)
    rows.append(dict(rows[0]))  # a duplicated pair is scored once, answered twice
    return Dataset.from_list([{"prompt": r["content"], "chosen": [{"role": "assistant", "content": r["teacher_response"]}],
                               "rejected": [{"role": "assistant", "content": r["student_response"]}]} for r in rows])


@pytest.fixture
def q_w(tmp_path):
    return build_model("llama", tmp_path / "q_w")


def _soda_cfg(model_dir, store, mode="reuse"):
    return DictDefault({"rl": "dpo", "base_model": str(model_dir), "output_dir": str(model_dir.parent / "out"),
                        "precompute_ref_log_probs": True,
                        "soda": {"reference_logps": mode, "reference_logps_dir": str(store)}})


@pytest.fixture
def plugin_cfg():
    install_reference_pass(precompute_ref_logps)
    manager = PluginManager.get_instance()
    saved = manager.cfg
    yield manager
    manager.cfg = saved


class Forwards:
    """Counts the reference model's forward passes (a hook on the loaded q_w)."""

    def __init__(self, model):
        self.count = 0
        model.register_forward_hook(lambda *args: setattr(self, "count", self.count + 1))


def _trainer(model_dir, tmp_path, beta=0.1, batch=BATCH, dtype=torch.float32, max_length=64, pairs=None):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    forwards = Forwards(model)
    args = DPOConfig(output_dir=str(tmp_path / "trl"), precompute_ref_log_probs=True, precompute_ref_batch_size=batch,
                     per_device_train_batch_size=2, beta=beta, bf16=False, report_to=[], use_cpu=True,
                     max_length=max_length)
    trainer = DPOTrainer(model=model, args=args, train_dataset=_pairs() if pairs is None else pairs,
                         processing_class=AutoTokenizer.from_pretrained(model_dir))
    return trainer, forwards


def _columns(trainer):
    return {c: torch.tensor(trainer.train_dataset[c]) for c in REFERENCE_COLUMNS}


def test_stored_values_equal_trls_precompute_and_step_zero_loss_is_log_2(q_w, tmp_path, plugin_cfg):
    plugin_cfg.cfg = None  # TRL's own `_precompute_ref_logps`, at batch 1 in file order
    trl_trainer, _ = _trainer(q_w, tmp_path, batch=1)
    assert trl_trainer.ref_model is None
    expected = _columns(trl_trainer)

    plugin_cfg.cfg = _soda_cfg(q_w, tmp_path / "store")
    soda_trainer, forwards = _trainer(q_w, tmp_path)
    got = _columns(soda_trainer)
    for column in REFERENCE_COLUMNS:
        torch.testing.assert_close(got[column], expected[column], rtol=1e-5, atol=1e-4)
        assert (got[column] < -1).all(), "summed log-probs of whole answers"
    assert forwards.count == math.ceil(10 / BATCH), "10 distinct pairs (one duplicate), batches of 4"
    store = ReferenceStore(tmp_path / "store")
    assert len(store.read().values) == 10 and store.read_manifest()["datasets"]["train"]["rows"] == 11

    # Step 0: the policy is q_w, so every log-ratio is 0: loss log 2, margin 0.
    batch = soda_trainer.data_collator([soda_trainer.train_dataset[i] for i in range(4)])
    soda_trainer.model.train()
    loss = soda_trainer.compute_loss(soda_trainer.model, batch)
    assert abs(loss.item() - math.log(2)) < 1e-5
    assert abs(soda_trainer._metrics["train"]["rewards/margins"][-1]) < 1e-5


def test_a_second_run_with_another_beta_does_no_reference_forward(q_w, tmp_path, plugin_cfg):
    plugin_cfg.cfg = _soda_cfg(q_w, tmp_path / "store")
    first, first_forwards = _trainer(q_w, tmp_path)
    assert first_forwards.count > 0
    second, second_forwards = _trainer(q_w, tmp_path, beta=0.5)
    assert second_forwards.count == 0
    assert all(torch.equal(_columns(first)[c], _columns(second)[c]) for c in REFERENCE_COLUMNS)

    plugin_cfg.cfg = _soda_cfg(q_w, tmp_path / "store", mode="require")
    _, required_forwards = _trainer(q_w, tmp_path, beta=0.2)
    assert required_forwards.count == 0


def test_another_q_w_is_recomputed_or_refused(q_w, tmp_path, plugin_cfg):
    plugin_cfg.cfg = _soda_cfg(q_w, tmp_path / "store")
    before = _columns(_trainer(q_w, tmp_path)[0])
    key = ReferenceStore(tmp_path / "store").read_manifest()["key"]
    build_model("llama", q_w, seed=1)  # the warmup retrained at the same path

    plugin_cfg.cfg = _soda_cfg(q_w, tmp_path / "store", mode="require")
    with pytest.raises(ReferenceLogpsMissingError, match="another reference"):
        _trainer(q_w, tmp_path)

    plugin_cfg.cfg = _soda_cfg(q_w, tmp_path / "store")
    trainer, forwards = _trainer(q_w, tmp_path)
    assert forwards.count == math.ceil(10 / BATCH)
    assert ReferenceStore(tmp_path / "store").read_manifest()["key"] != key
    assert not torch.allclose(_columns(trainer)["ref_chosen_logps"], before["ref_chosen_logps"])


def _parts(store_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(store_dir).glob("part-*.jsonl")}


@pytest.mark.parametrize("field, changed, new_value, shown", [
    ("max_length", {"max_length": 128}, 128, "max_length: 64 -> 128"),  # 64 truncates the longest pairs
    ("dtype", {"dtype": torch.bfloat16}, "torch.bfloat16", "dtype: 'torch.float32' -> 'torch.bfloat16'"),
])
def test_another_dtype_or_max_length_is_refused_by_require_and_recomputed_by_reuse(
        field, changed, new_value, shown, q_w, tmp_path, plugin_cfg):
    store_dir = tmp_path / "store"
    plugin_cfg.cfg = _soda_cfg(q_w, store_dir)
    before = _columns(_trainer(q_w, tmp_path)[0])
    parts = _parts(store_dir)

    plugin_cfg.cfg = _soda_cfg(q_w, store_dir, mode="require")
    with pytest.raises(ReferenceLogpsMissingError) as refused:
        _trainer(q_w, tmp_path, **changed)
    assert f"another reference or settings ({shown})" in str(refused.value), "names the changed field, only it"
    assert _parts(store_dir) == parts, "`require` leaves the store as it was"

    plugin_cfg.cfg = _soda_cfg(q_w, store_dir)
    trainer, forwards = _trainer(q_w, tmp_path, **changed)
    assert forwards.count == math.ceil(10 / BATCH), "every pair scored again"
    store = ReferenceStore(store_dir)
    assert store.read_manifest()["identity"][field] == new_value
    assert not set(_parts(store_dir)) & set(parts), "the old values were emptied out of the store"
    stored = store.read().values
    got = _columns(trainer)
    torch.testing.assert_close(torch.tensor([stored[k] for k in pair_keys(trainer.train_dataset)]),
                               torch.stack([got["ref_chosen_logps"], got["ref_rejected_logps"]], dim=1))
    assert not torch.allclose(got["ref_rejected_logps"], before["ref_rejected_logps"], rtol=0, atol=1e-4)


def test_off_writes_no_store_and_leaves_the_pass_to_trls_precompute_and_cache_file(q_w, tmp_path, plugin_cfg):
    _pairs().save_to_disk(str(tmp_path / "pairs"))  # file-backed: TRL writes its cache files beside it
    store_dir = tmp_path / "store"
    plugin_cfg.cfg = _soda_cfg(q_w, store_dir, mode="off")
    first, forwards = _trainer(q_w, tmp_path, batch=1, pairs=Dataset.load_from_disk(str(tmp_path / "pairs")))
    # TRL's pass: every row in file order, the duplicated pair scored twice (soda's would score 10).
    assert forwards.count == 11
    assert not store_dir.exists()
    caches = [Dataset.from_file(str(p)) for p in (tmp_path / "pairs").glob("cache-*.arrow")]
    expected = _columns(first)["ref_chosen_logps"].tolist()
    assert [c for c in caches if c.column_names == list(REFERENCE_COLUMNS) and c["ref_chosen_logps"] == expected]
    # A second run is served by TRL's cache file: no forward, and still no store.
    second, again = _trainer(q_w, tmp_path, batch=1, pairs=Dataset.load_from_disk(str(tmp_path / "pairs")))
    assert again.count == 0 and not store_dir.exists()
    assert torch.equal(_columns(second)["ref_rejected_logps"], _columns(first)["ref_rejected_logps"])


def test_a_killed_pass_is_resumed_with_only_the_missing_pairs(q_w, tmp_path, plugin_cfg):
    plugin_cfg.cfg = _soda_cfg(q_w, tmp_path / "store")
    full = _columns(_trainer(q_w, tmp_path)[0])
    (part,) = (tmp_path / "store").glob("part-*.jsonl")
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:3]) + lines[3][:17])  # 3 pairs kept, the 4th torn mid-line by the kill
    trainer, forwards = _trainer(q_w, tmp_path)
    assert forwards.count == math.ceil(7 / BATCH)
    assert all(torch.equal(_columns(trainer)[c], full[c]) for c in REFERENCE_COLUMNS)
    assert len(ReferenceStore(tmp_path / "store").read().values) == 10


def test_require_with_missing_pairs_names_the_command(q_w, tmp_path, plugin_cfg):
    plugin_cfg.cfg = _soda_cfg(q_w, tmp_path / "store", mode="require")
    with pytest.raises(ReferenceLogpsMissingError, match=r"10 of the 10 train pairs .*soda reference"):
        _trainer(q_w, tmp_path)


def test_the_store_lives_beside_q_w_when_soda_made_it(tmp_path):
    cfg = DictDefault({"rl": "dpo", "base_model": str(tmp_path / "out" / "warmup"), "output_dir": str(tmp_path / "out"),
                       "soda": {"warmup": {"learning_rate": 1e-5}}})
    assert plan_from_cfg(cfg).store_dir == tmp_path / "out" / "warmup" / "reference_logps"
    alone = DictDefault({"rl": "dpo", "base_model": "org/model", "output_dir": str(tmp_path / "dpo"), "soda": {}})
    assert plan_from_cfg(alone).store_dir == tmp_path / "dpo" / "reference_logps"
    assert plan_from_cfg(DictDefault({"rl": "dpo", "base_model": "m", "soda": {"reference_logps": "off"}})) is None
    assert plan_from_cfg(DictDefault({"base_model": "m", "soda": {}})) is None  # SFT


def test_part_lines_are_plain_json(tmp_path):
    store = ReferenceStore(tmp_path)
    store.reset({"weights": "w"})
    with store.writer() as writer:
        writer.write(["k1"], [-1.5], [-2.25])
    (part,) = tmp_path.glob("part-*.jsonl")
    assert json.loads(part.read_text()) == {"k": "k1", "c": -1.5, "r": -2.25}
    assert store.read().values == {"k1": (-1.5, -2.25)}
