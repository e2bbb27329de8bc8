"""SODAPlugin: wiring only. The logic lives in `chain`, `reference`, `reference_pass` and `dataset_type`;
every patch of a host's code in `host_patches`, the checks before anything heavy in `preflight`."""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin

from .host_patches import register_dataset_type

# Axolotl imports the plugin before it loads any dataset: `type: soda` resolves from here on.
register_dataset_type()


def cost_stage(cfg) -> str:
    """The stage name in `cost.json`: `dpo` (or another `rl` value), `warmup` for the SFT config
    soda's chain derives (a `soda` block, `output_dir` named `warmup`: the default
    `soda.warmup.output_dir`), else `sft`."""
    from pathlib import Path

    from .args import rl_method

    rl = rl_method(cfg)
    if rl:
        return rl
    if cfg.get("soda") is not None and Path(str(cfg.get("output_dir") or "")).name == "warmup":
        return "warmup"
    return "sft"


class SODAPlugin(BasePlugin):
    """Semi On-policy Distillation with Alignment: warmup SFT, then DPO against q0."""

    def get_input_args(self) -> str:
        return "soda_plugin.train.args.SODAArgs"

    def register(self, cfg) -> None:
        from .args import record_dataset_fields
        from .chain import remember_raw_config
        from .deepspeed_path import resolve_deepspeed_path
        from .distributed import start_cpu_data_parallel_if_launched
        from .host_patches import (
            install_in_process_single_save,
            install_reference_model_skip,
            install_reference_pass,
            skip_cuda_peer_check_without_gpu,
        )
        from .preflight import check_recipe_can_start
        from .reference_pass import precompute_ref_logps

        if cfg.get("gad") is None:  # a GAD recipe is GADPlugin's (Axolotl 0.19 keeps both registered)
            check_recipe_can_start(cfg)  # before `load_cfg` sets DeepSpeed up
        if start_cpu_data_parallel_if_launched():
            skip_cuda_peer_check_without_gpu()  # before `load_cfg` reaches `prepare_optim_env`
        record_dataset_fields(cfg)
        resolve_deepspeed_path(cfg)
        remember_raw_config(cfg)
        install_reference_model_skip()
        install_reference_pass(precompute_ref_logps)
        install_in_process_single_save()

    def load_datasets(self, cfg, preprocess: bool = False):
        from .dataset_type import bad_row_policy
        from .preflight import check_precision_has_gpu
        from .strict_rows import clean_soda_datasets

        if not preprocess:  # `axolotl preprocess` of a GPU recipe may run on a CPU
            check_precision_has_gpu(cfg)
        # Before any warmup trains: a bad preference row must not cost a warmup first.
        clean_soda_datasets(cfg, need_student=bool(cfg.get("rl")), policy=bad_row_policy(cfg))
        if cfg.get("soda") is None:
            return None
        from .distributed import place_model_on_cpu_without_accelerator

        place_model_on_cpu_without_accelerator(cfg)
        if preprocess:
            return None
        from .chain import drop_stale_final_merge, is_dpo, prepare_dpo_stage, soda_config
        from .distributed import load_preference_datasets_same_files_on_all_ranks, world_size

        prepare_dpo_stage(cfg)
        drop_stale_final_merge(cfg)
        if not (is_dpo(cfg) and cfg.get("precompute_ref_log_probs")):
            return None  # Axolotl loads the datasets itself, reading `type: soda`.
        if world_size() > 1:
            meta = load_preference_datasets_same_files_on_all_ranks(cfg)
        else:
            from axolotl.cli.args import TrainerCliArgs
            from axolotl.common.datasets import load_preference_datasets

            meta = load_preference_datasets(cfg=cfg, cli_args=TrainerCliArgs())
        from .reference_cache import tie_reference_cache_to_weights

        tie_reference_cache_to_weights(meta, cfg)
        if not soda_config(cfg).precompute_only_trained_rows:
            return meta
        from .trim import keep_rows_training_uses

        return keep_rows_training_uses(meta, cfg, world_size())

    def add_callbacks_post_trainer(self, cfg, trainer):
        from ..cost.recorder import cost_callback
        from .chain import is_dpo

        callbacks = [cost_callback(cost_stage(cfg))]  # every run: `soda cost` compares them
        if cfg.get("soda") is None or not is_dpo(cfg):
            return callbacks
        from .reference_cache import StepOneRewardCheck

        return [*callbacks, StepOneRewardCheck(trainer)]

    def get_training_args(self, cfg):
        # Merged into the trainer's `TrainingArguments` kwargs by both builders
        # (axolotl/core/builders/rl.py:240, causal.py:367): DPO keys only for `rl: dpo`.
        from .chain import is_dpo, soda_config
        from .distributed import warn_on_other_world_size

        soda = soda_config(cfg)
        if soda is None or not is_dpo(cfg):
            return None
        warn_on_other_world_size(soda.gpus)
        from .memory import chunked_logps_training_args

        args = chunked_logps_training_args(cfg, soda.chunked_logps)
        if soda.precompute_ref_batch_size is not None:
            args["precompute_ref_batch_size"] = soda.precompute_ref_batch_size
        return args or None

    def post_train(self, cfg, model) -> None:
        from .chain import note_trained

        note_trained(cfg)

    def post_train_unload(self, cfg) -> None:
        from .chain import merge_final_adapter

        merge_final_adapter(cfg)
