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


# -- The branches that turn the chunked path off, read from the DPO `TrainingArguments` Axolotl
# builds for a recipe loaded by `load_cfg` (`HFRLTrainerBuilder._build_training_arguments`,
# which merges `PluginManager.get_training_args` last): what TRL's `DPOTrainer` receives.


def _tiny_moe(directory, router_aux_loss_coef):
    """A two-expert Qwen2-MoE saved with the ChatML tokenizer: `output_router_logits` in its
    config, the auxiliary loss on unless `router_aux_loss_coef` is 0."""
    from transformers import AutoModelForCausalLM, Qwen2MoeConfig

    from tiny_models import build_tokenizer

    tokenizer = build_tokenizer("qwen2")
    config = Qwen2MoeConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, moe_intermediate_size=32,
        shared_expert_intermediate_size=32, num_experts=2, num_experts_per_tok=1, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        router_aux_loss_coef=router_aux_loss_coef, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(autouse=True)
def _restore_plugin_manager():
    """`load_cfg` (in `_dpo_training_args`) leaves its config in Axolotl's plugin manager; put back what was there."""
    from axolotl.integrations.base import PluginManager

    manager = PluginManager.get_instance()
    saved = manager.cfg
    yield
    manager.cfg = saved


def _dpo_training_args(model_dir, tmp_path, **recipe):
    """The DPO `TrainingArguments` of a soda DPO recipe on `model_dir`, as `axolotl train` builds them."""
    from axolotl.cli.config import load_cfg
    from axolotl.core.builders.rl import HFRLTrainerBuilder
    from axolotl.utils.dict import DictDefault
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soda_data import valid_rows, write_jsonl

    data = write_jsonl(valid_rows(4), tmp_path / "pairs.jsonl")
    cfg = load_cfg(DictDefault({
        "base_model": str(model_dir), "plugins": ["soda_plugin.SODAPlugin"], "rl": "dpo",
        "precompute_ref_log_probs": True, "datasets": [{"path": str(data), "ds_type": "json", "type": "soda"}],
        "sequence_len": 128, "micro_batch_size": 1, "max_steps": 3, "learning_rate": 1e-5,
        "optimizer": "adamw_torch", "output_dir": str(tmp_path / "out"), "bf16": False, "fp16": False,
        "tf32": False, "save_strategy": "no", "dataset_num_proc": 1, "val_set_size": 0, "soda": {}, **recipe}))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    args, _ = HFRLTrainerBuilder(cfg, model, AutoTokenizer.from_pretrained(str(model_dir)))._build_training_arguments(3)
    return args, model


@needs_chunked_path
def test_axolotl_builds_dpo_args_on_the_chunked_path_with_every_liger_kernel_off(tiny_model_dirs, tmp_path):
    """The control for the branches below: the same recipe with nothing in the way."""
    args, _ = _dpo_training_args(tiny_model_dirs["llama"], tmp_path)
    assert args.use_liger_kernel is True
    assert args.liger_kernel_config and not any(args.liger_kernel_config.values())


@needs_chunked_path
@pytest.mark.parametrize("explicit", [False, True])
def test_an_explicit_dpo_use_liger_kernel_reaches_trl_as_written(explicit, tiny_model_dirs, tmp_path):
    """The recipe's own Liger switch wins: soda adds neither the flag nor its all-off kernel
    config, so `true` gets Liger's kernels as transformers applies them, `false` the full logits."""
    args, _ = _dpo_training_args(tiny_model_dirs["llama"], tmp_path, dpo_use_liger_kernel=explicit)
    assert args.use_liger_kernel is explicit
    assert args.liger_kernel_config is None


@needs_chunked_path
def test_a_lora_adapter_on_lm_head_keeps_the_full_logits(tiny_model_dirs, tmp_path):
    lora = {"adapter": "lora", "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
    on_head, _ = _dpo_training_args(tiny_model_dirs["llama"], tmp_path / "head",
                                    lora_target_modules=["q_proj", "lm_head"], **lora)
    assert on_head.use_liger_kernel is False
    saved, _ = _dpo_training_args(tiny_model_dirs["llama"], tmp_path / "saved", lora_target_modules=["q_proj"],
                                  lora_modules_to_save=["lm_head"], **lora)
    assert saved.use_liger_kernel is False
    elsewhere, _ = _dpo_training_args(tiny_model_dirs["llama"], tmp_path / "q", lora_target_modules=["q_proj"], **lora)
    assert elsewhere.use_liger_kernel is True


@needs_chunked_path
def test_a_moe_model_with_its_auxiliary_loss_keeps_the_full_logits_and_trl_accepts_the_args(tmp_path):
    """TRL refuses `use_liger_kernel` beside the router's auxiliary loss (`DPOTrainer.__init__`,
    `aux_loss_enabled`): the arguments soda leaves must build a DPO trainer on the MoE model."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    moe = _tiny_moe(tmp_path / "moe", router_aux_loss_coef=0.01)
    args, model = _dpo_training_args(moe, tmp_path / "run")
    assert args.use_liger_kernel is False
    args.precompute_ref_log_probs = False  # build the trainer only; the precompute is not the point here
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(PAIRS),
                         processing_class=AutoTokenizer.from_pretrained(str(moe)))
    assert trainer.aux_loss_enabled and not trainer.use_liger_kernel
    # The same MoE without the auxiliary loss takes the chunked path: the loss, not the routing, decides.
    no_aux, _ = _dpo_training_args(_tiny_moe(tmp_path / "moe0", router_aux_loss_coef=0.0), tmp_path / "run0")
    assert no_aux.use_liger_kernel is True
