"""GAD's discriminator D: the student's backbone plus a scalar head, and its Bradley-Terry update.

D scores a sequence (prompt + answer) at its last token. GAD re-purposes verl's critic, a
`*ForTokenClassification` model with one label on the student's backbone; here the same
transformers class (`AutoModelForTokenClassification`, `num_labels=1`) holds it. Its loss
pairs each rollout with its prompt's teacher answer: -log sigmoid(D(teacher) - D(rollout)).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..log import get_logger

LOG = get_logger(__name__)

WEIGHTS_DIRNAME = "discriminator"
OPTIMIZER_FILENAME = "optimizer.pt"
DEEPSPEED_STATE_DIRNAME = "deepspeed"  # under WEIGHTS_DIRNAME: D's sharded optimizer state, all ranks


def bradley_terry_loss(teacher_scores: torch.Tensor, rollout_scores: torch.Tensor,
                       group_of: torch.Tensor) -> torch.Tensor:
    """Mean over rollouts of -log sigmoid(D(teacher of its prompt) - D(rollout)).

    `group_of[i]` is the index in `teacher_scores` of rollout i's teacher answer."""
    margins = teacher_scores[group_of] - rollout_scores
    return torch.nn.functional.softplus(-margins).mean()


def bradley_terry_score_grads(teacher_scores: torch.Tensor, rollout_scores: torch.Tensor,
                              group_of: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d loss / d score for each teacher sequence and each rollout, at the given scores.

    With these as fixed weights, sum(w * D(x)) has the loss's gradient in D's parameters,
    so each sequence is forwarded once with gradients, in any micro-batches, and a
    teacher answer shared by n rollouts is not forwarded n times."""
    pull = torch.sigmoid(rollout_scores - teacher_scores[group_of]) / rollout_scores.numel()
    teacher_grads = torch.zeros_like(teacher_scores).index_add_(0, group_of, -pull)
    return teacher_grads, pull


@dataclass
class UpdateStats:
    loss: float
    accuracy: float  # share of pairs D ranks the right way (teacher above rollout), before the update
    grad_norm: float


class Discriminator:
    """D with its own AdamW (constant rate, gradient clip), one update per generation batch."""

    def __init__(self, model: Any, pad_token_id: int, learning_rate: float, weight_decay: float,
                 max_grad_norm: float, micro_batch_size: int, autocast_dtype: torch.dtype | None = None):
        self.model = model
        self.pad_token_id = pad_token_id
        self.max_grad_norm = max_grad_norm
        self.micro_batch_size = micro_batch_size
        self.autocast_dtype = autocast_dtype  # fp32 master weights, half-precision matmuls
        self.engine: Any = None  # D's own DeepSpeed engine, when the policy trains under DeepSpeed
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=weight_decay)

    def shard_with_deepspeed(self, zero_optimization: dict[str, Any], bf16: bool) -> None:
        """Give D its own DeepSpeed engine with the policy's ZeRO settings: its gradients and
        AdamW state (and at stage 3 its weights) are sharded over the ranks as the policy's
        are (verl shards its critic with FSDP). DeepSpeed then averages D's gradients across
        ranks, clips them and steps, and keeps fp32 master weights under bf16."""
        import deepspeed

        config = {
            "train_micro_batch_size_per_gpu": self.micro_batch_size,
            "gradient_accumulation_steps": 1,  # boundaries are set per update (`accumulate_gradients`)
            "gradient_clipping": self.max_grad_norm,
            "zero_optimization": {k: v for k, v in zero_optimization.items() if v != "auto"},
            "bf16": {"enabled": bf16},
            "zero_allow_untested_optimizer": True,
        }
        self.engine, self.optimizer, _, _ = deepspeed.initialize(model=self.model, optimizer=self.optimizer,
                                                                 config=config)
        self.autocast_dtype = None  # DeepSpeed's bf16 mode casts the weights itself

    @classmethod
    def load(cls, path: str, *, pad_token_id: int, device: Any, dtype: torch.dtype, seed: int,
             learning_rate: float, weight_decay: float, max_grad_norm: float, micro_batch_size: int,
             gradient_checkpointing: bool = False) -> "Discriminator":
        """D from `path`: a student (the head is new, drawn from `seed`) or a saved D."""
        from transformers import AutoModelForTokenClassification

        # The head's draw must not move the trainer's random stream (sampling, shuffling).
        # fp32 weights for AdamW: at D's rate (1e-6) a bf16 weight would not move. Half-precision
        # policies get half-precision matmuls in D through autocast (or DeepSpeed's bf16 mode).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = pad_token_id
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.to(device)
        # Dropout off for good (the token-classification head adds one): the update's weights
        # are d loss / d score at the scores the rewards were read from, which holds only if
        # both forwards are the same function. Train mode stays for gradient checkpointing.
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model.train()
        half = dtype if dtype in (torch.bfloat16, torch.float16) else None
        return cls(model, pad_token_id, learning_rate, weight_decay, max_grad_norm, micro_batch_size, half)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _batch(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        longest = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(list(sequence), dtype=torch.long)
            mask[row, : len(sequence)] = 1
        last = torch.tensor([len(s) - 1 for s in sequences], dtype=torch.long)
        return ids.to(self.device), mask.to(self.device), last.to(self.device)

    def _forward(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        ids, mask, last = self._batch(sequences)
        module = self.engine if self.engine is not None else self.model
        with torch.autocast(ids.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            logits = module(input_ids=ids, attention_mask=mask).logits[..., 0]
        return logits[torch.arange(len(sequences), device=ids.device), last].float()

    def _micro_batches(self, count: int) -> list[slice]:
        size = self.micro_batch_size
        return [slice(start, min(start + size, count)) for start in range(0, count, size)]

    @torch.no_grad()
    def scores(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """D's score of each token sequence at its last token (no gradients; on CPU)."""
        if not sequences:
            return torch.zeros(0)
        if any(len(s) == 0 for s in sequences):
            raise ValueError("the discriminator cannot score an empty sequence")
        return torch.cat([self._forward(sequences[part]) for part in self._micro_batches(len(sequences))]).cpu()

    def update(self, teacher: Sequence[Sequence[int]], rollouts: Sequence[Sequence[int]],
               group_of: Sequence[int], rollout_scores: torch.Tensor | None = None) -> UpdateStats:
        """One AdamW step on the Bradley-Terry loss of (teacher, rollout) pairs.

        `rollout_scores`: D's scores of `rollouts` at the current weights, when the caller
        has them already (the rewards it just handed out)."""
        if self.engine is not None:
            loss, accuracy = self.accumulate_gradients(teacher, rollouts, group_of, rollout_scores)
            self.engine.step()  # clip, step, zero the gradients
            return UpdateStats(loss, accuracy, float(self.engine.get_global_grad_norm() or 0.0))
        self.optimizer.zero_grad(set_to_none=True)
        loss, accuracy = self.accumulate_gradients(teacher, rollouts, group_of, rollout_scores)
        average_gradients_across_ranks(self.model)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return UpdateStats(loss, accuracy, float(grad_norm))

    def accumulate_gradients(self, teacher: Sequence[Sequence[int]], rollouts: Sequence[Sequence[int]],
                             group_of: Sequence[int], rollout_scores: torch.Tensor | None = None) -> tuple[float, float]:
        """Add the Bradley-Terry loss's gradient to D's `.grad`; the loss and D's pair accuracy."""
        group = torch.tensor(list(group_of), dtype=torch.long)
        teacher_scores = self.scores(teacher)
        rollout_scores = self.scores(rollouts) if rollout_scores is None else rollout_scores.detach().float().cpu()
        loss = bradley_terry_loss(teacher_scores, rollout_scores, group)
        accuracy = (teacher_scores[group] > rollout_scores).float().mean()
        teacher_grads, rollout_grads = bradley_terry_score_grads(teacher_scores, rollout_scores, group)
        parts = [(sequences, weights, part) for sequences, weights in ((teacher, teacher_grads), (rollouts, rollout_grads))
                 for part in self._micro_batches(len(sequences))]
        for index, (sequences, weights, part) in enumerate(parts):
            scored = self._forward(sequences[part])
            surrogate = (scored * weights[part].to(scored.device)).sum()
            if self.engine is None:
                surrogate.backward()
            else:  # one optimizer step after the last micro-batch, as gradient accumulation
                self.engine.set_gradient_accumulation_boundary(index == len(parts) - 1)
                self.engine.backward(surrogate)
        return float(loss), float(accuracy)

    def save(self, directory: str | Path, is_main: bool = True) -> Path:
        """D's weights as a transformers folder. Every rank calls it (ZeRO-3 gathers the
        weights); the main one writes."""
        target = Path(directory) / WEIGHTS_DIRNAME
        with self._gathered():
            if is_main:
                self.model.save_pretrained(target, safe_serialization=True)
        return target

    def save_optimizer(self, directory: str | Path, is_main: bool = True) -> None:
        target = Path(directory) / WEIGHTS_DIRNAME
        if self.engine is not None:  # sharded: every rank writes its part
            self.engine.save_checkpoint(str(target / DEEPSPEED_STATE_DIRNAME), tag="state")
        elif is_main:
            target.mkdir(parents=True, exist_ok=True)
            torch.save(self.optimizer.state_dict(), target / OPTIMIZER_FILENAME)

    def _gathered(self):
        import contextlib

        if self.engine is None or self.engine.zero_optimization_stage() < 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None)

    def restore(self, directory: str | Path) -> None:
        """Weights and optimizer state of a checkpoint (`save`, `save_optimizer`)."""
        from safetensors.torch import load_file

        source = Path(directory) / WEIGHTS_DIRNAME
        if self.engine is not None:
            state = source / DEEPSPEED_STATE_DIRNAME
            if not state.is_dir():
                raise FileNotFoundError(f"{directory} is a GAD checkpoint without its discriminator's DeepSpeed state "
                                        f"({state}); it cannot be resumed with the policy alone.")
            self.engine.load_checkpoint(str(state), tag="state", load_optimizer_states=True)
            LOG.info("gad: discriminator restored from %s", state)
            return
        if not (source / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{directory} is a GAD checkpoint without its discriminator ({source}/model.safetensors); "
                "it cannot be resumed with the policy alone.")
        state = load_file(str(source / "model.safetensors"), device=str(self.device))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = set(getattr(self.model, "_tied_weights_keys", None) or [])
        if unexpected or set(missing) - tied:
            raise RuntimeError(f"the discriminator in {source} does not fit this student: missing {missing}, "
                               f"unexpected {unexpected}")
        optimizer = source / OPTIMIZER_FILENAME
        if optimizer.is_file():
            self.optimizer.load_state_dict(torch.load(optimizer, map_location=self.device, weights_only=True))
        LOG.info("gad: discriminator restored from %s", source)


def average_gradients_across_ranks(model: Any) -> None:
    """All ranks hold a full D: average its gradients as DDP would (no-op in one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    world = dist.get_world_size()
    for parameter in model.parameters():
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad)
        parameter.grad.div_(world)

