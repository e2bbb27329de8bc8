"""Every change soda makes to its hosts' code (Axolotl, TRL, transformers, datasets), in one place.

Each patch below is registered in `PATCHES` with the upstream symbol it replaces, the host
versions its test ran on, why it exists, that test, and when it can be deleted.
`docs/compatibility.md` lists the same set; `tests/unit/test_host_patches.py` checks that
each one is applied and that no other module of `soda_plugin` assigns to a host object.

The logic a wrapper runs lives in its own module (`reference.should_skip_reference_model`,
`reference_pass.precompute_ref_logps`); this module only swaps the host's symbols.

Tested on the two CI stacks (`docs/compatibility.md`):
    main:  Axolotl 0.21.0 / TRL 1.14.1 / transformers 5.20.1 / datasets 5.0.1
    py311: Axolotl 0.19.0 / TRL 1.9.0 / transformers 5.16.1 / datasets 4.8.4
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..log import get_logger

LOG = get_logger(__name__)

MAIN = "Axolotl 0.21.0 / TRL 1.14.1 / transformers 5.20.1 / datasets 5.0.1"
PY311 = "Axolotl 0.19.0 / TRL 1.9.0 / transformers 5.16.1 / datasets 4.8.4"
# Set on every wrapper soda puts in a host's place; its value is the patch's name.
MARK = "_soda_patch"


@dataclass(frozen=True)
class HostPatch:
    """What one patch replaces, where it was tested, and when it can go."""

    name: str  # the function below that applies it
    upstream: str  # the host symbol it replaces, by name
    tested_on: tuple[str, ...]  # the stacks (`MAIN`, `PY311`) on which `test` ran and passed
    why: str
    test: str  # the test that exercises the patched path for real
    remove_when: str
    scoped: bool = False  # a context manager: the host's symbol is restored on exit


PATCHES: dict[str, HostPatch] = {}


def _host_patch(upstream: str, tested_on: tuple[str, ...], why: str, test: str, remove_when: str) -> Callable:
    def register(function: Callable) -> Callable:
        scoped = hasattr(function, "__wrapped__")  # `contextlib.contextmanager` sets it
        name = function.__name__
        PATCHES[name] = HostPatch(name, upstream, tested_on, why, test, remove_when, scoped)
        return function

    return register


def _wrap(original: Callable, replacement: Callable, name: str) -> Callable:
    functools.update_wrapper(replacement, original)
    setattr(replacement, MARK, name)
    return replacement


def is_soda_patch(value: Any, name: str) -> bool:
    return getattr(value, MARK, None) == name


# -- Axolotl ------------------------------------------------------------------------------

DATASET_TYPE_ALIASES = (
    "axolotl.prompt_strategies.soda",
    "axolotl.prompt_strategies.dpo.soda",
    "axolotl.prompt_strategies.soda_plugin.soda",
)


@_host_patch(
    upstream="`sys.modules` under `axolotl.prompt_strategies.<type>` (SFT: `load`), "
             "`axolotl.prompt_strategies.dpo.<type>` (DPO/GRPO: `default`) and "
             "`axolotl.prompt_strategies.<a>.<b>` (dotted SFT types), read by "
             "`axolotl.prompt_strategies.load` and `axolotl.prompt_strategies.dpo.load`",
    tested_on=(MAIN, PY311),
    why="Axolotl resolves a dataset `type` by importing a module under its own package and has no "
        "registry API; `type: soda` is served by aliasing `soda_plugin.train.dataset_type` there. The "
        "DPO dotted form `soda_plugin.soda` is served by the package root itself.",
    test="tests/unit/test_dataset_type.py::test_axolotl_sft_loader_resolves_soda, "
         "::test_axolotl_dpo_loader_resolves_soda",
    remove_when="Axolotl resolves dataset types from plugins (a registry or entry points).",
)
def register_dataset_type() -> None:
    """Idempotent; runs when a soda plugin module is imported (Axolotl imports plugins before
    it loads datasets)."""
    from . import dataset_type

    for name in DATASET_TYPE_ALIASES:
        sys.modules.setdefault(name, dataset_type)


@_host_patch(
    upstream="`axolotl.train.setup_reference_model(cfg, tokenizer, processor)`, looked up as a module "
             "global by `axolotl.train.setup_model_and_trainer`",
    tested_on=(MAIN, PY311),
    why="Axolotl always loads a second, resident reference model for full fine-tuning DPO; with "
        "`precompute_ref_log_probs` TRL computes the reference log-probs with the policy at step 0 "
        "(= q_w) when it gets `None`, so soda hands it `None` (`reference.should_skip_reference_model`).",
    test="tests/unit/test_reference.py; tests/e2e/test_host_apis.py (`ref_model is None` with soda)",
    remove_when="Axolotl skips the reference model itself when reference log-probs are precomputed.",
)
def install_reference_model_skip() -> bool:
    """Wrap Axolotl's `setup_reference_model` (idempotent). Returns False if absent."""
    import axolotl.train as axolotl_train

    name = "install_reference_model_skip"
    original = getattr(axolotl_train, "setup_reference_model", None)
    if original is None:
        LOG.warning(
            "soda: this Axolotl has no `axolotl.train.setup_reference_model`; the DPO stage "
            "keeps Axolotl's resident reference model."
        )
        return False
    if is_soda_patch(original, name):
        return True

    def setup_reference_model(cfg, *args, **kwargs):
        from .reference import should_skip_reference_model

        if should_skip_reference_model(cfg):
            LOG.info(
                "soda: `precompute_ref_log_probs` is on: reference log-probs come from the "
                "policy at step 0 (= q_w); no second model is loaded."
            )
            return None
        return original(cfg, *args, **kwargs)

    axolotl_train.setup_reference_model = _wrap(original, setup_reference_model, name)
    return True


