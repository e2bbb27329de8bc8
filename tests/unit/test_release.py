"""A finished stage gives its model back before the next stage builds one (same process)."""

import gc
import logging
import weakref

import torch

from soda_plugin.train.release import log_memory_per_rank, release_stage


def _trained_trainer(model_dir, out_dir):
    """A real transformers Trainer after one step: its Accelerator has prepared model and optimizer."""
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    ids = torch.tensor([1, 5, 9, 42, 7, 3, 11, 2])
    rows = [{"input_ids": ids, "labels": ids} for _ in range(4)]
    args = TrainingArguments(output_dir=str(out_dir), max_steps=1, per_device_train_batch_size=2, use_cpu=True,
                             report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    trainer.train()
    return trainer, model


def test_released_warmup_model_is_unreachable_even_if_the_trainer_is_kept(tiny_model_dirs, tmp_path):
    trainer, model = _trained_trainer(tiny_model_dirs["llama"], tmp_path)
    assert trainer.accelerator._models, "the Accelerator holds the prepared model after training"
    model_ref, optimizer_ref = weakref.ref(model), weakref.ref(trainer.optimizer.optimizer)
    del model
    # Something outside keeps the trainer (a callback, a closure, a traceback): the model
    # must still go. Without `free_memory()` its Accelerator's `_models` keeps it; without
    # dropping the trainer's own references, `trainer.model` / `model_wrapped` /
    # `callback_handler.model` do.
    kept = trainer
    release_stage(trainer)
    gc.collect()
    assert model_ref() is None and optimizer_ref() is None
    assert kept.accelerator._models == [] and kept.accelerator._optimizers == []


def test_memory_line_names_every_rank(caplog):
    caplog.set_level(logging.INFO, logger="soda_plugin")
    logging.getLogger("soda_plugin").addHandler(caplog.handler)
    try:
        log_memory_per_rank("before DPO")
    finally:
        logging.getLogger("soda_plugin").removeHandler(caplog.handler)
    line = next(r.getMessage() for r in caplog.records if "memory before DPO" in r.getMessage())
    unit = "allocated" if torch.cuda.is_available() else "RSS"
    assert line.startswith("soda: memory before DPO: rank 0: ") and unit in line and "GiB" in line
