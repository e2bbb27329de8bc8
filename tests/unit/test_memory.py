"""`soda.chunked_logps`: TRL's chunked DPO log-probs, the same numbers as the full logits."""

from __future__ import annotations

import pytest
import torch

PAIRS = [
    {"prompt": "What is 12 plus 7?", "chosen": " The answer is 19.", "rejected": " I think it is 21, let me explain."},
    {"prompt": "Sort the list: banana, apple.", "chosen": " apple, banana", "rejected": " banana"},
    {"prompt": "Convert 3 km to m.", "chosen": " 3 km is 3000 m.", "rejected": " Hello there! How can I help?"},
    {"prompt": "You are a helpful assistant.", "chosen": " Answer briefly.", "rejected": " at length, and exactly"},
]


def _trl_1_9() -> bool:
    import trl

    return trl.__version__.startswith("1.9")


# Skipped by the version, never by probing TRL's private method: on any other TRL (the main
# leg's 1.14) a renamed `_get_per_token_logps_and_entropies` turns the chunked path off
# (soda warns and falls back to the full logits), and these tests must then fail.
needs_chunked_path = pytest.mark.skipif(
    _trl_1_9(), reason="TRL 1.9's `use_liger_kernel` is Liger's fused DPO loss, with no chunked log-prob path")


@needs_chunked_path
def test_this_trl_has_the_chunked_path():
    from trl import DPOTrainer

    from soda_plugin.train.memory import chunked_path_blocker

    assert hasattr(DPOTrainer, "_get_per_token_logps_and_entropies")
    assert chunked_path_blocker({}) is None


@needs_chunked_path
def test_dpo_training_args_take_the_chunked_path_with_no_liger_kernel():
    from soda_plugin.train.plugin import SODAPlugin

    args = SODAPlugin().get_training_args({"rl": "dpo", "soda": {}})
    assert args["use_liger_kernel"] is True
    kernels = args["liger_kernel_config"]
    assert {"rope", "rms_norm", "swiglu", "fused_linear_cross_entropy", "cross_entropy"} <= set(kernels)
    assert not any(kernels.values())
    # Off by the setting, by an explicit host key, and for the SFT builder.
    assert SODAPlugin().get_training_args({"rl": "dpo", "soda": {"chunked_logps": False}}) is None
    assert SODAPlugin().get_training_args({"rl": "dpo", "soda": {}, "dpo_use_liger_kernel": False}) is None
    assert SODAPlugin().get_training_args({"soda": {}}) is None


def test_the_chunked_path_stays_off_where_trl_has_none(monkeypatch):
    from trl import DPOTrainer

    from soda_plugin.train.memory import chunked_logps_training_args, chunked_path_blocker

    with monkeypatch.context() as patch:  # TRL 1.9: `use_liger_kernel` is Liger's fused DPO loss
        patch.delattr(DPOTrainer, "_get_per_token_logps_and_entropies", raising=False)
        assert "no chunked log-prob path" in chunked_path_blocker({})
        assert chunked_logps_training_args({}, enabled=True) == {}


@needs_chunked_path
def test_the_chunked_path_stays_off_where_trl_would_refuse_it():
    from soda_plugin.train.memory import chunked_path_blocker

    assert "dpo_use_weighting" in chunked_path_blocker({"dpo_use_weighting": True})
    assert "lm_head" in chunked_path_blocker({"adapter": "lora", "lora_target_modules": ["q_proj", "lm_head"]})
    assert chunked_path_blocker({"adapter": "lora", "lora_target_modules": ["q_proj"]}) is None


@needs_chunked_path
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_no_liger_kernel_is_applied_to_the_model(family, tiny_model_dirs):
    """transformers applies `liger_kernel_config` when `use_liger_kernel` is set (its
    `Trainer.train`); with every switch off the model and its classes stay as they are."""
    import importlib

    from transformers import AutoModelForCausalLM
    from transformers.integrations.liger import apply_liger_kernel

    from soda_plugin.train.memory import no_liger_kernels

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[family])
    modeling = importlib.import_module(type(model).__module__)

    def snapshot():
        modules = {name: (type(m), getattr(m.forward, "__func__", m.forward)) for name, m in model.named_modules()}
        return modules, dict(vars(modeling))

    before = snapshot()
    apply_liger_kernel(model, no_liger_kernels())
    assert snapshot() == before


def _trainer(model_dir, tmp_path, ref_model, **args):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():  # a policy that differs from its reference: rewards are not zero
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    config = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[], beta=0.1,
                       use_cpu=True, bf16=False, dataloader_num_workers=0, **args)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return DPOTrainer(model=model, ref_model=ref_model, args=config, train_dataset=Dataset.from_list(PAIRS),
                      processing_class=tokenizer)


def _loss_metrics_and_grads(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    metrics = {key: values[-1] for key, values in trainer._metrics["train"].items()
               if key.startswith(("logps/", "rewards/"))}
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), metrics, grads


@needs_chunked_path
def test_chunked_log_probs_equal_the_full_logits(tiny_model_dirs, tmp_path):
    """Loss, log-probs, rewards and gradients of one DPO batch, through TRL's full-logits
    path and through the chunked path the plugin turns on (policy and reference alike)."""
    from transformers import AutoModelForCausalLM

    from soda_plugin.train.plugin import SODAPlugin

    model_dir = tiny_model_dirs["llama"]
    reference = AutoModelForCausalLM.from_pretrained(model_dir)
    chunked_args = SODAPlugin().get_training_args({"rl": "dpo", "soda": {}, "base_model": str(model_dir)})
    full = _trainer(model_dir, tmp_path / "full", reference)
    chunked = _trainer(model_dir, tmp_path / "chunked", reference, **chunked_args)
    assert not full.use_liger_kernel and chunked.use_liger_kernel

    full_loss, full_metrics, full_grads = _loss_metrics_and_grads(full)
    chunked_loss, chunked_metrics, chunked_grads = _loss_metrics_and_grads(chunked)
    assert full_metrics["logps/chosen"] < -1.0 and abs(full_metrics["rewards/margins"]) > 1e-4
    torch.testing.assert_close(chunked_loss, full_loss, rtol=1e-5, atol=1e-6)
    assert chunked_metrics == pytest.approx(full_metrics, rel=1e-5, abs=1e-6)
    assert chunked_grads.keys() == full_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
