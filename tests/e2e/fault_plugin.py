"""Test-only Axolotl plugin: kill `axolotl train` at a named point, and count model loads.

Listed after soda under `plugins:` by the kill tests; `tests/e2e` is on the subprocess's
PYTHONPATH. Both are driven by environment variables so that the config under test is
the user's config plus one plugin line:

- `SODA_TEST_KILL_AT`: `warmup_step=N` / `dpo_step=N` / `gad_warmup_step=N` / `gad_step=N`
  (after optimizer step N of that stage), `before_marker` (the warmup is saved, its marker not yet written), or
  `during_merge` (the merged q_w weights are saved, its tokenizer not yet). The process
  SIGKILLs itself there: no handler, no flush, as the OOM killer or a preemption would.
- `SODA_TEST_EVENTS`: a file that gets one line per model constructed (any
  `PreTrainedModel`, in any process), one line just before each kill, and, for each
  stage's trainer, one line on its attention modules: whether their class's `forward` is
  Axolotl's LoRA-kernel rewrite (`axolotl_attn_forward`, which calls per-instance
  `apply_qkv`/`apply_o`) and how many instances carry `apply_qkv`. Also, per stage, one
  `metrics` line per dict the trainer logs (`on_log`: its JSON with the stage and step), and
  at `on_train_begin` one `weights` line with the checksum of the policy's parameters
  (`model_checks.parameters_checksum`), taken after a resumed run has loaded its checkpoint.
"""

from __future__ import annotations

import json
import os
import signal

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

_INSTALLED = False


def _event(text: str) -> None:
    path = os.environ.get("SODA_TEST_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{text} pid={os.getpid()} rank={os.environ.get('RANK', '0')}\n")


def _kill(point: str) -> None:
    _event(f"kill {point}")
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at() -> str:
    return os.environ.get("SODA_TEST_KILL_AT", "")


def _count_model_constructions() -> None:
    from transformers import PreTrainedModel

    original = PreTrainedModel.__init__

    def counted(self, *args, **kwargs):
        original(self, *args, **kwargs)
        _event(f"model {type(self).__name__}")  # inner modules too (e.g. LlamaModel): filter by class

    PreTrainedModel.__init__ = counted


def _kill_before_marker() -> None:
    import soda_plugin.train.chain as chain

    original = chain.write_marker

    def write_marker(*args, **kwargs):
        _kill("before_marker")
        return original(*args, **kwargs)

    chain.write_marker = write_marker


def _kill_during_merge() -> None:
    import soda_plugin.train.chain as chain

    original = chain.merge_warmup_adapter

    def merge(*args, **kwargs):
        import transformers

        # The merge saves the model, then loads and saves the tokenizer: kill in between.
        transformers.AutoTokenizer.from_pretrained = lambda *a, **k: _kill("during_merge")
        return original(*args, **kwargs)

    chain.merge_warmup_adapter = merge


class _KillAtStep(TrainerCallback):
    def __init__(self, point: str, step: int):
        self.point, self.step = point, step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            _kill(self.point)


class _ForwardsBeforeTraining(TrainerCallback):
    """Counts the loaded model's forward calls (a hook on its decoder stack) until training begins."""

    def __init__(self, stage: str):
        self.stage, self.count, self.hook = stage, 0, None

    def watch(self, model) -> None:
        # The decoder stack, not the model's own forward: TRL's chunked log-prob path
        # (`soda.chunked_logps`) calls the backbone and `lm_head` itself.
        self.hook = model.get_decoder().register_forward_hook(lambda *args: setattr(self, "count", self.count + 1))

    def on_train_begin(self, args, state, control, **kwargs):
        if self.hook is not None:
            self.hook.remove()
            self.hook = None
            _event(f"forwards_before_training stage={self.stage} count={self.count}")


class _MetricsAndStartingWeights(TrainerCallback):
    """Writes each logged metrics dict, and the policy's checksum when training begins."""

    def __init__(self, stage: str):
        self.stage = stage

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from model_checks import parameters_checksum

        # `Trainer.train` has loaded `resume_from_checkpoint`'s weights before this callback.
        _event(f"weights stage={self.stage} step={state.global_step} "
               f"sha256={parameters_checksum(dict(model.named_parameters()))}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        record = {"stage": self.stage, "step": state.global_step, **(logs or {})}
        _event("metrics " + json.dumps(record, separators=(",", ":")))


_WATCHERS: list[_ForwardsBeforeTraining] = []


def _stage(cfg) -> str:
    gad = cfg.get("gad")
    if gad:  # GAD's two stages are both `rl: grpo`
        loss = gad.get("policy_loss")
        return "gad_warmup" if str(getattr(loss, "value", loss)) == "sft" else "gad"
    return "dpo" if cfg.get("rl") else "warmup"


class FaultPlugin(BasePlugin):
    def register(self, cfg) -> None:
        global _INSTALLED
        if _INSTALLED:  # `load_cfg` runs again for the warmup stage
            return
        _INSTALLED = True
        _count_model_constructions()
        if _kill_at() == "before_marker":
            _kill_before_marker()
        elif _kill_at() == "during_merge":
            _kill_during_merge()

    def post_model_load(self, cfg, model) -> None:
        # Before the trainer exists: TRL precomputes reference log-probs in its `__init__`.
        watcher = _ForwardsBeforeTraining(_stage(cfg))
        watcher.watch(model)
        _WATCHERS.append(watcher)

    def post_trainer_create(self, cfg, trainer) -> None:
        stage = _stage(cfg)
        attention = [m for name, m in trainer.model.named_modules() if name.endswith("self_attn")]
        patched = sorted({type(m).forward.__name__ == "axolotl_attn_forward" for m in attention})
        ready = sum(hasattr(m, "apply_qkv") for m in attention)
        _event(f"attention stage={stage} kernel_forward={patched} apply_qkv={ready}/{len(attention)}")

    def add_callbacks_post_trainer(self, cfg, trainer):
        stage = _stage(cfg)
        callbacks: list[TrainerCallback] = list(_WATCHERS)  # the policy, and a resident reference if any
        _WATCHERS.clear()
        callbacks.append(_MetricsAndStartingWeights(stage))
        name, _, step = _kill_at().partition("=")
        if name == f"{stage}_step":
            callbacks.append(_KillAtStep(name, int(step)))
        return callbacks
