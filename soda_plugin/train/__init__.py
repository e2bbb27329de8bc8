"""The training side: the Axolotl plugin and everything `axolotl train` runs through it.

`plugin` (hooks only), `args` (the `soda:` block schema), `dataset_type`/`views`/
`strict_rows` (the `soda` dataset type and its rows as written), `chain`/`stages`/`merge`/
`release` (warmup → DPO in one process), `reference`/`reference_cache`/`trim` (the
precomputed reference), `distributed`/`deepspeed_path` (ranks and DeepSpeed config),
`host_patches` (every patch of Axolotl's, TRL's and datasets' code, among them the names
Axolotl resolves `type: soda` by), `preflight` (the checks before anything heavy starts).
Nothing is imported here: the tools read `args` in environments without Axolotl.
"""