@_host_patch(
    upstream="`axolotl.utils.environment.check_cuda_p2p_support`, called as a module global by "
             "`check_cuda_p2p_ib_support` from `axolotl.utils.trainer.prepare_optim_env` in `load_cfg`",
    tested_on=(MAIN,),
    why="In every multi-process launch Axolotl asks torch whether GPU `LOCAL_RANK` can reach a peer. "
        "The CUDA torch build (the only torch 2.13 wheel for Python 3.12) on a machine without a driver "
        "raises RuntimeError there, which Axolotl does not catch (a CPU torch raises AssertionError, "
        "which it does). Without a GPU there is no peer: soda answers \"no P2P\", as Axolotl's own "
        "fallback would. `SODAPlugin.register` installs it only for a CPU multi-process launch.",
    test="tests/e2e/test_axolotl_cli.py::test_two_process_cpu_launch_chains_with_one_writer_and_recovers_from_a_kill",
    remove_when="Axolotl catches the RuntimeError of the peer check itself.",
)
def skip_cuda_peer_check_without_gpu() -> None:
    try:
        import axolotl.utils.environment as axolotl_environment
    except ImportError:
        return
    original = getattr(axolotl_environment, "check_cuda_p2p_support", None)
    if original is None or is_soda_patch(original, "skip_cuda_peer_check_without_gpu"):
        return
    axolotl_environment.check_cuda_p2p_support = _wrap(original, lambda: False, "skip_cuda_peer_check_without_gpu")


@_host_patch(
    upstream="`axolotl.train.cleanup_distributed`, called as a module global at the end of `axolotl.train.train`",
    tested_on=(MAIN,),
    why="Axolotl's `train` destroys the process group when it ends; the DPO (or GAD) stage that "
        "follows the warmup in the same process still needs it.",
    test="tests/e2e/test_axolotl_cli.py::test_two_process_cpu_launch_chains_with_one_writer_and_recovers_from_a_kill",
    remove_when="Axolotl's `train` leaves a process group it did not create, or takes a flag to keep it.",
)
@contextlib.contextmanager
def keep_process_group() -> Iterator[None]:
    """Suspend Axolotl's `cleanup_distributed` while the warmup trains."""
    import axolotl.train as axolotl_train

    original = getattr(axolotl_train, "cleanup_distributed", None)
    if original is None:
        yield
        return
    axolotl_train.cleanup_distributed = _wrap(original, lambda: None, "keep_process_group")
    try:
        yield
    finally:
        axolotl_train.cleanup_distributed = original


@_host_patch(
    upstream="`axolotl.utils.distributed.distributed_state`, which `axolotl.utils.trainer.setup_deepspeed_env` "
             "refuses to find set (\"Distributed State already initialized before Deepspeed setup\")",
    tested_on=(MAIN,),
    why="The warmup's `load_cfg` must write its own DeepSpeed environment although the recipe's "
        "`load_cfg` already created the distributed state. The process-wide part (process group, "
        "Accelerate state) is shared by both stages and reused as it is.",
    test="tests/e2e/test_recipe_e2e.py::test_llama8b_lora_recipe_trains_with_deepspeed_on_cpu",
    remove_when="`setup_deepspeed_env` accepts an existing distributed state (a second config in one process).",
)
@contextlib.contextmanager
def second_deepspeed_setup(enabled: bool) -> Iterator[None]:
    """Let the warmup's `load_cfg` set DeepSpeed up although the recipe's already did."""
    if not enabled:
        yield
        return
    import axolotl.utils.distributed as axolotl_distributed

    saved = axolotl_distributed.distributed_state
    axolotl_distributed.distributed_state = None
    try:
        yield
    finally:
        if axolotl_distributed.distributed_state is None:
            axolotl_distributed.distributed_state = saved


