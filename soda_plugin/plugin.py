"""SODAPlugin: wiring only. The logic lives in `chain`, `reference` and `dataset_type`."""

from __future__ import annotations

from .log import get_logger

from axolotl.integrations.base import BasePlugin

LOG = get_logger(__name__)


def place_model_on_cpu_without_accelerator(cfg) -> None:
    """Axolotl maps a multi-process model to `LOCAL_RANK`'s GPU; on CPU use the CPU."""
    import torch

    if torch.cuda.is_available() or not isinstance(cfg.get("device_map"), dict):
        return
    if all(isinstance(v, int) for v in cfg.device_map.values()):
        LOG.info("soda: no accelerator; placing the model on the CPU in every process.")
        cfg.device_map = "cpu"


class SODAPlugin(BasePlugin):
    """Semi On-policy Distillation with Alignment: warmup SFT, then DPO against q0."""

    def get_input_args(self) -> str:
        return "soda_plugin.args.SODAArgs"

    def register(self, cfg) -> None:
        from .chain import remember_raw_config
        from .reference import install_reference_model_skip

        remember_raw_config(cfg)
        install_reference_model_skip()

    def load_datasets(self, cfg, preprocess: bool = False):
        if cfg.get("soda") is None:
            return None
        place_model_on_cpu_without_accelerator(cfg)
        if not preprocess:
            from .chain import prepare_dpo_stage

            prepare_dpo_stage(cfg)
        return None  # Axolotl loads the (preference) datasets itself, with `type: soda`.
