"""Only the rows `max_steps` trains on get reference log-probs precomputed."""

from datasets import Dataset

from soda_plugin.train.args import SodaConfig
from soda_plugin.train.trim import keep_rows_training_uses, rows_training_uses


def _meta(n):
    from axolotl.common.datasets import TrainDatasetMeta

    return TrainDatasetMeta(train_dataset=Dataset.from_dict({"i": list(range(n))}), eval_dataset=None,
                            total_num_steps=n)


def test_rows_training_uses_counts_every_rank_and_accumulation_step():
    cfg = {"max_steps": 6, "micro_batch_size": 4, "gradient_accumulation_steps": 2}
    assert rows_training_uses(cfg, world_size=3) == 6 * 4 * 2 * 3
    assert rows_training_uses({"micro_batch_size": 4}, world_size=1) is None
    assert rows_training_uses({"max_steps": -1, "micro_batch_size": 4}, world_size=1) is None


def test_training_rows_are_a_seeded_subset_of_exactly_the_needed_size():
    cfg = {"max_steps": 6, "micro_batch_size": 4, "seed": 3}
    first = keep_rows_training_uses(_meta(64), cfg, world_size=1)
    again = keep_rows_training_uses(_meta(64), cfg, world_size=1)
    assert len(first.train_dataset) == 24 and first.total_num_steps == 6
    assert first.train_dataset["i"] == again.train_dataset["i"]  # every rank keeps the same rows
    assert len(set(first.train_dataset["i"])) == 24 and first.train_dataset["i"] != list(range(24))
    other_seed = keep_rows_training_uses(_meta(64), {**cfg, "seed": 4}, world_size=1)
    assert other_seed.train_dataset["i"] != first.train_dataset["i"]


def test_data_shorter_than_max_steps_is_left_alone():
    meta = _meta(10)
    assert keep_rows_training_uses(meta, {"max_steps": 6, "micro_batch_size": 4}, world_size=1) is meta
    assert keep_rows_training_uses(meta, {"micro_batch_size": 4}, world_size=1) is meta


def test_the_trim_is_on_by_default_and_can_be_turned_off():
    assert SodaConfig().precompute_only_trained_rows is True
    assert SodaConfig(precompute_only_trained_rows=False).precompute_only_trained_rows is False
