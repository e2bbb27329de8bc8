"""GADPlugin: wiring only. GAD's stages are in `chain`, its trainer in `trainer`, D in `discriminator`."""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin

from ..train.host_patches import register_dataset_type

GAD_PLUGIN = "soda_plugin.GADPlugin"

register_dataset_type()  # `type: soda` reads the teacher file in GRPO's view (prompt + teacher answer)


class GADPlugin(BasePlugin):
    """Generative Adversarial Distillation (GAD's baseline): GRPO against a learned discriminator."""

    def get_input_args(self) -> str:
        return "soda_plugin.gad.args.GADArgs"

    def register(self, cfg) -> None:
        from ..train.chain import remember_raw_config
        from ..train.deepspeed_path import resolve_deepspeed_path
        from ..train.preflight import check_recipe_can_start
        from .args import recipe_problems

        if cfg.get("gad") is None:
            if GAD_PLUGIN in (cfg.get("plugins") or []):
                raise ValueError(f"`{GAD_PLUGIN}` is listed but the recipe has no `gad:` block "
                                 "(see recipes/smollm2_cpu_gad.yml).")
            return  # Axolotl 0.19 keeps plugins registered by an earlier config in the same process

        problems = recipe_problems(dict(cfg))
        if problems:  # before Axolotl's own validation, which reports GRPO keys in its words
            raise ValueError("this GAD recipe cannot run: " + "; ".join(problems))
        check_recipe_can_start(cfg)  # before `load_cfg` sets DeepSpeed up
        resolve_deepspeed_path(cfg)
        remember_raw_config(cfg)

    def load_datasets(self, cfg, preprocess: bool = False):
        from ..train.distributed import place_model_on_cpu_without_accelerator
        from ..train.preflight import check_precision_has_gpu
        from .chain import prepare_gad_stage

        if cfg.get("gad") is None:
            return None
        if not preprocess:  # `axolotl preprocess` of a GPU recipe may run on a CPU
            check_precision_has_gpu(cfg)
        place_model_on_cpu_without_accelerator(cfg)
        if not preprocess:
            prepare_gad_stage(cfg)
        return None  # Axolotl loads the rows itself, reading `type: soda`

    def post_trainer_create(self, cfg, trainer) -> None:
        from .chain import discriminator_start, gad_config
        from .trainer import GADTrainer

        if cfg.get("gad") is None:
            return
        if not isinstance(trainer, GADTrainer):
            raise TypeError(f"the GAD recipe built a {type(trainer).__name__}; set "
                            "`trainer_cls: soda_plugin.gad.trainer.GADTrainer`.")
        trainer.attach_discriminator(gad_config(cfg), discriminator_start(cfg), seed=int(cfg.get("seed") or 0))

    def add_callbacks_post_trainer(self, cfg, trainer):
        from ..cost.recorder import CostCallback
        from .args import PolicyLoss
        from .chain import gad_config

        gad = gad_config(cfg)
        if gad is None:
            return []
        return [CostCallback("gad-warmup" if gad.policy_loss is PolicyLoss.SFT else "gad")]