# -- TRL ----------------------------------------------------------------------------------


@_host_patch(
    upstream="`trl.trainer.dpo_trainer.DPOTrainer._precompute_ref_logps(self, dataset, name, batch_size)`, "
             "called from `DPOTrainer.__init__` for the train and eval sets",
    tested_on=(MAIN, PY311),
    why="A soda DPO stage's reference log-probs come from soda's stored, batched pass "
        "(`reference_pass.precompute_ref_logps` → `attach_reference_logps`): reused across runs, sized by "
        "`soda.precompute_ref_batch_size`; any other DPO run keeps TRL's own precompute.",
    test="tests/unit/test_reference_pass.py; tests/e2e/test_axolotl_cli.py::"
         "test_dpo_alone_with_soda_type_and_no_resident_reference",
    remove_when="TRL takes a reference log-prob provider (or a cache) in `DPOConfig`.",
)
def install_reference_pass(precompute: Callable) -> bool:
    """Make `DPOTrainer._precompute_ref_logps` call `precompute(trainer, dataset, name, batch_size,
    trl_precompute)` (`reference_pass.precompute_ref_logps`: soda's pass for a soda DPO stage,
    TRL's own otherwise; passed in, as `reference_pass` imports the chain, which imports this
    module). Idempotent. Returns False when this TRL has no `_precompute_ref_logps`."""
    import trl.trainer.dpo_trainer as dpo

    original = getattr(dpo.DPOTrainer, "_precompute_ref_logps", None)
    if original is None:
        LOG.warning("soda: this TRL has no `DPOTrainer._precompute_ref_logps`; reference log-probs are not stored.")
        return False
    if is_soda_patch(original, "install_reference_pass"):
        return True

    def _precompute_ref_logps(self, dataset, name, batch_size):
        return precompute(self, dataset, name, batch_size, original)

    dpo.DPOTrainer._precompute_ref_logps = _wrap(original, _precompute_ref_logps, "install_reference_pass")
    return True


# -- datasets -----------------------------------------------------------------------------


@_host_patch(
    upstream="`datasets.Dataset.save_to_disk(dataset_path, ..., num_proc=...)`, which Axolotl calls for "
             "every prepared dataset (`axolotl.utils.data.shared`, `save_preprocessed_dataset`: "
             "`num_proc=min(max(1, len(dataset) // 256), num_workers)`)",
    tested_on=(MAIN, PY311),
    why="`datasets` sends any `num_proc >= 1` save through a spawned pool and its Manager, each "
        "re-running the launching script (`axolotl train`: the whole stack) before it writes a byte: "
        "9 s per save on two cores, 30 s while three trainings share them, for one shard nothing "
        "parallelizes. With `num_proc=1` soda passes `None`: datasets' own in-process branch, same files.",
    test="tests/unit/test_dataset_save.py::test_single_process_save_spawns_nothing_and_writes_the_same_dataset",
    remove_when="`datasets` saves in-process for `num_proc=1`, or Axolotl passes `None` for one process.",
)
def install_in_process_single_save() -> None:
    """Make `Dataset.save_to_disk(..., num_proc=1)` write in this process (idempotent)."""
    from datasets import Dataset

    name = "install_in_process_single_save"
    original = Dataset.save_to_disk
    if is_soda_patch(original, name):
        return

    def save_to_disk(self, *args, **kwargs):
        if kwargs.get("num_proc") == 1:
            kwargs["num_proc"] = None  # datasets' own in-process branch
        return original(self, *args, **kwargs)

    Dataset.save_to_disk = _wrap(original, save_to_disk, name)


__all__ = ["PATCHES", "HostPatch", "DATASET_TYPE_ALIASES", "MAIN", "PY311", "register_dataset_type",
           "install_reference_model_skip", "skip_cuda_peer_check_without_gpu", "keep_process_group",
           "second_deepspeed_setup", "install_reference_pass", "install_in_process_single_save",
           "is_soda_patch"]
