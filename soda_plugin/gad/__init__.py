"""GAD (Generative Adversarial Distillation), the paper's other baseline, as an Axolotl recipe.

`plugins: [soda_plugin.GADPlugin]`, `rl: grpo`, `trainer_cls: soda_plugin.gad.trainer.GADTrainer`
and a `gad:` block; docs/gad.md says what is GAD's and what differs.
"""
